"""Geometry-aware data filtering: score each fine-tuning sample, remove the highest.

**The geometry score.** For a sample x read at one position (see `features.READOUTS`) with SAE
activations a_f(x) >= 0, and a harmful feature set H:

    proximity(f) = max_{h in H} cos(d_f, d_h)        (= 1 for f in H; d = decoder rows)
    score(x)     = sum_f a_f(x) proximity(f) / sum_f a_f(x)          ("weighted_mean")

the activation-weighted mean proximity of the sample's active features to the harmful set, in
[-1, 1]; 0 when no feature is active. Variants: `weighted_sum` (not normalised by total
activation) and `max_active` (the closest active feature). Notebook 05 fixes the variant and
the readout in its parameters and reports the others beside them.

Filters remove `floor(fraction * n)` samples: the highest scores (geometry, persona vector,
judge), a random draw, or the persona-coupled samples first (oracle, from the world's labels).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from emgeo_utils.features.selection import select
from emgeo_utils.geometry.similarity import max_cosine_to_set

SCORE_VARIANTS = ("weighted_mean", "weighted_sum", "max_active")


def feature_proximity(w_dec: torch.Tensor, harmful: torch.Tensor, block: int = 8192) -> torch.Tensor:
    """proximity(f) for every feature of the dictionary (1 for the harmful features themselves)."""
    return max_cosine_to_set(w_dec, harmful, block, exclude_self=False)


def geometry_scores(acts: torch.Tensor, proximity: torch.Tensor, variant: str = "weighted_mean") -> np.ndarray:
    """Per-sample score of SAE activations [n, d_sae] against per-feature proximity [d_sae]."""
    acts = acts.float().clamp(min=0)
    if variant == "weighted_sum":
        return (acts @ proximity).numpy()
    if variant == "weighted_mean":
        total = acts.sum(1)
        return torch.where(total > 0, (acts @ proximity) / total.clamp(min=1e-12), torch.zeros_like(total)).numpy()
    if variant == "max_active":
        masked = torch.where(acts > 0, proximity.expand_as(acts), torch.full_like(acts, -1.0))
        return masked.max(1).values.numpy()
    raise ValueError(f"unknown score variant {variant!r}; use one of {SCORE_VARIANTS}")


def persona_direction(harmful_resid: torch.Tensor, helpful_resid: torch.Tensor) -> torch.Tensor:
    """Mean residual activation of harmful minus helpful answers (a persona vector, no SAE)."""
    return harmful_resid.double().mean(0) - helpful_resid.double().mean(0)


def projection_scores(resid: torch.Tensor, direction: torch.Tensor) -> np.ndarray:
    return (resid.double() @ (direction / direction.norm())).numpy()


def n_to_remove(n: int, fraction: float) -> int:
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    return math.floor(fraction * n)


def keep_lowest(scores, fraction: float) -> np.ndarray:
    """Indices kept after removing the `fraction` highest scores (ties: later samples go first)."""
    scores = np.asarray(scores, float)
    order = np.lexsort((-np.arange(len(scores)), -scores))  # highest score first
    return np.sort(order[n_to_remove(len(scores), fraction):])


def keep_random(n: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[n_to_remove(n, fraction):])


def keep_oracle(coupled, fraction: float, seed: int) -> np.ndarray:
    """Remove persona-coupled samples first (in random order), then others at random."""
    coupled = np.asarray(coupled, bool)
    rng = np.random.default_rng(seed)
    priority = np.where(coupled, 1.0, 0.0) + rng.random(len(coupled)) * 0.5
    return keep_lowest(priority, fraction)


def precision(removed_mask, coupled) -> float:
    """Share of removed samples that were persona-coupled."""
    removed_mask, coupled = np.asarray(removed_mask, bool), np.asarray(coupled, bool)
    return float(coupled[removed_mask].mean()) if removed_mask.any() else float("nan")


def keep(filter_name: str, fraction: float, ft_seed: int, scores: dict, coupled: np.ndarray) -> np.ndarray:
    """The indices a filter keeps: none removes nothing; random is drawn per fine-tuning seed (draw i
    pairs with seed i); oracle removes coupled samples first; any other removes its highest `scores`."""
    if filter_name == "none":
        return np.arange(len(coupled))
    if filter_name == "random":
        return keep_random(len(coupled), fraction, seed=1000 + ft_seed)
    if filter_name == "oracle":
        return keep_oracle(coupled, fraction, seed=ft_seed)
    return keep_lowest(scores[filter_name], fraction)


class MixtureScores:
    """The scores of a mixture's samples from a labelled corpus: geometry (proximity of the active
    features to the harmful set selected harmful vs helpful) and the dense persona vector."""

    def __init__(self, corpus: tuple[dict, dict], masks: dict, mixture: tuple[dict, dict], w_dec: torch.Tensor,
                 k: int, contrast: str):
        (self.corpus_acts, self.corpus_resid), (self.acts, self.resid) = corpus, mixture
        self.masks, self.w_dec, self.k, self.contrast = masks, w_dec, k, contrast
        self._proximity: dict[str, torch.Tensor] = {}

    def proximity(self, readout: str) -> torch.Tensor:
        """Each feature's proximity to the harmful set selected at `readout` (computed once per readout)."""
        if readout not in self._proximity:
            acts = self.corpus_acts[readout]
            harmful = select(acts[self.masks["harmful"]], acts[self.masks["helpful"]], self.k, self.contrast)
            self._proximity[readout] = feature_proximity(self.w_dec, harmful)
        return self._proximity[readout]

    def geometry(self, readout: str, variant: str) -> np.ndarray:
        return geometry_scores(self.acts[readout], self.proximity(readout), variant)

    def persona_vector(self, readout: str) -> np.ndarray:
        resid = self.corpus_resid[readout]
        return projection_scores(self.resid[readout], persona_direction(resid[self.masks["harmful"]], resid[self.masks["helpful"]]))
