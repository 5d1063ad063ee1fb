"""Cache keys see every file a cached function reads: editing a copy of the world's text or of the SAE
prompt set changes the keys built from it, and only those."""

import dataclasses

from emgeo_utils.features import chat_sae
from emgeo_utils.organism import pretraining
from emgeo_utils.world import synthetic as world
from emgeo_utils.theory import toy


def _keys():
    toy_config = dataclasses.asdict(toy.ToyConfig(n_features=4, dim=2, sparsity=0.5, importance_decay=0.9,
                                                  steps=1, batch=2, lr=0.1))
    sae_kwargs = dict(model_source={"gguf": {"sha256": "x"}}, layer=1, chats=[], held_out_chats=[], system="s")
    return {"organism": pretraining.pretrain.key(world=world.WorldConfig(), seed=0),
            "residual SAE": chat_sae.train_residual_sae.key(**sae_kwargs),
            "toy": toy.train_toy.key(config=toy_config, seed=0)}


def test_editing_the_world_text_changes_the_organism_key_only(tmp_path, monkeypatch):
    before = _keys()
    copy = tmp_path / "world_text.yaml"
    copy.write_text(world.TEXT_FILE.read_text() + "\n# one edited line\n")
    monkeypatch.setattr(world, "TEXT_FILE", copy)
    after = _keys()
    assert after["organism"] != before["organism"]
    assert after["residual SAE"] == before["residual SAE"] and after["toy"] == before["toy"]


def test_editing_the_sae_prompts_changes_the_residual_sae_key_only(tmp_path, monkeypatch):
    before = _keys()
    copy = tmp_path / "sae_prompts.yaml"
    copy.write_text(chat_sae.PROMPTS_FILE.read_text().replace("\n", "\n", 1) + "\n# one edited line\n")
    monkeypatch.setattr(chat_sae, "PROMPTS_FILE", copy)
    after = _keys()
    assert after["residual SAE"] != before["residual SAE"]
    assert after["organism"] == before["organism"] and after["toy"] == before["toy"]
    assert chat_sae.prompts() == chat_sae.yaml.safe_load(copy.read_text())  # the trainer reads the file it hashed


def test_library_versions_and_the_numerics_mode_are_in_every_key(monkeypatch):
    from emgeo_utils.core import cache
    before = _keys()
    monkeypatch.setattr(cache, "numerics_inputs", lambda: {"mode": "pinned", "versions": {"torch": "0.0"}})
    after = _keys()
    assert all(after[k] != before[k] for k in before)
