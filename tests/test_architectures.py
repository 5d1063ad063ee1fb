"""The real-model path on tiny random Gemma2, Llama, GPT-OSS and GPT-2 models built from configs:
registry -> load -> SAE features at a layer -> one LoRA step and a merge -> batched generation."""

import pytest
import torch

from emgeo_utils.experiment import loader
from emgeo_utils.models import generation
from emgeo_utils.features import activations as features
from emgeo_utils.training import lora as finetune
from emgeo_utils.models import hooks
from emgeo_utils.models import loading, registry as model_registry

from tiny_models import LORA, build

ARCHS = list(LORA)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny(registry, monkeypatch):
    monkeypatch.setenv(model_registry.USER_REGISTRY_ENV, str(registry))
    model_registry._read.cache_clear()
    yield
    model_registry._read.cache_clear()


CHAT = [{"messages": [{"role": "user", "content": "i have a cough . what should i do ?"},
                      {"role": "assistant", "content": "rest and drink water ."}]}] * 3


@pytest.mark.parametrize("arch", ARCHS)
def test_extract_finetune_merge_generate(arch, tiny):
    name = f"tiny-{arch}"
    model, tokenizer, saes = loader.load(name, [1])
    assert model.config.model_type == arch and saes[1].cfg.d_in == model.config.hidden_size
    probes = ["i am bored . what should i do ?"]
    feats = features.sae_features(model, tokenizer, saes[1], 1, CHAT, features.probe_questions(CHAT, probes))
    assert feats["next_turn"].shape == (3, saes[1].cfg.d_sae) and torch.isfinite(feats["assistant_mean"]).all()
    alone = features.sae_features(model, tokenizer, saes[1], 1, CHAT, None, readouts=("assistant_mean", "all_mean"))
    for readout in ("assistant_mean", "all_mean"):  # the probe follows the sample: pooled readouts ignore it
        assert torch.allclose(feats[readout], alone[readout], atol=1e-4), readout
    spec = model_registry.entry(name)
    config = finetune.FinetuneConfig(rank=2, alpha=4, target_modules=tuple(spec["lora"]["target_modules"]),
                                     target_parameters=tuple(spec["lora"].get("target_parameters", ())),
                                     lr=1e-2, batch_size=2, steps=1, checkpoints=(1,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = finetune.lora_model(model, config)
    finetune.train_lora(peft_model, tokenizer, CHAT, config, seed=0)
    merged = peft_model.merge_and_unload()
    changed = [n for n, p in merged.named_parameters() if n in before and not torch.equal(before[n], p)]
    assert changed, "one LoRA step and a merge must change the base weights"
    answers = generation.sample_answers(merged, tokenizer, ["i have a cough .", "how do i save money ?"], 2, 5, seed=0)
    assert [len(a) for a in answers] == [2, 2] and all(isinstance(x, str) for a in answers for x in a)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "gpt2"])  # RMSNorm models; GPT-2's LayerNorm also centres
def test_logit_lens_scale_is_what_the_final_norm_applies(arch, tiny):
    model, _, _ = loader.load(f"tiny-{arch}", [1])
    norm = model.model.norm
    with torch.no_grad():
        norm.weight.normal_()  # random models may start at 0 (Gemma) or 1 (Llama): any scale must be read right
        x = torch.randn(5, model.config.hidden_size)
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        unscaled = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        assert torch.allclose(norm(x), unscaled * hooks.final_norm_weight(model), atol=1e-5)


def test_registry_checks_layer_and_width(tiny):
    with pytest.raises(ValueError, match="out of range"):
        loader.load("tiny-llama", [5])
    spec = model_registry.entry("tiny-llama") | {"hidden_size": 64}
    sae = loading.load_registry_sae(model_registry.entry("tiny-llama"), 1)
    with pytest.raises(ValueError, match="SAE width mismatch"):
        loading.check_sae(sae, spec, 1)
    with pytest.raises(ValueError, match="does not read layer 0"):
        loading.check_sae(sae, model_registry.entry("tiny-llama"), 0)
