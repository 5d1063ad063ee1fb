"""The paper's geometry test: is one feature set closer to the harmful set than another?

`compare_sets` tests two given sets; `run` selects the sets of one inducing domain from a
feature corpus and tests them, for one analysis; `variant_grid` does it for a grid of analyses.

An *analysis* fixes every choice: readout, contrast, k, shared-feature handling, reduction and
layer. Notebooks fix the primary analysis in their parameters before looking at results and
report every variant beside it (`variant_grid`).
"""

from __future__ import annotations

import dataclasses
import itertools

import pandas as pd
import torch

from emgeo_utils.core.stats import frequency_matched_draws, set_proximity_test
from emgeo_utils.features import selection as feature_sets
from emgeo_utils.geometry.similarity import overlap, set_similarity


@dataclasses.dataclass(frozen=True)
class Analysis:
    readout: str = "next_turn"
    contrast: str = "mean_diff"
    k: int = 32
    shared: str = "include"  # include | others | drop (see similarity.set_similarity)
    reduce: str = "max"      # max | mean cosine to the harmful set


def compare_sets(w_dec: torch.Tensor, query: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor,
                   frequencies: torch.Tensor | None = None, reduce: str = "max", shared: str = "drop",
                   n_perm: int = 5000, n_random: int = 1000, seed: int = 0) -> dict:
    """Is `query` (e.g. inducing features) closer to `targets` (harmful features) than `reference`
    (e.g. non-inducing features)?

    Per-feature similarity to the targets (`reduce` = max or mean cosine; `shared` handling as in
    `set_similarity`); a one-sided permutation test of query vs reference; the query mean
    against frequency-matched random feature sets (the second null); bootstrap CI; and how many
    features each set shares with the targets.
    """
    score_q = set_similarity(w_dec, query, targets, reduce, shared).numpy()
    score_r = set_similarity(w_dec, reference, targets, reduce, shared).numpy()
    random_means = None
    kept_q = query if shared != "drop" else query[~torch.isin(query, targets)]
    if n_random and len(kept_q):
        freqs = frequencies if frequencies is not None else torch.ones(w_dec.shape[0])
        # random sets may hold target features, scored as the query's are (`shared`), except under
        # `drop`, where the query holds none either
        exclude = [query, reference] + ([targets] if shared == "drop" else [])
        draws = frequency_matched_draws(freqs.numpy(), kept_q.numpy(), n_random, seed, exclude=torch.cat(exclude).numpy())
        per = set_similarity(w_dec, torch.from_numpy(draws.reshape(-1)), targets, reduce, shared)
        random_means = per.reshape(n_random, -1).mean(1).numpy()
    result = set_proximity_test(score_q, score_r, random_means, n_perm=n_perm, seed=seed)
    return {"mean_query": result.mean_a, "mean_reference": result.mean_b, "difference": result.difference,
            "ci_low": result.ci[0], "ci_high": result.ci[1], "p_permutation": result.p_permutation,
            "p_random": result.p_random, "cohens_d": result.cohens_d, "n_query": result.n_a,
            "n_reference": result.n_b, "shared_query": overlap(query, targets),
            "shared_reference": overlap(reference, targets),
            "random_mean": float(random_means.mean()) if random_means is not None else float("nan")}


def run(acts: dict[str, torch.Tensor], samples: list[dict], w_dec: torch.Tensor, domain: str, analysis: Analysis,
        n_perm: int = 5000, n_random: int = 1000, seed: int = 0) -> dict:
    """Inducing vs non-inducing features' proximity to harmful features for one inducing domain."""
    a = acts[analysis.readout]
    sets = feature_sets.domain_sets(a, samples, domain, analysis.k, analysis.contrast)
    frequencies = feature_sets.activation_frequency(a) if n_random else None  # only the random null needs them
    result = compare_sets(w_dec, sets["inducing"], sets["non_inducing"], sets["harmful"],
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
        scores = set_similarity(w_dec, idx, sets["harmful"], analysis.reduce,
                                         "include" if analysis.shared == "drop" else analysis.shared)
        rows += [{"set": name, "feature": int(f), "similarity": float(v),
                  "shared": bool(torch.isin(torch.tensor([int(f)]), sets["harmful"]).item())}
                 for f, v in zip(idx, scores)]
    return pd.DataFrame(rows)
