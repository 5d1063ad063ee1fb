"""Robustness: determinism, safe loading, and what executed notebooks may contain."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from emgeo_utils.organism import emergence
from emgeo_utils.organism import evaluate
from emgeo_utils.training import lora as finetune
from emgeo_utils.models import loading
from emgeo_utils.organism import configs
from emgeo_utils.notebook import session as notebook
from emgeo_utils.report import run_notebooks
from emgeo_utils.world import synthetic as W
from emgeo_utils.training.lora import strip_meta

NAME = "organism-test"
CFG = configs.organism_configs(NAME)


def build_all(seed: int) -> dict:
    """World, organism, SAE, fine-tune and its evaluation for one seed (in the current cache)."""
    cfg = CFG
    lm = configs.organism_lm(CFG, seed=seed)
    sae = configs.organism_sae(CFG, seed=seed, layer=1)
    samples = emergence.condition_samples(CFG, "finance", "inducing", 16)
    adapter = finetune.finetune_lora(lm, strip_meta(samples), cfg.finetune, seed=seed)
    result = evaluate.evaluate_organism_em(lm, adapter, max(cfg.finetune.checkpoints), cfg.world, cfg.eval, seed)
    world = W.World(W.WorldConfig(seed=seed, n_documents=50))
    return {"world": [a.coupling for a in world.answers] + [t for d in world.documents(20) for turn in d for t in turn],
            "model": load_file(str(lm.path / "model.safetensors")),
            "sae": load_file(str(sae.path / "sae_weights.safetensors")),
            "adapter": load_file(str(adapter.path / f"step_{max(cfg.finetune.checkpoints)}" / "adapter_model.safetensors")),
            "eval": result}


def same(a: dict, b: dict) -> dict[str, bool]:
    out = {"world": a["world"] == b["world"], "eval": a["eval"] == b["eval"]}
    for key in ("model", "sae", "adapter"):
        out[key] = a[key].keys() == b[key].keys() and all((a[key][k] == b[key][k]).all() for k in a[key])
    return out


def test_same_seed_same_numbers_different_seed_different(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_CACHE", str(tmp_path / "first"))
    first = build_all(seed=0)
    monkeypatch.setenv("EMGEO_CACHE", str(tmp_path / "second"))  # rebuilt from nothing
    again = build_all(seed=0)
    other = build_all(seed=1)
    assert all(same(first, again).values()), same(first, again)
    assert not any(same(first, other).values()), same(first, other)


def test_weights_load_from_safetensors_only(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "pickled"
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # a pickle: never to be loaded
    spec = {"name": "pickled", "kind": "local", "path": str(folder), "dtype": "float32"}
    with pytest.raises(loading.ModelUnavailable):
        loading.load_model(spec)


def test_remote_code_stays_off_unless_asked(tmp_path):
    from emgeo_utils.organism import pretraining as organism

    folder = tmp_path / "custom"
    organism.build_tokenizer(W.World(W.WorldConfig(n_documents=10))).save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "my-custom-model",
                                                    "auto_map": {"AutoConfig": "configuration_x.XConfig",
                                                                 "AutoModelForCausalLM": "modeling_x.XModel"}}))
    spec = {"name": "custom", "kind": "local", "path": str(folder), "dtype": "float32"}
    with pytest.raises((ValueError, OSError, loading.ModelUnavailable)) as err:
        loading.load_model(spec)
    assert "trust_remote_code" in str(err.value) or "custom code" in str(err.value)


def test_parameter_values_are_checked_in_the_cell_after_parameters():
    rules = {"finetune_seeds": (lambda v: len(v) >= 2, "needs at least 2 fine-tuning seeds for a CI")}
    with pytest.raises(notebook.ParameterError, match="finetune_seeds.*at least 2"):
        notebook.check_parameters("00_model_organism", {"finetune_seeds": [0]}, rules, source="params/x/00.yaml")
    with pytest.raises(notebook.ParameterError, match="must be list"):
        notebook.check_parameters("00_model_organism", {"finetune_seeds": 3})
    with pytest.raises(notebook.ParameterError, match="must be float"):
        notebook.check_parameters("00_model_organism", {"min_ratio": "three"})


def test_executed_notebooks_are_checked_for_errors_and_local_paths(tmp_path):
    good = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "text": "saved ./figures/x.png"}]}],
            "metadata": {"papermill": {"input_path": str(run_notebooks.paths.PROJECT_ROOT / "notebooks" / "x.ipynb")}}}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(good))
    assert run_notebooks.finish_executed(path) == []
    assert json.loads(path.read_text())["metadata"]["papermill"]["input_path"] == "notebooks/x.ipynb"
    leaky = good | {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "text": f"loaded {run_notebooks.paths.PROJECT_ROOT}/secret"},
        {"output_type": "error", "ename": "ValueError"}]}]}
    path.write_text(json.dumps(leaky))
    problems = run_notebooks.finish_executed(path)
    assert "an error output" in problems and any("absolute path" in p for p in problems)


def test_the_docs_say_what_to_do_when_something_goes_wrong():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text()
    section = readme[readme.index("## When something goes wrong"):]
    for message in ("unknown parameter", "line N", "unknown model", "could not load", "SAE width mismatch",
                    "out of range", "UNEXPECTED", "OPENAI_API_KEY", "interrupted"):
        assert message in section, message
    # the messages the section quotes are the ones the code raises
    package = "\n".join(p.read_text() for p in (Path(__file__).resolve().parents[1] / "emgeo_utils").rglob("*.py"))
    for raised in ("unknown parameter", "unknown role", "Did you mean", "could not load", "SAE width mismatch",
                   "does not read layer", "is out of range", "UNEXPECTED", "no API key for"):
        assert raised in section and raised in package, raised
