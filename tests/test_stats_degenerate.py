"""NaN is never evidence: every helper in core/stats.py, given a NaN or a constant (degenerate) input,
returns NaN or a p that is no evidence, never a small finite p, and raises no library warning."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from emgeo_utils.core import stats

NAN3 = np.array([0.1, np.nan, 0.3])
CONST = np.full(4, 0.7)
NEAR = np.array([5.0, 5.0, 5.0 + 1e-15])  # nearly equal: scipy warns of catastrophic cancellation here


@pytest.fixture(autouse=True)
def warnings_fail():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def no_evidence(p: float) -> bool:
    return math.isnan(p) or p >= 0.5


def test_permutation_p():
    assert math.isnan(stats.permutation_p(float("nan"), np.zeros(99)))
    assert math.isnan(stats.permutation_p(1.0, np.full(9, np.nan)))
    assert stats.permutation_p(1.0, np.array([0.0, np.nan, 2.0])) == 2 / 3  # NaN draws do not count


@pytest.mark.parametrize("a, b", [(NAN3, np.ones(3)), (np.ones(3), NAN3)])
def test_mean_difference_test_nan(a, b):
    assert all(math.isnan(x) for x in stats.mean_difference_test(a, b))


def test_mean_difference_test_constant():
    assert no_evidence(stats.mean_difference_test(CONST, CONST)[1])


def test_sign_flip_test():
    assert all(math.isnan(x) for x in stats.sign_flip_test(NAN3))
    assert no_evidence(stats.sign_flip_test(np.zeros(6))[1])


@pytest.mark.parametrize("values", [NAN3, CONST, NEAR])
def test_seed_level_test_one_sample(values):
    assert math.isnan(stats.seed_level_test(values)[1])


@pytest.mark.parametrize("a, b", [(NAN3, np.ones(3)), (CONST, CONST + 1), (NEAR, NEAR), (np.ones(1), np.ones(3))])
def test_seed_level_test_two_samples(a, b):
    assert math.isnan(stats.seed_level_test(a, b)[1])


def test_seed_level_test_one_constant_group_is_still_a_welch_test():
    diff, p = stats.seed_level_test(np.array([1.0, 1.2, 1.4]), CONST)
    assert diff == pytest.approx(0.5) and 0 < p < 0.05


@pytest.mark.parametrize("a, b", [(NAN3, np.ones(3)), (CONST, CONST), (NEAR, NEAR)])
def test_welch_ci(a, b):
    _, low, high = stats.welch_ci(a, b)
    assert math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("values", [NAN3, np.ones(1)])
def test_upper_bound_and_noninferiority(values):
    assert math.isnan(stats.upper_bound(values))
    assert stats.noninferiority(values, 0.1) == (False, pytest.approx(float("nan"), nan_ok=True))


def test_mean_ci():
    assert all(math.isnan(x) for x in stats.mean_ci(NAN3)[1:])
    assert all(math.isnan(x) for x in stats.mean_ci(np.array([]))), "no values: no mean"
    assert all(math.isnan(x) for x in stats.mean_ci(CONST)[1:]), "no spread: no t-interval"


def test_bh_qvalues():
    assert (stats.bh_qvalues([0.3, 0.3, 0.3]) == 0.3).all(), "constant p-values stay what they are"
    q = stats.bh_qvalues([0.01, np.nan, 0.04])
    assert math.isnan(q[1]) and q[0] == pytest.approx(0.02)


NAN12 = np.r_[np.arange(11.0), np.nan]
CONST12 = np.full(12, 0.7)


def test_bootstrap_cis():
    assert all(math.isnan(x) for x in stats.bootstrap_ci(NAN12))
    assert all(math.isnan(x) for x in stats.bootstrap_ci(NAN12, np.ones(12)))
    assert all(math.isnan(x) for x in stats.paired_bootstrap_ci(CONST12, CONST12, stats.spearman, n_boot=50))
    assert all(math.isnan(x) for x in stats.paired_bootstrap_ci(NAN12, np.arange(12.0), stats.spearman, n_boot=50))


def test_bootstrap_refuses_few_units():
    with pytest.raises(ValueError, match="mean_ci"):
        stats.bootstrap_ci(np.arange(5.0))
    with pytest.raises(ValueError, match="correlation_mean_ci"):
        stats.paired_bootstrap_ci(np.arange(8.0), np.arange(8.0), stats.spearman)


@pytest.mark.parametrize("values", [NAN3, np.array([0.5])])
def test_correlation_mean(values):
    assert all(math.isnan(x) for x in stats.correlation_mean_ci(values)[1:])
    assert math.isnan(stats.correlation_mean_test(values)[1])


def test_correlation_mean_of_constant_correlations_has_no_p():
    assert math.isnan(stats.correlation_mean_test(np.full(4, 0.3))[1])
    m, lo, hi = stats.correlation_mean_ci(np.full(4, 0.3))
    assert m == pytest.approx(0.3) and math.isnan(lo) and math.isnan(hi)


def test_frequency_matched_draws():
    with pytest.raises(ValueError, match="NaN"):
        stats.frequency_matched_draws(np.array([0.1, np.nan, 0.3, 0.2]), np.array([0]), 5, 0)
    draws = stats.frequency_matched_draws(np.full(20, 0.3), np.array([0, 1]), 50, 0, exclude=np.array([0, 1]))
    assert draws.shape == (50, 2) and not np.isin(draws, [0, 1]).any()  # one bin: any other feature


def test_smallest_p_needs_no_data():
    assert stats.smallest_p_unpaired(3, 3, 999) == pytest.approx(1 / 20)
    assert stats.smallest_p_paired(8, 999) == pytest.approx(1 / 256)


@pytest.mark.parametrize("x, y", [(CONST, np.arange(4.0)), (np.arange(4.0), CONST), (NAN3, np.arange(3.0))])
def test_spearman_and_its_ci(x, y):
    assert math.isnan(stats.spearman(x, y))
    assert all(math.isnan(v) for v in stats.spearman_ci(x, y, n_boot=50)), "rho NaN: no CI and no p"


def test_auc():
    assert math.isnan(stats.auc([0.1, 0.2], [True, True]))
    assert math.isnan(stats.auc([0.1, np.nan, 0.3], [True, False, False]))
    assert stats.auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5, "constant scores rank nothing: chance"


def test_bootstrap_of_constant_values_has_no_interval():
    assert all(math.isnan(x) for x in stats.bootstrap_ci(CONST12))
    assert all(math.isnan(x) for x in stats.bootstrap_ci(CONST12, CONST12 + 1))


def test_seed_summary():
    frame = pd.DataFrame({"g": ["a", "a", "a"], "v": [0.1, np.nan, 0.2]})
    row = stats.seed_summary(frame, "v", ["g"]).iloc[0]
    assert math.isnan(row.ci_low) and math.isnan(row.ci_high)


def test_spearman_ci_gives_no_percentile_interval_under_ten_pairs():
    rho, lo, hi, p = stats.spearman_ci(np.arange(9.0), np.arange(9.0) ** 2, n_boot=200)
    assert rho == pytest.approx(1.0) and math.isnan(lo) and math.isnan(hi) and p < 0.01
    assert not math.isnan(stats.spearman_ci(np.arange(10.0), np.arange(10.0) ** 2, n_boot=200)[1])
