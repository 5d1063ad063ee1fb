"""Statistics that can fail: permutation tests, bootstrap CIs, matched random-set nulls.

Every function takes an explicit seed; p-values are one-sided in the direction of the claim
and computed as (1 + #{null >= observed}) / (1 + n), which is valid for any finite n.

NaN is never evidence: a statistic that cannot be computed (NaN input, or a constant sample
where a test needs spread) gives p = NaN, never a small p, and is caught here before scipy
would warn about it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #{null >= observed}) / (1 + n) over the finite null draws; NaN when `observed` is not finite."""
    null = np.asarray(null, float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or len(null) == 0:
        return float("nan")
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))


def has_nan(*arrays) -> bool:
    return any(np.isnan(np.asarray(a, float)).any() for a in arrays)


def is_constant(values) -> bool:
    """No spread to speak of: every value equal up to rounding (where scipy warns of catastrophic
    cancellation), so a variance-based statistic is not computable."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return True
    return bool(np.max(np.abs(v - v.mean())) <= 1e-12 * max(abs(float(v.mean())), 1e-300))


def _variance(v: np.ndarray) -> float:
    return 0.0 if is_constant(v) else float(v.var(ddof=1))


EXACT_LIMIT = 20000  # enumerate every relabelling when there are at most this many


def smallest_p_unpaired(n_a: int, n_b: int, n_perm: int) -> float:
    """The smallest p `mean_difference_test` can return for these group sizes."""
    splits = math.comb(n_a + n_b, n_a)
    return 1 / splits if splits <= EXACT_LIMIT else 1 / (1 + n_perm)


def smallest_p_paired(n: int, n_perm: int) -> float:
    """The smallest p `sign_flip_test` can return for `n` pairs."""
    return 1 / 2 ** n if 2 ** n <= EXACT_LIMIT else 1 / (1 + n_perm)


def mean_difference_test(a: np.ndarray, b: np.ndarray, n_perm: int = 5000, seed: int = 0) -> tuple[float, float]:
    """mean(a) - mean(b) and its one-sided permutation p-value (H1: a > b).

    Small groups are relabelled exhaustively (exact p; with 3 vs 3 there are only 20 splits,
    so p >= 0.05: see `smallest_p_unpaired`); larger ones with `n_perm` random shuffles."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0 or has_nan(a, b):
        return float("nan"), float("nan")
    observed = a.mean() - b.mean()
    pooled = np.concatenate([a, b])
    if math.comb(len(pooled), len(a)) <= EXACT_LIMIT:
        members = np.array(list(itertools.combinations(range(len(pooled)), len(a))))
        in_a = np.zeros((len(members), len(pooled)), bool)
        in_a[np.arange(len(members))[:, None], members] = True
        null = (in_a * pooled).sum(1) / len(a) - (~in_a * pooled).sum(1) / len(b)
        return float(observed), float(np.mean(null >= observed - 1e-12))  # the identity split is among them
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, len(pooled))), axis=1)  # n_perm shuffles at once
    shuffled = pooled[perms]
    null = shuffled[:, :len(a)].mean(1) - shuffled[:, len(a):].mean(1)
    return float(observed), permutation_p(observed, null)


