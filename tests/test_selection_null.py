"""Claim 2's decomposition and its test: the sample-relabelling null is calibrated on exchangeable
data (selection included) and too liberal when the groups differ for other reasons; the claim-2 p
(the larger of it and the placebo-feature-set p) keeps its size under every null a reviewer would
raise, has power on planted effects, and each component finds only what was planted."""

import numpy as np
import pandas as pd
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
def test_relabelling_null_is_calibrated_with_selection_included(selection_kind):
    """Inducing and comparison samples from one distribution: the relabelling p is about uniform for
    every component."""
    w = dictionary()
    ps = {c: [] for c in ("overlap", "distinct", "combined")}
    for i in range(120):
        acts, g = corpus(100 + i)
        out = decompose(Decomposition(acts, w, g, k=10, selection=selection_kind), n_perm=99, n_boot=0, seed=i)
        for c in ps:
            ps[c].append(out[f"p_samples_{c}"])
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


# --- size of the claim-2 test under the nulls a reviewer would raise ---------------------------
# 500 runs per null, each with a fresh random dictionary; the test may reject at alpha 0.05 in at
# most 36 runs (7.2%). A test of size 0.05 exceeds that with probability 0.012 (binomial), one of
# size 0.10 stays within it with probability 0.019: so a doubled size fails here. Seeded, so the
# verdict does not flake. (P(p >= 0.95) is not checked: the claim is one-sided.)
SIZE_RUNS, SIZE_BOUND = 500, 36
NULLS = ("exchangeable", "unrelated_features", "frequency", "norm", "frequent_features_nearer")


def null_world(kind: str, i: int):
    """One world where the claim is false: the inducing and comparison groups are alike, or differ in
    features chosen at random away from the harmful set, in how often every feature fires, in how
    strongly, or in density where the frequently firing features lean toward the harmful ones."""
    rng = np.random.default_rng(10_000 + i)
    w = dictionary(seed=1000 + i)
    boosted = rng.choice(np.arange(24, D_SAE), 16, replace=False) if kind == "unrelated_features" else np.array([], int)
    acts, g = corpus(2000 + i, inducing_boost=boosted[:8], comparison_boost=boosted[8:])
    n_a = len(g["inducing"])
    if kind == "frequency":
        acts[g["inducing"]] += torch.from_numpy(rng.exponential(1.0, (n_a, D_SAE)) * (rng.random((n_a, D_SAE)) < 0.15))
    if kind == "norm":
        acts[g["inducing"]] *= 1.5
    if kind == "frequent_features_nearer":
        dense = np.arange(24, 56)
        w[dense] = 0.5 * w[HARMFUL][np.arange(32) % 8] + 0.5 * w[dense]
        n = acts.shape[0]
        acts[:, dense] += torch.from_numpy(rng.exponential(1.0, (n, 32)) * (rng.random((n, 32)) < 0.4))
        acts[g["inducing"]] *= 1.5
    return acts, w, g


# The world-level test (`components.across_seeds`) is read over 3 units (independent worlds), as the
# organism's claims are: WORLD_RUNS disjoint triples of unit runs per null, the same bound (500, 36). The
# first SIZE_RUNS unit runs of the pool serve the unit-level tests.
WORLD_RUNS, UNITS = 500, 3


@pytest.fixture(scope="module")
def null_runs():
    """{null: DataFrame of `decompose` rows}: WORLD_RUNS x UNITS runs per null, each its own world. The unit-level
    tests read the first SIZE_RUNS (99 permutations: their p); the world-level test reads only each null's
    centre, which 49 draws estimate without bias, so the rest run cheaper."""
    return {kind: pd.DataFrame([decompose(Decomposition(*null_world(kind, i), k=10), n_perm=99 if i < SIZE_RUNS else 49,
                                          n_boot=0, seed=i) for i in range(WORLD_RUNS * UNITS)]) for kind in NULLS}


def world_level_p(frame: pd.DataFrame, component: str) -> tuple[np.ndarray, np.ndarray]:
    """Per disjoint triple of rows: the world-level claim-2 p and the one-sided t over the units' raw values."""
    from emgeo_utils.core.stats import seed_level_test
    from emgeo_utils.geometry.components import across_seeds

    triples = [frame.iloc[i:i + UNITS] for i in range(0, len(frame) - UNITS + 1, UNITS)]
    return (np.array([across_seeds(t, component)["p_seeds"] for t in triples]),
            np.array([seed_level_test(t[component].to_numpy())[1] for t in triples]))


@pytest.mark.parametrize("kind", NULLS)
@pytest.mark.parametrize("component", ["combined", "distinct", "overlap"])
def test_claim2_test_keeps_its_size(null_runs, kind, component):
    p = null_runs[kind][f"p_{component}"].to_numpy()[:SIZE_RUNS]
    assert not np.isnan(p).any()
    assert (p <= 0.05).sum() <= SIZE_BOUND, (kind, component, (p <= 0.05).mean())


@pytest.mark.parametrize("component", ["combined", "distinct"])
def test_relabelling_alone_fails_the_same_size_test(null_runs, component):
    """Today's null alone (samples relabelled) rejects far more often than alpha when the groups
    differ in unrelated features (measured 0.15 and 0.19), so the size test above can fail."""
    p = null_runs["unrelated_features"][f"p_samples_{component}"].to_numpy()[:SIZE_RUNS]
    assert (p <= 0.05).sum() > SIZE_BOUND, (component, (p <= 0.05).mean())


