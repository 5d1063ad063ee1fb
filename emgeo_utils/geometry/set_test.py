"""The paper's geometry test: is one feature set closer to the harmful set than another?

`run` selects the sets of one inducing domain from a feature corpus and tests them with
`components.Decomposition` (overlap, distinct, combined, each against relabelled samples and
placebo feature sets), for one analysis; `variant_grid` does
it for a grid of analyses (the caller adds q-values over the family it tests).

An *analysis* fixes every choice: readout, contrast, k, shared-feature handling, reduction,
selection and layer. Notebooks fix the primary analysis in their parameters before looking at
results and report every variant beside it (`variant_grid`, exploratory).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import torch

from emgeo_utils.core.stats import frequency_matched_draws, permutation_p
from emgeo_utils.features import selection as feature_sets
from emgeo_utils.geometry.components import Decomposition, decompose
from emgeo_utils.geometry.similarity import set_similarity


@dataclasses.dataclass(frozen=True)
class Analysis:
    readout: str = "next_turn"
    contrast: str = "mean_diff"
    k: int = 32
    shared: str = "include"  # include | others | drop (see similarity.set_similarity)
    reduce: str = "max"      # max | mean cosine to the harmful set
    selection: str = "symmetric"  # symmetric (each set vs a common reference) | mirror (see selection.domain_sets)


def groups(samples: list[dict], domain: str, comparison: str = "non_inducing") -> dict[str, np.ndarray]:
    """Sample indices of the groups a `Decomposition` needs, for one inducing domain."""
    m = feature_sets.masks(samples, domain)
    return {"inducing": np.flatnonzero(m["inducing"].numpy()), "comparison": np.flatnonzero(m[comparison].numpy()),
            "reference": np.flatnonzero(m["reference"].numpy()), "harmful": np.flatnonzero(m["harmful"].numpy()),
            "helpful": np.flatnonzero(m["helpful"].numpy())}


def random_set_p(dec: Decomposition, frequencies: torch.Tensor, n_random: int, seed: int, component: str) -> tuple[float, float]:
    """The inducing set's mean (`combined` or `distinct`) against frequency-matched random sets
    scored the same way; random sets hold harmful features only where the component counts them."""
    scores, query = dec.scores, dec.query
    if component == "distinct":
        query = query[~scores.in_harmful[query]]
    if not len(query) or not n_random:
        return float("nan"), float("nan")
    exclude = torch.cat([query] + ([torch.nonzero(scores.in_harmful).flatten()] if component == "distinct" else [])).numpy()
    draws = torch.from_numpy(frequency_matched_draws(frequencies.numpy(), query.numpy(), n_random, seed, exclude=exclude))
    per_feature = scores.others if dec.shared == "others" and component == "combined" else scores.include
    means = torch.nanmean(per_feature[draws], 1).numpy()
    return permutation_p(torch.nanmean(per_feature[query]).item(), means), float(means.mean())


def run_set_test(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str, analysis: Analysis,
        n_perm: int = 1000, n_random: int = 1000, seed: int = 0, n_boot: int = 200, comparison: str = "non_inducing") -> dict:
    """Inducing vs `comparison` features' proximity to harmful features for one inducing domain:
    every component with its claim-2 p and resampled CI, and the inducing set's distinct features
    against frequency-matched random features (`p_random_distinct`; shared features are `overlap`'s)."""
    a = acts[analysis.readout]
    dec = Decomposition(a, w_dec, groups(samples, domain, comparison), analysis.k, analysis.contrast,
                        analysis.selection, analysis.reduce, analysis.shared)
    out = decompose(dec, n_perm, n_boot, seed)
    if n_random:
        freqs = feature_sets.activation_frequency(a)
        out["p_random_distinct"], out["random_mean_distinct"] = random_set_p(dec, freqs, n_random, seed, "distinct")
    return dataclasses.asdict(analysis) | {"domain": domain, "comparison": comparison} | out


def variant_grid(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str,
                 readouts, contrasts, ks, shareds, reduces, selections=("symmetric", "mirror"), n_perm: int = 500,
                 seed: int = 0) -> pd.DataFrame:
    """Every variant's components and their claim-2 p (no CI). Exploratory: the primary
    analysis is fixed in the notebook's parameters."""
    rows = [run_set_test(acts, samples, w_dec, domain, Analysis(r, c, k, s, m, sel), n_perm, 0, seed, n_boot=0)
            for r, c, k, s, m, sel in itertools.product(readouts, contrasts, ks, shareds, reduces, selections)]
    return pd.DataFrame(rows)


def per_feature_scores(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str,
                       analysis: Analysis) -> pd.DataFrame:
    """Each inducing / non-inducing feature's similarity to the harmful set (for distributions)."""
    sets = feature_sets.domain_sets(acts[analysis.readout], samples, domain, analysis.k, analysis.contrast,
                                    analysis.selection)
    rows = []
    for name in ("inducing", "non_inducing"):
        idx = sets[name]
        if analysis.shared == "drop":
            idx = idx[~torch.isin(idx, sets["harmful"])]
        scores = set_similarity(w_dec, idx, sets["harmful"], analysis.reduce,
                                         "include" if analysis.shared == "drop" else analysis.shared)
        rows += [{"set": name, "feature": int(f), "similarity": float(v),
                  "shared": bool(torch.isin(torch.tensor([int(f)]), sets["harmful"]).item())}
                 for f, v in zip(idx, scores)]
    return pd.DataFrame(rows)


STYLE_PLACEBO = {"placebo_styled": "inducing", "placebo_plain": "non_inducing"}


def placebo_relabelled(samples: list[dict], domain: str) -> list[dict]:
    """The style placebo: in `domain`, two harmless sets that differ only in style take the inducing and
    non-inducing roles (the real sets of that domain are set aside); other domains keep their labels."""
    def label(s: dict) -> str:
        name = s["meta"]["set"]
        return name if s["meta"]["domain"] != domain else STYLE_PLACEBO.get(name, f"unused_{name}")
    return [s | {"meta": s["meta"] | {"set": label(s)}} for s in samples]
