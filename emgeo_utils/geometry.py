"""Geometry of SAE decoder directions: how close one feature set lies to another.

Cosine similarity between decoder rows (`W_dec`, shape [d_sae, d_in]) is computed in row
blocks, so a 131k-wide dictionary is never turned into a 131k x 131k matrix: the largest
temporary is `block x len(targets)`.
"""

from __future__ import annotations

import torch

DEFAULT_BLOCK = 8192


def unit_rows(w_dec: torch.Tensor) -> torch.Tensor:
    """Decoder rows scaled to unit norm (dead all-zero rows stay zero)."""
    norms = w_dec.norm(dim=1, keepdim=True)
    return w_dec / norms.clamp(min=1e-12)


def cosine(w_dec: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """[len(rows), len(cols)] cosine similarities of the decoder directions of two feature sets."""
    a = unit_rows(w_dec[rows].double())
    b = unit_rows(w_dec[cols].double())
    return a @ b.T


def max_cosine_to_set(w_dec: torch.Tensor, targets: torch.Tensor, block: int = DEFAULT_BLOCK,
                      exclude_self: bool = True) -> torch.Tensor:
    """For every feature of the dictionary, its largest cosine with any feature of `targets`.

    Memory: one `block x len(targets)` matrix at a time (a row's norm is divided out of its
    maximum, so no normalised copy of the dictionary is made). With `exclude_self` a target's
    similarity to itself (1) is ignored, so targets are scored by their *other* neighbours.
    """
    t = unit_rows(w_dec[targets].float())
    out = torch.empty(w_dec.shape[0])
    target_set = targets.tolist()
    for start in range(0, w_dec.shape[0], block):
        rows = w_dec[start:start + block].float()
        sims = rows @ t.T
        if exclude_self:
            for col, feat in enumerate(target_set):
                if start <= feat < start + block:
                    sims[feat - start, col] = -float("inf")
        out[start:start + block] = sims.max(1).values / rows.norm(dim=1).clamp(min=1e-12)
        del rows, sims  # keep one block alive at a time
    return out


def set_similarity(w_dec: torch.Tensor, query: torch.Tensor, targets: torch.Tensor,
                   reduce: str = "max", shared: str = "include") -> torch.Tensor:
    """Per query feature, its similarity to the target set (`max` or `mean` cosine).

    `shared`: what to do with query features that are also targets — `include` (they score
    cosine 1 with themselves, as a plain computation would), `drop` (left out of the query),
    or `others` (scored against the other targets only).
    """
    if shared not in ("include", "drop", "others"):
        raise ValueError(f"shared must be include, drop or others, got {shared!r}")
    if shared == "drop":
        query = query[~torch.isin(query, targets)]
    if len(query) == 0:
        return torch.empty(0, dtype=torch.float64)
    sims = cosine(w_dec, query, targets)
    if shared == "others":
        sims[query[:, None] == targets[None, :]] = float("nan")
    if reduce == "max":
        return torch.nan_to_num(sims, nan=-float("inf")).max(1).values
    if reduce == "mean":
        return torch.nanmean(sims, 1)
    raise ValueError(f"reduce must be max or mean, got {reduce!r}")


def overlap(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many features two sets share."""
    return int(torch.isin(a, b).sum())


def proximity_test(w_dec: torch.Tensor, query: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor,
                   frequencies: torch.Tensor | None = None, reduce: str = "max", shared: str = "drop",
                   n_perm: int = 5000, n_random: int = 1000, seed: int = 0) -> dict:
    """Is `query` (e.g. inducing features) closer to `targets` (harmful features) than `reference`
    (e.g. non-inducing features)?

    Per-feature similarity to the targets (`reduce` = max or mean cosine; `shared` handling as in
    `set_similarity`); a one-sided permutation test of query vs reference; the query mean
    against frequency-matched random feature sets (the second null); bootstrap CI; and how many
    features each set shares with the targets.
    """
    from .stats import frequency_matched_draws, set_proximity_test

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
