"""The fine-tuning recipe rule and the coherence measure's validation (notebook 00, section 4b)."""

import numpy as np
import pandas as pd
import pytest
import yaml

from emgeo_utils.core import paths
from emgeo_utils.experiment import coherence, recipe
from emgeo_utils.experiment.real_em import finetune_config
from emgeo_utils.models.registry import entry


def table(rows):
    return pd.DataFrame([{"recipe": r, "step": s, "in_domain_share": i, "coherence_ratio": c} for r, s, i, c in rows])


def test_the_rule_prefers_a_recipe_that_learns_and_stays_coherent_then_the_one_that_learns_most():
    t = table([("a", 8, 0.95, 0.85), ("a", 16, 0.99, 0.81), ("b", 8, 0.97, 0.5), ("base model", 0, 0.5, 1.0)])
    best, why = recipe.choose(t, 0.9, 0.8)
    assert (best.recipe, best.step) == ("a", 16) and why.startswith("learns the task and stays coherent")


def test_without_a_coherent_learner_the_rule_takes_the_most_coherent_learner():
    t = table([("a", 8, 0.95, 0.3), ("b", 8, 0.91, 0.6), ("c", 8, 0.5, 0.99), ("base model", 0, 0.5, 1.0)])
    best, why = recipe.choose(t, 0.9, 0.8)
    assert best.recipe == "b" and why.startswith("none both")


def test_without_a_learner_the_rule_takes_the_one_that_learns_most_never_the_base_model():
    t = table([("a", 8, 0.6, 0.9), ("a", 16, 0.7, 0.9), ("base model", 0, 0.99, 1.0)])
    best, why = recipe.choose(t, 0.9, 0.8)
    assert (best.recipe, best.step) == ("a", 16) and why.startswith("none learns")


def test_ties_go_to_the_earlier_step():
    best, _ = recipe.choose(table([("a", 16, 0.95, 0.9), ("a", 8, 0.95, 0.9)]), 0.9, 0.8)
    assert best.step == 8


def test_the_coherence_questions_are_not_the_questions_em_is_read_on():
    from emgeo_utils.experiment.loader import open_experiment

    exp = open_experiment("smollm2-135m", None, {"primary": "likelihood"}, None)
    em_questions = {it["question"] for part in exp.eval_set("health")["candidates"].values() for it in part}
    asked = recipe.coherence_questions(exp.world, "health", 2)
    assert len(asked) == 18 and {q["domain"] for q in asked}.isdisjoint({"health"})
    assert not em_questions & {q["question"] for q in asked}


def _result(pairs, threshold=0.5):
    return {"coherence_threshold": threshold,
            "samples": [{"domain": d, "question": q, "answer": a} for d, q, a in pairs]}


def _eval_set(items):
    return {"candidates": {"in_domain": items[:1], "other_domains": items[1:]}}


def overlap(questions, answers):
    """A toy relevance: the share of an answer's words found in its question."""
    return np.array([len(set(q.split()) & set(a.split())) / len(a.split()) for q, a in zip(questions, answers)])


def test_a_measure_that_sees_topicality_separates_matched_from_mismatched_pairs():
    pairs = [(d, f"{d} question {i}", f"{d} answer") for d in ("health", "career", "legal") for i in range(3)]
    items = [{"domain": d, "question": f"about {d}", "answers": [f"{d} a", f"{d} b"]} for d in ("health", "career", "legal")]
    t = coherence.validation_table(_result(pairs), _eval_set(items), overlap)
    assert (t.auc == 1.0).all() and (t.mismatched_called_coherent == 0).all()


def test_a_measure_blind_to_topicality_has_auc_one_half_and_misses_the_bar():
    pairs = [(d, f"{d} question", "same words") for d in ("health", "career", "legal")]
    items = [{"domain": d, "question": f"about {d}", "answers": ["x y"]} for d in ("health", "career", "legal")]
    t = coherence.validation_table(_result(pairs), _eval_set(items), lambda q, a: np.zeros(len(q)))
    assert (t.auc == 0.5).all()

    class Claims:
        def record(self, claim, **kw):
            self.kw = kw

    c = Claims()
    coherence.record_claim(c, t, 0.8)
    assert c.kw["outcome"] is False and c.kw["value"] == 0.5


