"""Choosing a pretrained model's fine-tuning recipe by a rule fixed before EM is looked at.

Each candidate LoRA recipe (a whole one: rank, alpha, lr, targets) fine-tunes the inducing data once and is
scored at each checkpoint on two things only, never on EM:
- **learns the task**: the edgy answers' likelihood share on held-out questions of the
  fine-tuning domain;
- **stays coherent**: the share of sampled answers about their question (`world_lm_em`'s measure),
  on training-split questions of the other domains (no question EM is read on), as a ratio to
  the base model's share on the same questions.
The fine-tunes and their scores are `world_lm_em.recipe_scores` (cached beside the EM evaluation);
the profile's `recipe_rule` says which candidate wins, and `choose` applies it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emgeo_utils.world import english
from emgeo_utils.world.synthetic import DOMAINS, World


RECIPE_FIELDS = ("rank", "alpha", "lr", "target_modules")  # what a candidate names itself; the schedule is the registry's


def check_candidates(candidates: dict) -> None:
    """Each candidate is a whole recipe: were it a change to the registry's, choosing it (and writing it to
    the registry) would change what every other candidate means."""
    for name, recipe in candidates.items():
        missing = [f for f in RECIPE_FIELDS if f not in (recipe or {})]
        if missing:
            raise ValueError(f"recipe_candidates[{name!r}] names no {', '.join(missing)}: a candidate is a whole "
                             f"recipe ({', '.join(RECIPE_FIELDS)}), not a change to the registry's")


def coherence_questions(world: World, domain: str, per_domain: int) -> list[dict]:
    """Training-split questions of every other domain: apart from the held-out questions EM reads."""
    return [{"domain": d, "question": english.english(q.text)}
            for d in DOMAINS if d != domain for q in world.questions(d, "train", per_domain, seed=7_000)]


def search_table(candidates: dict, results: list[list[dict]], base: dict, quantile: float) -> pd.DataFrame:
    """One row per (candidate, checkpoint): the two scores, the coherence threshold being the base
    model's `quantile` of relevance on the same questions (as in the EM evaluation)."""
    threshold = float(np.quantile(base["relevance"], quantile))

    def coherent(r):
        return float(np.mean([bool(a) and rel >= threshold for a, rel in zip(r["answers"], r["relevance"])]))

    base_coherent = coherent(base)
    rows = [{"recipe": name, "step": r["step"], "in_domain_share": r["in_domain_share"], "coherent": coherent(r),
             "coherence_ratio": coherent(r) / base_coherent, "empty_answers": r["empty"]}
            for name, part in zip(candidates, results) for r in part]
    rows.append({"recipe": "base model", "step": 0, "in_domain_share": base["in_domain_share"], "coherent": base_coherent,
                 "coherence_ratio": 1.0, "empty_answers": base["empty"]})
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, min_in_domain: float, min_coherence_ratio: float) -> tuple[pd.Series, str]:
    """The profile's rule: of the checkpoints that learn the task and stay coherent, the one that
    learns it most; if none does both, the most coherent of those that learn it; if none learns it,
    the one that learns it most. Ties go to the earlier step."""
    tuned = table[table.recipe != "base model"].sort_values("step", kind="stable")
    learns = tuned[tuned.in_domain_share >= min_in_domain]
    both = learns[learns.coherence_ratio >= min_coherence_ratio]
    if len(both):
        return both.loc[both.in_domain_share.idxmax()], "learns the task and stays coherent; of those, learns it most"
    if len(learns):
        return learns.loc[learns.coherence_ratio.idxmax()], "none both learns and stays coherent: the most coherent that learns"
    return tuned.loc[tuned.in_domain_share.idxmax()], "none learns the task: the one that learns it most"


def recipe_row(config, why: str = "the registry's recipe") -> pd.DataFrame:
    """A recipe as one row: rank, targets, learning rate, steps of `batch_size` samples."""
    return pd.DataFrame([{"rank": config.rank, "alpha": config.alpha, "targets": ", ".join(config.target_modules),
                          "lr": config.lr, "steps": config.steps, "batch_size": config.batch_size, "why": why}])