@pytest.mark.parametrize("kind", NULLS)
@pytest.mark.parametrize("component", ["combined", "distinct", "overlap"])
def test_world_level_test_keeps_its_size(null_runs, kind, component):
    """The world-level p over 3 units rejects at most 36 of 500 worlds under every null (measured at most
    0.045 over 200 worlds; the t over raw values alone rejects 0.30 where frequent features lean nearer)."""
    p, _ = world_level_p(null_runs[kind], component)
    assert len(p) == WORLD_RUNS and np.isnan(p).mean() < 0.05  # NaN (three equal excesses: no t) is no rejection
    assert (p <= 0.05).sum() <= SIZE_BOUND, (kind, component, (p <= 0.05).mean())


def test_raw_t_alone_fails_the_world_level_size_test(null_runs):
    """Without the nulls' centres, a t over units rejects far too often when frequently firing features lean
    toward the harmful ones (measured 0.30 for distinct): the size test above can fail."""
    _, p_t = world_level_p(null_runs["frequent_features_nearer"], "distinct")
    assert (p_t <= 0.05).sum() > SIZE_BOUND, (p_t <= 0.05).mean()


POWER_WORLDS = 200


@pytest.mark.parametrize("planted, components", [(NEAR[:2], ("distinct", "combined")), (HARMFUL[:2], ("overlap", "combined"))])
def test_world_level_test_has_power(planted, components):
    """A weak planted effect (2 features), 200 worlds of 3 units: the world-level test rejects at least 0.8x
    as often as the t over the units' raw values (measured 0.95 and 0.84 for planted neighbours, 1.0 and 0.84
    for planted shared features), and that t itself has power to lose (> 0.3)."""
    rows = []
    for i in range(POWER_WORLDS * UNITS):
        acts, g = corpus(3000 + i, inducing_boost=planted, comparison_boost=FAR[:2])
        rows.append(decompose(Decomposition(acts, dictionary(seed=500 + i), g, k=10), n_perm=99, n_boot=0, seed=i))
    frame = pd.DataFrame(rows)
    for c in components:
        p, p_t = world_level_p(frame, c)
        power, power_t = float(np.mean(p <= 0.05)), float(np.mean(p_t <= 0.05))
        assert power_t > 0.3 and power >= 0.8 * power_t, (c, power, power_t)


@pytest.mark.parametrize("planted, finds, misses", [(NEAR, ("distinct", "combined"), ("overlap",)),
                                                    (HARMFUL, ("overlap", "combined"), ())])
def test_claim2_test_has_power_on_planted_effects(planted, finds, misses):
    """100 worlds each (fresh dictionary): the claim-2 p finds a planted effect in at least 90% of
    them (measured: distinct 1.00 and combined 0.99 for neighbours; overlap and combined 1.00 for
    shared features) and never calls planted neighbours overlap."""
    ps = {c: [] for c in ("overlap", "distinct", "combined")}
    for i in range(100):
        acts, g = corpus(3000 + i, inducing_boost=planted, comparison_boost=FAR)
        out = decompose(Decomposition(acts, dictionary(seed=500 + i), g, k=10), n_perm=99, n_boot=0, seed=i)
        for c in ps:
            ps[c].append(out[f"p_{c}"])
    power = {c: float(np.mean(np.asarray(v) <= 0.05)) for c, v in ps.items()}
    assert all(power[c] >= 0.9 for c in finds), power
    assert all(power[c] <= 0.05 for c in misses), power


def test_bootstrap_draws_a_group_used_twice_once():
    """The helpful answers are the reference and the harmful set's contrast: one draw serves both."""
    acts, w, g = _planted(NEAR, FAR)
    dec = Decomposition(acts, w, g | {"reference": g["helpful"]}, k=10)
    seen = []
    original = dec.harmful_set

    def spy(harmful=None, helpful=None):
        seen.append(helpful)
        return original(harmful, helpful)

    dec.harmful_set = spy
    original_sets = dec.sets

    def sets_spy(ind, comp, ref=None):
        seen.append(ref)
        return original_sets(ind, comp, ref)

    dec.sets = sets_spy
    dec.bootstrap(3, seed=0)
    for helpful, reference in zip(seen[0::2], seen[1::2]):
        assert np.array_equal(helpful, reference)


def test_across_seeds_reads_each_unit_against_its_larger_null_centre():
    """Three units whose raw values agree (the t over them is small), but one unit's placebo centre is as high
    as its value: the world-level excess is taken over the larger centre, so that unit counts for nothing."""
    from emgeo_utils.geometry.components import across_seeds

    frame = pd.DataFrame({"combined": [0.10, 0.11, 0.12], "p_combined": [0.01, 0.3, 0.01],
                          "null_mean_features_combined": [0.0, 0.11, 0.0],
                          "null_mean_samples_combined": [0.01, 0.0, 0.02]})
    out = across_seeds(frame, "combined")
    assert out["p_t"] < 0.01 and out["units"] == (3, 3)
    assert out["mean"] == pytest.approx(np.mean([0.09, 0.0, 0.10]))
    assert out["p_seeds"] > 0.05 and out["ci_low"] < 0 < out["ci_high"]
    assert "+0.0633" in out["decided_by"] and f"p {out['p_seeds']:.3g}" in out["decided_by"]
    # equivalence must hold against both nulls: from the larger centre's low end to the smaller centre's high end
    assert out["tost_low"] < out["mean"] < out["tost_high"]
    frame.loc[1, "null_mean_features_combined"] = np.nan
    assert np.isnan(across_seeds(frame, "combined")["p_seeds"]), "NaN is never evidence"