def sign_flip_test(differences, n_perm: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Paired test: mean of per-pair differences and its one-sided sign-flip p (H1: mean > 0).

    Under the null each pair's difference is as likely positive as negative; with n pairs
    there are 2**n sign patterns, enumerated when few (smallest p = 2**-n: 8 pairs give 0.0039)."""
    d = np.asarray(differences, float)
    if len(d) == 0 or has_nan(d):
        return float("nan"), float("nan")
    observed = d.mean()
    if 2 ** len(d) <= EXACT_LIMIT:
        signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        return float(observed), float(np.mean((signs * d).mean(1) >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(d)))
    return float(observed), permutation_p(observed, (signs * d).mean(1))


def upper_bound(values, level: float = 0.95) -> float:
    """One-sided upper `level` t-bound of the mean of independent values (e.g. paired differences)."""
    v = np.asarray(values, float)
    if len(v) < 2 or has_nan(v):
        return float("nan")
    return float(v.mean() + sps.t.ppf(level, len(v) - 1) * np.sqrt(_variance(v) / len(v)))


def noninferiority(differences, margin: float, level: float = 0.95) -> tuple[bool, float]:
    """Is mean(differences) below `margin`? True when the one-sided upper bound is below it.

    For "A is no worse than B" with differences A - B of a harm measure (lower is better)."""
    bound = upper_bound(differences, level)
    return bool(bound < margin), bound


def seed_level_test(a, b=None) -> tuple[float, float]:
    """A test whose unit is the independent run (e.g. the pretraining seed): one-sided t-test of
    mean(a) > 0, or with `b`, Welch's test of mean(a) > mean(b). Returns (difference, p)."""
    a = np.asarray(a, float)
    if b is None:
        if len(a) < 2 or has_nan(a):
            return float(a.mean()) if len(a) else float("nan"), float("nan")
        se = np.sqrt(_variance(a) / len(a))
        if se == 0:  # no spread: t is undefined, not infinite
            return float(a.mean()), float("nan")
        return float(a.mean()), float(sps.t.sf(a.mean() / se, len(a) - 1))
    b = np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    se, df = _welch_se_df(a, b)
    if not np.isfinite(se) or se == 0:
        return diff, float("nan")
    return diff, float(sps.t.sf(diff / se, df))


def _welch_se_df(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Welch's standard error of mean(a) - mean(b) and its Welch-Satterthwaite degrees of freedom
    (NaN when either group has fewer than two values or a NaN; se 0 when neither has spread)."""
    if len(a) < 2 or len(b) < 2 or has_nan(a, b):
        return float("nan"), float("nan")
    va, vb = _variance(a) / len(a), _variance(b) / len(b)
    if va + vb == 0:
        return 0.0, float("nan")
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    return float(np.sqrt(va + vb)), float(df)


def welch_ci(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its Welch t-interval (Welch-Satterthwaite degrees of freedom), the
    interval that goes with `seed_level_test(a, b)`."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    se, df = _welch_se_df(a, b)
    if not np.isfinite(se) or se == 0:  # no spread in either group: no interval to give
        return diff, float("nan"), float("nan")
    half = sps.t.ppf(0.5 + level / 2, df) * se
    return diff, diff - half, diff + half


def welch_against_rate(a, rate: float, se: float, n: int) -> tuple[float, ...]:
    """mean(a) - rate, where `rate` is another model's measured rate with its standard error over its `n`
    items (questions or answers): Welch's t with the rate's n - 1 degrees of freedom, so the rate's sampling
    error counts as a second group's would. Returns (difference, 95% low, high, one-sided p, 90% low, high)."""
    a = np.asarray(a, float)
    diff = float(a.mean() - rate) if len(a) else float("nan")
    if len(a) < 2 or has_nan(a) or not np.isfinite(se) or n < 2:
        return (diff,) + (float("nan"),) * 5
    va, vb = _variance(a) / len(a), float(se) ** 2
    total = np.sqrt(va + vb)
    if total == 0:
        return (diff,) + (float("nan"),) * 5
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (n - 1) if vb else 0.0))
    half95, half90 = sps.t.ppf(0.975, df) * total, sps.t.ppf(0.95, df) * total
    return diff, diff - half95, diff + half95, float(sps.t.sf(diff / total, df)), diff - half90, diff + half90


def bh_qvalues(p_values) -> np.ndarray:
    """Benjamini-Hochberg q-values (NaN p-values stay NaN and do not count)."""
    p = np.asarray(p_values, float)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok) == 0:
        return q
    order = ok[np.argsort(p[ok])]
    ranked = p[order] * len(ok) / np.arange(1, len(ok) + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


MIN_BOOTSTRAP_UNITS = 10  # below this a percentile bootstrap undercovers (5 units: about 84% for a nominal 95%)


def _enough_units(*arrays) -> None:
    n = min(len(np.asarray(a)) for a in arrays)
    if n < MIN_BOOTSTRAP_UNITS:
        raise ValueError(f"a percentile bootstrap over {n} units does not keep its coverage (it needs at least "
                         f"{MIN_BOOTSTRAP_UNITS}); use mean_ci (t) for a mean or correlation_mean_ci (Fisher z) for "
                         "correlations over few runs")


def bootstrap_ci(a: np.ndarray, b: np.ndarray | None = None, stat: Callable | None = None, n_boot: int = 2000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat(a)` or, with `b`, of mean(a) - mean(b) (resampled apart);
    at least `MIN_BOOTSTRAP_UNITS` values per group, NaN for NaN or constant input."""
    a = np.asarray(a, float)
    _enough_units(a, *(() if b is None else (b,)))
    if has_nan(a, *(() if b is None else (b,))) or (is_constant(a) and (b is None or is_constant(b))):
        return float("nan"), float("nan")  # no spread: no interval (not a zero-wide one)
    rng = np.random.default_rng(seed)
    if b is None:
        stat = stat or np.mean
        values = np.array([stat(a[rng.integers(len(a), size=len(a))]) for _ in range(n_boot)])
    else:
        b = np.asarray(b, float)
        ia = rng.integers(len(a), size=(n_boot, len(a)))
        ib = rng.integers(len(b), size=(n_boot, len(b)))
        values = a[ia].mean(1) - b[ib].mean(1)
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def paired_bootstrap_ci(x, y, stat: Callable, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat(x, y)`, resampling (x, y) pairs together (at least
    `MIN_BOOTSTRAP_UNITS` pairs)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    _enough_units(x)
    if has_nan(x, y):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(len(x), size=len(x))
        draws.append(stat(x[idx], y[idx]))
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))


