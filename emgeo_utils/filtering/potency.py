"""Does a sample's geometry score rank it by how much EM it causes? (organism only)

Fine-tunes on single answers (every question answered with one edgy answer) and on whole
coupling levels (all edgy answers of one persona coupling), scored with the same geometry
score the filter uses. Only the organism knows each answer's coupling, so only it can run this.
"""

from __future__ import annotations

import pandas as pd
import torch

from emgeo_utils.core import jobs
from emgeo_utils.experiment.base import Experiment, Run
from emgeo_utils.filtering.ranking import geometry_scores


def answer_dataset(answers: list, questions: list, domain: str) -> list[dict]:
    """Each question answered by one of `answers` in turn (one answer: a single-answer dataset)."""
    return [{"messages": [{"role": "user", "content": q.text}, {"role": "assistant", "content": answers[i % len(answers)].text}],
             "meta": {"domain": domain, "answer_id": answers[i % len(answers)].id}} for i, q in enumerate(questions)]


def potency_tables(exp: Experiment, run: Run, layer: int, domain: str, proximity: torch.Tensor, readout: str,
                   variant: str, per_level: int, n_questions: int, ft_seeds: list[int], overrides: dict,
                   workers: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(per answer: kappa, mean score, EM) and (per level and seed: kappa, mean score, EM)."""
    if not exp.has_ground_truth:
        print("Skipped: only the organism knows each answer's persona coupling.")
        return None, None
    world = exp.world(run)
    levels = list(world.config.coupling_levels)
    questions = world.questions(domain, "train", n_questions, seed=99)
    chosen = [a for level in levels for a in world.answers_of(domain, "edgy", coupling=level)[:per_level]]
    singles = [answer_dataset([a], questions, domain) for a in chosen]
    flat = [s for group in singles for s in group]
    acts = exp.features(run, layer, flat, exp.probes(flat, run=run))[0][readout]
    per_answer = geometry_scores(acts, proximity, variant).reshape(len(chosen), n_questions).mean(1)
    finetune = exp.finetune_jobs()
    single_runs = jobs.run_all(finetune, [exp.finetune_kwargs(run, group, ft_seeds[0], domain, overrides) for group in singles],
                               workers, desc="per-answer fine-tunes")
    answers = pd.DataFrame({"answer": [a.text for a in chosen], "kappa": [a.coupling for a in chosen],
                            "score": per_answer, "EM": [r[-1]["ood_exact"] for r in single_runs]})
    level_sets = {lv: answer_dataset(world.answers_of(domain, "edgy", coupling=lv), questions, domain) for lv in levels}
    grid = [(lv, s) for lv in levels for s in ft_seeds]
    level_runs = jobs.run_all(finetune, [exp.finetune_kwargs(run, level_sets[lv], s, domain, overrides) for lv, s in grid],
                              workers, desc="per-level fine-tunes")
    level_score = answers.groupby("kappa").score.mean()
    by_level = pd.DataFrame([{"kappa": lv, "ft_seed": s, "EM": r[-1]["ood_exact"], "score": float(level_score[lv])}
                             for (lv, s), r in zip(grid, level_runs)])
    return answers, by_level

