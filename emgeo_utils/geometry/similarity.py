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
    if len(targets) == 0:
        raise ValueError("the target feature set is empty (no feature fires more on the harmful samples than on the "
                         "reference): use more or more different samples, or another readout")
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
                   reduce: str = "max", shared: str = "include", block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Per query feature, its similarity to the target set (`max` or `mean` cosine).

    `shared`: what to do with query features that are also targets — `include` (they score
    cosine 1 with themselves, as a plain computation would), `drop` (left out of the query),
    or `others` (scored against the other targets only).
    """
    if shared not in ("include", "drop", "others"):
        raise ValueError(f"shared must be include, drop or others, got {shared!r}")
    if shared == "drop":
        query = query[~torch.isin(query, targets)]
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be max or mean, got {reduce!r}")
    if len(query) == 0:
        return torch.empty(0, dtype=torch.float64)
    out = []
    for start in range(0, len(query), block):  # float64 copies of `block` decoder rows at a time, at most
        part = query[start:start + block]
        sims = cosine(w_dec, part, targets)
        if shared == "others":
            sims[part[:, None] == targets[None, :]] = float("nan")
        out.append(torch.nan_to_num(sims, nan=-float("inf")).max(1).values if reduce == "max" else torch.nanmean(sims, 1))
    return torch.cat(out)