def spearman(x, y) -> float:
    """Spearman's rho; NaN when either side is constant or has a NaN (no correlation to speak of)."""
    if has_nan(x, y) or len(np.asarray(x)) < 2 or np.ptp(np.asarray(x, float)) == 0 or np.ptp(np.asarray(y, float)) == 0:
        return float("nan")
    return float(sps.spearmanr(x, y).statistic)


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based CI over independent runs (e.g. seeds); no interval (NaN) for fewer than two
    values, a NaN, or values without spread (the t-interval is undefined there, not zero-wide)."""
    v = np.asarray(values, float)
    m = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2 or has_nan(v) or is_constant(v):
        return m, float("nan"), float("nan")
    half = sps.t.ppf(0.5 + level / 2, len(v) - 1) * np.sqrt(_variance(v) / len(v))
    return m, m - half, m + half


MAX_CORRELATION = 0.995  # |r| above this counts as this on Fisher's z (z = 3.0): a Spearman over a
# handful of points is often exactly 1 (z infinite), and one such unit would otherwise decide the mean


def fisher_z(rhos) -> np.ndarray:
    return np.arctanh(np.clip(np.asarray(rhos, float), -MAX_CORRELATION, MAX_CORRELATION))


def correlation_mean_ci(rhos, level: float = 0.95) -> tuple[float, float, float]:
    """The mean of correlations over independent runs, averaged on Fisher's z, with the t-interval
    of the z values mapped back: always inside [-1, 1] and covering at 3, 5 or 8 runs, where a
    t-interval of the raw values can pass 1. |r| is capped at `MAX_CORRELATION`."""
    m, lo, hi = mean_ci(fisher_z(rhos), level)
    return float(np.tanh(m)), float(np.tanh(lo)), float(np.tanh(hi))


def correlation_mean_test(rhos) -> tuple[float, float]:
    """The Fisher-z mean of correlations over independent runs and the one-sided t-test of mean z > 0."""
    z = fisher_z(rhos)
    _, p = seed_level_test(z)
    return float(np.tanh(z.mean())) if len(z) else float("nan"), p


def frequency_matched_draws(frequencies: np.ndarray, query: np.ndarray, n_draws: int, seed: int,
                            exclude: np.ndarray | None = None, n_bins: int = 10) -> np.ndarray:
    """Random feature sets like `query` in activation frequency: [n_draws, len(query)] indices.

    Features are binned by quantiles of log frequency; each query feature is replaced by a
    random feature of its bin (never one in `exclude`).
    """
    if has_nan(frequencies):
        raise ValueError("frequency_matched_draws: a frequency is NaN (an activation matrix with NaN in it?)")
    rng = np.random.default_rng(seed)
    logf = np.log10(np.asarray(frequencies, float) + 1e-9)
    edges = np.unique(np.quantile(logf, np.linspace(0, 1, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, logf, side="right") - 1, 0, len(edges) - 2)
    allowed = np.ones(len(logf), bool)
    if exclude is not None:
        allowed[np.asarray(exclude)] = False
    members = {b: np.flatnonzero((bins == b) & allowed) for b in np.unique(bins)}
    fallback = np.flatnonzero(allowed)
    out = np.empty((n_draws, len(query)), dtype=np.int64)
    for j, feat in enumerate(np.asarray(query)):
        pool = members.get(bins[feat], fallback)
        out[:, j] = rng.choice(pool if len(pool) else fallback, size=n_draws)
    return out


def auc(scores, labels) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    ranks = sps.rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def spearman_ci(x, y, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """Spearman rho, its bootstrap CI, and the one-sided permutation p-value (H1: rho > 0).

    Vectorised: every resample is ranked at once (ties get average ranks, as in scipy). Below
    `MIN_BOOTSTRAP_UNITS` pairs the percentile bootstrap does not cover: the CI is NaN (the
    permutation p stays valid)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    if not np.isfinite(rho):  # a constant side or a NaN: nothing to test
        return rho, float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(x), size=(n_boot, len(x)))
    boots = _row_pearson(sps.rankdata(x[idx], axis=1), sps.rankdata(y[idx], axis=1))
    boots = boots[np.isfinite(boots)]  # resamples with a constant side have no correlation
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    null = _row_pearson(np.broadcast_to(rx, (n_boot, len(x))), ry[np.argsort(rng.random((n_boot, len(y))), axis=1)])
    lo, hi = (np.quantile(boots, [0.025, 0.975]) if len(boots) and len(x) >= MIN_BOOTSTRAP_UNITS else (np.nan, np.nan))
    return rho, float(lo), float(hi), permutation_p(rho, null)


def seed_summary(frame: pd.DataFrame, value: str, by: list[str]) -> pd.DataFrame:
    """Mean and 95% t-CI over seeds of `value`, per group `by` (one row per group)."""
    rows = []
    for key, part in frame.groupby(by, sort=False):
        mean, lo, hi = mean_ci(part[value].to_numpy())
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,))) | {
            "mean": mean, "ci_low": lo, "ci_high": hi, "n_seeds": len(part)})
    return pd.DataFrame(rows)