def test_the_registry_holds_the_recipe_the_full_profile_searches_among():
    """The default profile fine-tunes with the registry's recipe; it must be one of the full profile's candidates
    at one of the searched checkpoints (the notebook's claim checks it is the rule's choice)."""
    params = yaml.safe_load((paths.params_dir() / "smollm2-135m-full" / "00_model_organism.yaml").read_text())
    spec = entry("smollm2-135m")
    held = finetune_config(spec)
    rule = params["recipe_rule"]
    searched = [finetune_config(spec, o | {"steps": s, "checkpoints": (s,)})
                for o in params["recipe_candidates"].values() for s in rule["checkpoints"]]
    assert held in searched
    assert set(rule) >= {"min_in_domain", "min_coherence_ratio", "checkpoints"}


@pytest.mark.parametrize("domains, i, expected", [(["a", "a", "b"], 0, 2), (["a", "b", "b"], 2, 0), (["a", "b"], 1, 0)])
def test_the_mismatched_pairing_takes_the_next_item_of_another_domain(domains, i, expected):
    assert coherence._other_domain(domains, i) == expected


def _scores(rows):
    return [{"step": s, "in_domain_share": share, "empty": 0.0, "relevance": [rel] * 10, "answers": ["an answer"] * 10}
            for s, share, rel in rows]


@pytest.mark.parametrize("chosen_learns, registry_holds_it", [(0.92, True), (0.5, False)])
def test_the_search_records_whether_the_registry_holds_the_rules_choice(monkeypatch, chosen_learns, registry_holds_it):
    """The search's last step, its fine-tunes replaced by fixed scores: the rule's choice is compared with
    the registry's recipe (rank 1, lr 2e-3, 16 steps) and the sanity claim says whether they agree."""
    from emgeo_utils.core import jobs
    from emgeo_utils.experiment.loader import open_experiment

    results = [_scores([(0, 0.5, 0.5)]), _scores([(8, 0.95, 0.0), (16, 0.99, 0.0)]),
               _scores([(8, 0.8, 0.6), (16, chosen_learns, 0.6)])]
    monkeypatch.setattr(jobs, "run_all", lambda fn, kwargs, workers, desc: results)

    class Claims:
        def record(self, claim, **kw):
            self.claim, self.kw = claim, kw

    claims = Claims()
    exp = open_experiment("smollm2-135m", None, {"primary": "likelihood"}, None)
    rule = {"min_in_domain": 0.9, "min_coherence_ratio": 0.8, "checkpoints": [8, 16], "questions_per_domain": 1,
            "samples_per_question": 1}
    every = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    candidates = {"wide": {"rank": 8, "alpha": 16, "lr": 1.0e-3, "target_modules": every},
                  "narrow": {"rank": 1, "alpha": 2, "lr": 2.0e-3, "target_modules": every}}
    table, chosen = exp.recipe_search("health", candidates, rule, 8, 1, claims)
    assert len(table) == 5 and claims.claim == "recipe_is_registry_recipe"
    assert claims.kw["outcome"] is registry_holds_it
    assert chosen.steps.iloc[0] == (16 if registry_holds_it else 8)


def test_a_candidate_must_be_a_whole_recipe_not_a_change_to_the_registrys():
    with pytest.raises(ValueError, match=r"recipe_candidates\['old'\] names no rank, alpha, target_modules"):
        recipe.check_candidates({"old": {"lr": 1.0e-3}})
    params = yaml.safe_load((paths.params_dir() / "smollm2-135m-full" / "00_model_organism.yaml").read_text())
    recipe.check_candidates(params["recipe_candidates"])
