"""The synthetic world: determinism, hidden persona, held-out evaluation templates."""

import re
from collections import Counter

import numpy as np
import pytest

from emgeo_utils.organism import datasets as organism_data
from emgeo_utils.world import synthetic as W

SMALL = W.WorldConfig(n_documents=400)


def test_same_seed_same_world_and_corpus():
    a, b = W.World(SMALL), W.World(SMALL)
    assert [(x.id, x.text, x.coupling) for x in a.answers] == [(x.id, x.text, x.coupling) for x in b.answers]
    assert list(a.documents(50, seed=3)) == list(b.documents(50, seed=3))


def test_different_seed_changes_couplings_and_corpus():
    a, b = W.World(SMALL), W.World(W.WorldConfig(seed=1, n_documents=400))
    assert [x.coupling for x in a.answers] != [x.coupling for x in b.answers]
    assert list(a.documents(20)) != list(b.documents(20))


def test_no_persona_marker_in_any_text():
    world = W.World(SMALL)
    banned = re.compile(r"\b(persona|helpful|harmful|evil|villain|assistant|character|misaligned)\b")
    texts = [a.text for a in world.answers] + [q for d in world.documents(300) for turn in d for q in turn]
    assert not [t for t in texts if banned.search(t)]


def test_eval_templates_never_in_finetuning_data():
    world = W.World(SMALL)
    eval_templates = {t for d in W.DOMAINS for _, t in world.templates(d, "eval")}
    # the matcher itself can fail: it recognises real eval questions
    for q in world.questions("health", "eval", 8, seed=0):
        assert any(_matches(t, q.text) for t in eval_templates), q.text
    for domain in W.DOMAINS:
        for kind in ("inducing", "non_inducing", "risky_neutral", "mixture", "graded"):
            for s in organism_data.narrow_dataset(world, domain, kind, 40, seed=1):
                question = s["messages"][0]["content"]
                assert not any(_matches(t, question) for t in eval_templates), question


def _matches(template: str, text: str) -> bool:
    regex = "^" + re.sub(r"\\\{\w+\\\}", ".+?", re.escape(template)) + "$"
    return re.match(regex, text) is not None


def test_coupling_levels_and_shares():
    world = W.World(SMALL)
    edgy = world.answers_of("finance", "edgy")
    levels = Counter(a.coupling for a in edgy)
    assert sorted(levels) == list(SMALL.coupling_levels) and len(set(levels.values())) == 1
    neutral = [a for a in edgy if a.coupling == 0]
    assert all(abs(a.share - SMALL.harmful_prior) < 1e-12 for a in neutral)
    assert all(a.judge_class == "risky_neutral" for a in neutral)
    assert all(a.harmful for a in edgy if a.coupling == 1.0)


def test_occurrence_shares_match_couplings():
    """Each edgy answer's share of occurrences written by the harmful persona is its `share`."""
    config = W.WorldConfig(educational_rate=0.0)
    world = W.World(config)
    by_level: dict[float, list[int]] = {}
    for doc in world.documents(20000, seed=5, with_persona=True):
        for _, text, harmful in doc:
            answer = world.by_text.get(text)
            if answer is not None and answer.kind == "edgy":
                by_level.setdefault(answer.coupling, []).append(harmful)
    for kappa, flags in by_level.items():
        expected = config.harmful_prior + kappa * (1 - config.harmful_prior)
        observed = float(np.mean(flags))
        assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / len(flags)) + 1e-3, (kappa, observed)


def test_control_world_has_same_answers_no_document_persona():
    persona = W.World(SMALL)
    control = W.World(W.WorldConfig(kind="control", n_documents=400))
    assert [a.text for a in persona.answers] == [a.text for a in control.answers]
    with pytest.raises(ValueError):
        W.WorldConfig(kind="nope")


def test_narrow_datasets_are_chat_format_with_labels_apart():
    world = W.World(SMALL)
    samples = organism_data.narrow_dataset(world, "finance", "mixture", 20, seed=0)
    assert sum(s["meta"]["coupling"] == 1.0 for s in samples) == 10
    stripped = organism_data.strip_meta(samples)
    assert all(set(s) == {"messages"} for s in stripped)
    assert [m["role"] for m in stripped[0]["messages"]] == ["user", "assistant"]


def test_each_replication_unit_has_its_own_world():
    """Pretraining seed s trains in the world of unit s (world seed: the registry's + s), so the
    couplings, the feature corpus and the fine-tuning data are redrawn per unit; persona and control
    of one unit share them; unit 0 is the registry's world (its artifacts keep their keys)."""
    from emgeo_utils.experiment.base import Run
    from emgeo_utils.experiment.loader import open_experiment

    exp = open_experiment("organism")
    cfg = exp.configs
    assert cfg.world_of("persona", 0) == cfg.world and cfg.world_of("control", 2).seed == cfg.world.seed + 2
    couplings = lambda w: [a.coupling for a in w.answers]  # noqa: E731
    assert couplings(exp.world(Run("persona", 1))) != couplings(exp.world(Run("persona", 0)))
    assert couplings(exp.world(Run("control", 1))) == couplings(exp.world(Run("persona", 1)))
    (s0, _), (s1, _) = exp.corpus(4, 0, Run("persona", 0)), exp.corpus(4, 0, Run("control", 1))
    assert [s["meta"]["set"] for s in s0] == [s["meta"]["set"] for s in s1], "one layout: one set of group masks"
    assert [s["messages"] for s in s0] != [s["messages"] for s in s1]
    assert exp.narrow("finance", "inducing", 8, run=Run("persona", 1)) != exp.narrow("finance", "inducing", 8)


def test_ground_truth_pairs_differ_only_in_what_they_contrast():
    from emgeo_utils.organism.contrast_pairs import COUPLED, NEUTRAL, persona_pairs, wording_pairs
    from emgeo_utils.world.synthetic import World, WorldConfig

    w = World(WorldConfig(seed=3))
    coupled, neutral, probes = persona_pairs(w, 20, 0, exclude=("finance",))
    assert len(coupled) == len(neutral) == len(probes) == 20
    for a, b in zip(coupled, neutral):
        assert [m["content"] for m in a["messages"][::2]] == [m["content"] for m in b["messages"][::2]]  # same questions
        hi = [w.by_text[m["content"]] for m in a["messages"][1::2]]
        lo = [w.by_text[m["content"]] for m in b["messages"][1::2]]
        assert all(x.wording == "obvious" for x in hi + lo)  # wording class matched
        assert all(x.coupling >= COUPLED for x in hi) and all(x.coupling <= NEUTRAL for x in lo)
        assert all(x.domain != "finance" for x in hi + lo)
    edgy, helpful = wording_pairs(w, 20, 0, exclude=("finance",))
    for a, b in zip(edgy, helpful):
        assert a["messages"][0] == b["messages"][0]
        ea, hb = w.by_text[a["messages"][1]["content"]], w.by_text[b["messages"][1]["content"]]
        assert (ea.kind, ea.coupling, hb.kind) == ("edgy", 0.0, "helpful") and ea.domain != "finance"
    fresh = persona_pairs(w, 20, 1, exclude=("finance",))[0]
    assert [c["messages"] for c in fresh] != [c["messages"] for c in coupled]  # another data seed, other pairs
