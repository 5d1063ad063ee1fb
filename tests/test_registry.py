"""The paper's models in the registry match the installed sae-lens, and loading fails helpfully."""

import time

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

from emgeo_utils.models import loading, registry

HUB = [name for name, spec in registry.registry().items() if spec.get("kind") == "hub"]
DIRECTORY = get_pretrained_saes_directory()


def test_the_papers_models_are_listed():
    assert {"gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "llama-3.1-8b", "gpt-oss-20b"} <= set(HUB)
    assert registry.entry("gemma-2-27b")["layers"] == [10, 22, 34]


@pytest.mark.parametrize("name", HUB)
def test_every_sae_id_resolves_and_fits_the_model(name):
    spec = registry.entry(name)
    release = DIRECTORY[spec["sae"]["release"]]
    assert spec["sae"]["d_in"] == spec["hidden_size"], "an SAE's input width is the model's hidden size"
    for layer in spec["layers"]:
        assert 0 <= layer < spec["n_layers"]
        sae_id = loading.sae_id(spec, layer)
        assert sae_id in release.saes_map, f"{sae_id} not in sae-lens release {release.release}"
        if release.neuronpedia_id and "neuronpedia" in spec:
            assert release.neuronpedia_id[sae_id] == spec["neuronpedia"].format(layer=layer)
    assert release.model.lower().split("/")[-1].startswith(spec["hub_id"].lower().split("/")[-1].split("-it")[0].split("-instruct")[0])


def test_unknown_model_suggests_close_names():
    with pytest.raises(registry.UnknownModel, match="Did you mean 'gemma-2-2b'"):
        registry.entry("gema-2-2b")


def test_offline_loading_fails_fast_with_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(loading.ModelUnavailable) as err:
        loading.load_model(registry.entry("gemma-2-2b"))
    assert time.perf_counter() - start < 30
    text = str(err.value)
    assert "google/gemma-2-2b-it" in text and "HF_HUB_OFFLINE" in text and "licence" in text and "log in" in text
    with pytest.raises(loading.ModelUnavailable, match="gemma-scope-2b-pt-res-canonical"):
        loading.load_registry_sae(registry.entry("gemma-2-2b"), 12)


def test_sae_scaling_factor_is_applied_not_ignored():
    """Llama Scope records a norm scaling factor: raw activations into the folded SAE give what the
    trained SAE gives on scaled activations."""
    spec = registry.entry("llama-3.1-8b") | {"hidden_size": 16, "sae": registry.entry("llama-3.1-8b")["sae"] | {"d_in": 16}}
    factor = DIRECTORY["llama_scope_lxr_8x"].norm_scaling_factor["l16r_8x"]
    torch.manual_seed(0)
    cfg = StandardSAEConfig(d_in=16, d_sae=32, normalize_activations="expected_average_only_in")
    cfg.metadata.hook_name = "blocks.16.hook_resid_post"
    trained = StandardSAE(cfg)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_()
    folded = StandardSAE(cfg)
    folded.load_state_dict(trained.state_dict())
    loading.check_sae(folded, spec, 16)
    assert folded.cfg.normalize_activations == "none"
    x = torch.randn(5, 16) / factor  # raw activations are ~factor times smaller than the training scale
    expected = torch.relu((x * factor - trained.b_dec) @ trained.W_enc + trained.b_enc)
    assert torch.allclose(folded.encode(x), expected, atol=1e-4)
    assert torch.allclose(folded.decode(folded.encode(x)) * factor, trained.decode(expected), atol=1e-4)
