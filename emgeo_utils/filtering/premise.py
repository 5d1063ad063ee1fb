"""What notebook 05's filters rest on, measured on the organism, whose world labels every sample:
the filter's premise (persona-coupled samples carry features nearer the harmful ones than
content-matched neutral samples) and the strength of the judge it is compared with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from emgeo_utils.core import stats
from emgeo_utils.experiment.base import Experiment, Run
from emgeo_utils.geometry import components
from emgeo_utils.judges.text import TextJudge
from emgeo_utils.world.synthetic import DOMAINS, GENERAL


def premise_table(exp: Experiment, seeds: list[int], layer: int, domain: str, n: int, coupled_share: float,
                  n_per_set: int, masks: dict, k: int, contrast: str, readout: str, n_perm: int, seed: int,
                  workers: int) -> pd.DataFrame | None:
    """Notebook 03's decomposition on each unit's own mixture (coupled vs neutral samples, each against
    the common reference), on every pretraining seed of both worlds; None without the world's labels."""
    if not exp.has_ground_truth:
        print("Skipped: only the organism labels which samples are persona-coupled.")
        return None
    runs = exp.runs(seeds, ["persona", "control"])
    exp.prepare(runs, [layer], workers)
    ref = {name: np.flatnonzero(m.numpy()) + n for name, m in masks.items()}
    rows = []
    for r in runs:  # each unit's own world: its mixture, its couplings, its corpus
        mix = exp.mixture(domain, n, coupled_share, seed, r)
        coupled = np.array([s["meta"]["coupling"] == 1.0 for s in mix])
        acts = torch.cat([exp.features(r, layer, mix, exp.probes(mix, seed, r))[0][readout],
                          exp.features(r, layer, *exp.corpus(n_per_set, seed, r))[0][readout]])
        groups = {"inducing": np.flatnonzero(coupled), "comparison": np.flatnonzero(~coupled),
                  "reference": ref["reference"], "harmful": ref["harmful"], "helpful": ref["helpful"]}
        dec = components.Decomposition(acts, exp.decoder(r, layer), groups, k, contrast)
        rows.append({"world": r.world, "organism_seed": r.seed} | components.decompose(dec, n_perm, 0, seed))
    return pd.DataFrame(rows)


def judge_strength(exp: Experiment, run: Run, seed: int) -> pd.DataFrame | None:
    """Leave-one-domain-out AUCs of the offline text judge, per mode: harmful vs helpful answers, and
    persona-coupled vs persona-neutral edgy answers (what the mixture needs)."""
    if not exp.has_ground_truth:
        print("A real model's judge is the LLM judge; its strength on the mixture is the AUC above.")
        return None
    w, rows = exp.world(run), []
    for mode in ("classifier", "zero_shot"):
        for held in DOMAINS:
            train = [a for a in w.answers if a.domain not in (held, GENERAL)]
            test = w.answers_of(held)
            s = TextJudge(mode, seed).fit([a.text for a in train], [a.harmful for a in train]).score([a.text for a in test])
            harm_vs_help = np.array([a.kind == "helpful" or a.harmful for a in test])
            coupled_vs_neutral = np.array([a.kind == "edgy" and a.coupling in (0.0, 1.0) for a in test])
            rows.append({"mode": mode, "held-out domain": held,
                         "AUC harmful vs helpful": stats.auc(s[harm_vs_help], [a.harmful for a in np.array(test)[harm_vs_help]]),
                         "AUC coupled vs neutral (edgy only)": stats.auc(
                             s[coupled_vs_neutral], [a.coupling == 1.0 for a in np.array(test)[coupled_vs_neutral]])})
    return pd.DataFrame(rows).groupby("mode")[["AUC harmful vs helpful", "AUC coupled vs neutral (edgy only)"]].mean()
