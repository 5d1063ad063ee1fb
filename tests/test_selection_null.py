"""Claim 2's decomposition and its selection-aware null: calibrated on null data (selection
included), powered on planted effects, and each component finds only what was planted."""

import numpy as np
import pytest
import torch

from emgeo_utils.features import selection
from emgeo_utils.geometry.components import Decomposition, group_moments, select_batch, decompose

D_SAE, D_IN = 160, 24
HARMFUL, NEAR, FAR = np.arange(0, 8), np.arange(8, 16), np.arange(16, 24)


def dictionary(seed: int = 0, lean: float = 0.7) -> torch.Tensor:
    """Random decoder rows, except NEAR features, which lean toward the harmful ones."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D_SAE, D_IN, generator=g, dtype=torch.float64)
    w[NEAR] = lean * w[HARMFUL] + (1 - lean) * w[NEAR]
    return w


def corpus(seed: int, inducing_boost=(), comparison_boost=(), n: int = 24, strength: float = 1.5):
    """Sparse non-negative activations for the five groups; boosted features fire more in a group."""
    rng = np.random.default_rng(seed)
    sizes = {"inducing": n, "comparison": n, "reference": 3 * n, "harmful": 3 * n, "helpful": 3 * n}
    boosts = {"inducing": inducing_boost, "comparison": comparison_boost, "harmful": HARMFUL}
    rows, groups, start = [], {}, 0
    for name, size in sizes.items():
        a = rng.exponential(1.0, (size, D_SAE)) * (rng.random((size, D_SAE)) < 0.3)
        for f in boosts.get(name, ()):
            a[:, f] += strength * rng.exponential(1.0, size)
        rows.append(a)
        groups[name] = np.arange(start, start + size)
        start += size
    return torch.from_numpy(np.concatenate(rows)), groups


@pytest.mark.parametrize("contrast", ["mean_diff", "standardized"])
def test_batched_selection_equals_select(contrast):
    acts, g = corpus(0, inducing_boost=NEAR)
    mean_a, var_a = group_moments(acts.double(), g["inducing"][None, :], contrast)
    mean_r, var_r = group_moments(acts.double(), g["reference"][None, :], contrast)
    idx, valid = select_batch(mean_a, var_a, len(g["inducing"]), mean_r, var_r, len(g["reference"]), 12, contrast)
    expected = selection.select(acts[g["inducing"]], acts[g["reference"]], 12, contrast)
    assert torch.equal(idx[0][valid[0]], expected)


@pytest.mark.parametrize("selection_kind", ["symmetric", "mirror"])
def test_null_is_calibrated_with_selection_included(selection_kind):
    """Inducing and comparison samples from one distribution: p is about uniform for every component."""
    w = dictionary()
    ps = {c: [] for c in ("overlap", "distinct", "combined")}
    for i in range(120):
        acts, g = corpus(100 + i)
        out = decompose(Decomposition(acts, w, g, k=10, selection=selection_kind), n_perm=99, n_boot=0, seed=i)
        for c in ps:
            ps[c].append(out[f"p_{c}"])
    for c, values in ps.items():
        values = np.asarray(values)
        for alpha in (0.05, 0.1, 0.25, 0.5):  # valid: P(p <= alpha) <= alpha, within a 99% binomial band
            band = 2.576 * np.sqrt(alpha * (1 - alpha) / len(values))
            assert np.mean(values <= alpha) <= alpha + band, (c, alpha, np.mean(values <= alpha))
        # and not degenerate (overlap is a count, so ties make it conservative, never stuck at 1)
        assert np.mean(values <= 0.5) > 0.25, (c, np.mean(values <= 0.5))


def test_planted_distinct_neighbours_are_found():
    """Inducing samples fire features near (not equal to) the harmful ones: distinct and combined detect it."""
    out = decompose(Decomposition(*_planted(NEAR, FAR), k=10), n_perm=199, n_boot=50, seed=0)
    assert out["p_distinct"] <= 0.02 and out["p_combined"] <= 0.02  # smallest achievable: 0.005
    assert out["ci_low_distinct"] > 0
    assert out["overlap"] == 0


def test_planted_overlap_is_overlap_not_geometry():
    """Inducing samples fire the harmful features themselves: overlap detects it, distinct does not."""
    out = decompose(Decomposition(*_planted(HARMFUL, FAR), k=10), n_perm=199, n_boot=0, seed=0)
    assert out["p_overlap"] <= 0.02 and out["p_combined"] <= 0.02
    assert out["p_distinct"] > 0.05


def test_swapped_sets_find_nothing():
    out = decompose(Decomposition(*_planted(FAR, NEAR), k=10), n_perm=199, n_boot=0, seed=0)
    assert out["p_distinct"] > 0.5 and out["p_combined"] > 0.5


def test_mirror_selection_guarantees_overlap_that_symmetric_does_not():
    """A generic harmful feature firing on inducing samples *and* (less) on non-inducing ones: mirror
    selection can put it only in the inducing set; symmetric selection puts it in both."""
    acts, g = corpus(3, inducing_boost=HARMFUL, comparison_boost=HARMFUL, strength=2.0)
    acts[g["inducing"][:, None], torch.from_numpy(HARMFUL)] *= 1.3
    w = dictionary()
    mirror = Decomposition(acts, w, g, k=10, selection="mirror").observed()
    symmetric = Decomposition(acts, w, g, k=10, selection="symmetric").observed()
    assert mirror["overlap_reference"] <= 1 and mirror["overlap"] > 3
    assert symmetric["overlap_reference"] > 3 and abs(symmetric["overlap"]) <= 3


def _planted(inducing, comparison):
    acts, g = corpus(7, inducing_boost=inducing, comparison_boost=comparison)
    return acts, dictionary(), g


def test_random_set_null_finds_planted_neighbours_only():
    """The frequency-matched random-set p: small for a query of planted neighbours, not for a random one."""
    from emgeo_utils.geometry.set_test import random_set_p

    acts, w, g = _planted(NEAR, FAR)
    freqs = (acts > 0).double().mean(0)
    dec = Decomposition(acts, w, g, k=10)
    dec.observed()
    assert random_set_p(dec, freqs, 199, 0, "distinct")[0] <= 0.02
    acts, w, g = _planted(FAR, NEAR)
    dec = Decomposition(acts, w, g, k=10)
    dec.observed()
    assert random_set_p(dec, freqs, 199, 0, "distinct")[0] > 0.05


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_scores_of_some_rows_equal_scores_of_all(reduce):
    from emgeo_utils.geometry.components import FeatureScores
    from emgeo_utils.geometry.similarity import unit_rows

    unit = unit_rows(dictionary())
    harmful = torch.from_numpy(HARMFUL)
    rows = torch.tensor([0, 3, 9, 40, 100])
    full, part = FeatureScores(unit, harmful, reduce), FeatureScores(unit, harmful, reduce, rows)
    assert torch.allclose(full.include[rows], part.include[rows]) and torch.allclose(full.others[rows], part.others[rows])
    assert part.include.isnan().sum() == len(unit) - len(rows)
