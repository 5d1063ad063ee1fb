"""The paper's geometry test on a feature corpus, for one analysis or a grid of variants.

An *analysis* fixes every choice: readout, contrast, k, shared-feature handling, reduction and
layer. Notebooks fix the primary analysis in their parameters before looking at results and
report every variant beside it (`variant_grid`).
"""

from __future__ import annotations

import dataclasses
import itertools

import pandas as pd
import torch

from . import feature_sets, geometry


@dataclasses.dataclass(frozen=True)
class Analysis:
    readout: str = "next_turn"
    contrast: str = "mean_diff"
    k: int = 32
    shared: str = "include"  # include | others | drop (see geometry.set_similarity)
    reduce: str = "max"      # max | mean cosine to the harmful set


def run(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str, analysis: Analysis,
        n_perm: int = 5000, n_random: int = 1000, seed: int = 0) -> dict:
    """Inducing vs non-inducing features' proximity to harmful features for one inducing domain."""
    a = acts[analysis.readout]
    sets = feature_sets.domain_sets(a, samples, domain, analysis.k, analysis.contrast)
    frequencies = feature_sets.activation_frequency(a) if n_random else None  # only the random null needs them
    result = geometry.proximity_test(w_dec, sets["inducing"], sets["non_inducing"], sets["harmful"],
                                     frequencies, analysis.reduce, analysis.shared, n_perm, n_random, seed)
    return dataclasses.asdict(analysis) | {"domain": domain} | result


def variant_grid(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str,
                 readouts, contrasts, ks, shareds, reduces, n_perm: int = 2000, n_random: int = 300,
                 seed: int = 0) -> pd.DataFrame:
    rows = [run(acts, samples, w_dec, domain, Analysis(r, c, k, s, m), n_perm, n_random, seed)
            for r, c, k, s, m in itertools.product(readouts, contrasts, ks, shareds, reduces)]
    return pd.DataFrame(rows)


def per_feature_scores(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str,
                       analysis: Analysis) -> pd.DataFrame:
    """Each inducing / non-inducing feature's similarity to the harmful set (for distributions)."""
    sets = feature_sets.domain_sets(acts[analysis.readout], samples, domain, analysis.k, analysis.contrast)
    rows = []
    for name in ("inducing", "non_inducing"):
        idx = sets[name]
        if analysis.shared == "drop":
            idx = idx[~torch.isin(idx, sets["harmful"])]
        scores = geometry.set_similarity(w_dec, idx, sets["harmful"], analysis.reduce,
                                         "include" if analysis.shared == "drop" else analysis.shared)
        rows += [{"set": name, "feature": int(f), "similarity": float(v),
                  "shared": bool(torch.isin(torch.tensor([int(f)]), sets["harmful"]).item())}
                 for f, v in zip(idx, scores)]
    return pd.DataFrame(rows)
