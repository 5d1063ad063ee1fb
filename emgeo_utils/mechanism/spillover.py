"""Does a fine-tune move features in proportion to their geometry? Statistics of one fine-tune.

Inputs are one checkpoint and layer of `changes.feature_changes`. The fine-tune's targets are
left out of every correlation. Nulls redraw the *targets* (for the geometric predictor) or the
*harmful set* (for its spillover) as random features of matched activation frequency; the
features and their measured changes stay as measured.
"""

from __future__ import annotations

import numpy as np
import scipy.stats as sps

from emgeo_utils.core import stats
from emgeo_utils.mechanism.coactivation import coactivation


def _unit_rows(w_dec: np.ndarray) -> np.ndarray:
    return w_dec / np.maximum(np.linalg.norm(w_dec, axis=1, keepdims=True), 1e-12)


def cosine_to_targets(w_dec: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each feature's decoder cosine with the targets' weighted direction sum (weights: how much the
    fine-tune raised each target on its training data): the overlap the derivation says carries a step."""
    d = _unit_rows(w_dec)
    u = (np.asarray(weights, float)[:, None] * d[targets]).sum(0)
    return d @ (u / max(np.linalg.norm(u), 1e-12))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho, NaN (without a warning) where either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return stats.spearman(x, y)


def _rank(x: np.ndarray) -> np.ndarray:
    r = sps.rankdata(x)
    return (r - r.mean()) / max(r.std(), 1e-12)


def partial_spearman(y: np.ndarray, x: np.ndarray, z: np.ndarray) -> float:
    """Spearman correlation of y and x with z's rank taken out of both (linear in ranks)."""
    ry, rx, rz = _rank(y), _rank(x), _rank(z)
    res_y, res_x = ry - (ry @ rz) / len(rz) * rz, rx - (rx @ rz) / len(rz) * rz
    denom = np.linalg.norm(res_y) * np.linalg.norm(res_x)
    return float(res_y @ res_x / denom) if denom > 0 else float("nan")


def rank_regression(y: np.ndarray, predictors: list[np.ndarray]) -> np.ndarray:
    """Standardised coefficients of y's ranks on the predictors' ranks (least squares)."""
    X = np.stack([_rank(p) for p in predictors], 1)
    return np.linalg.lstsq(X, _rank(y), rcond=None)[0]


def geometry_null(observed: np.ndarray, w_dec: np.ndarray, targets: np.ndarray, weights: np.ndarray, keep: np.ndarray,
                  frequency: np.ndarray, n_draws: int, seed: int, *more: np.ndarray) -> np.ndarray:
    """Spearman(cosine to targets, observed change) with frequency-matched random targets: [n_draws],
    or [1 + len(more), n_draws] when other changes (`more`, e.g. beyond the readout) share the draws."""
    draws = stats.frequency_matched_draws(frequency, targets, n_draws, seed, exclude=targets)
    changes = (observed, *more)
    out = np.empty((len(changes), n_draws))
    for i, fake in enumerate(draws):
        mask = keep.copy()
        mask[fake] = False
        cos = cosine_to_targets(w_dec, fake, weights)[mask]
        out[:, i] = [_spearman(cos, c[mask]) for c in changes]
    return out if more else out[0]


def random_sets(members: np.ndarray, keep: np.ndarray, frequency: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
    """[n_draws, len(members)] frequency-matched random sets like `members`, drawn from `keep`, members included:
    under the null `members` is one such draw (left out of the pool, the p rejected 0.124 of null worlds for 1/11)."""
    return stats.frequency_matched_draws(frequency, members, n_draws, seed, exclude=np.flatnonzero(~keep))


def _mean(null: np.ndarray | None) -> float:
    return float(null.mean()) if null is not None and len(null) else float("nan")


def _p(observed: float, null: np.ndarray | None) -> float:
    return stats.permutation_p(observed, null) if null is not None and len(null) else float("nan")


def _mask(idx: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    m[np.asarray(idx, int)] = True
    return m


def analyse(ch: dict, w_dec: np.ndarray, harmful: np.ndarray, activity: np.ndarray, n_null: int = 500, seed: int = 0) -> dict:
    """Every statistic of one fine-tune, checkpoint and layer (`ch`: `feature_changes`' measures;
    `activity`: [tokens, d_sae] booleans of the base model on ordinary text)."""
    a = {k: np.asarray(v, float) if isinstance(v, list) else v for k, v in ch.items()}
    targets = np.asarray(ch["targets"], int)
    frequency = activity.mean(0)
    alive = (frequency > 0) | (a["base_frequency"] > 0)
    keep = alive & ~_mask(targets, len(alive))
    cos = cosine_to_targets(w_dec, targets, a["train"][targets])
    phi = coactivation(activity, targets)
    obs, excess = a["observed"], a["observed"] - a["readout_only"]
    rho, rho_beyond = _spearman(cos[keep], obs[keep]), _spearman(cos[keep], excess[keep])
    null, null_beyond = (geometry_null(obs, w_dec, targets, a["train"][targets], keep, frequency, n_null, seed, excess)
                         if n_null else (None, None))
    harm = np.asarray([h for h in harmful if keep[h]], int)
    out = {"n_features": int(keep.sum()), "n_harmful": len(harm),
           "rho_first_order_pre": _spearman(a["first_order_pre"][keep], a["observed_pre"][keep]),
           "rho_first_order": _spearman(a["first_order"][keep], obs[keep]),
           "first_order_relative_error": ch["first_order_relative_error"],
           "rho_geometry": rho, "rho_geometry_null": _mean(null), "p_geometry": _p(rho, null),
           "rho_readout_only": _spearman(cos[keep], a["readout_only"][keep]),
           "rho_beyond_readout": rho_beyond, "rho_beyond_readout_null": _mean(null_beyond),
           "p_beyond_readout": _p(rho_beyond, null_beyond),
           "rho_coactivation": _spearman(phi[keep], obs[keep]),
           "partial_geometry": partial_spearman(obs[keep], cos[keep], phi[keep]),
           "partial_coactivation": partial_spearman(obs[keep], phi[keep], cos[keep])}
    out["beta_geometry"], out["beta_coactivation"] = rank_regression(obs[keep], [cos[keep], phi[keep]]).tolist()
    if len(harm):
        draws = random_sets(harm, keep, frequency, n_null, seed + 1) if n_null else None
        amp_null = obs[draws].mean(1) if n_null else None
        exc_null = excess[draws].mean(1) if n_null else None
        amp, exc = float(obs[harm].mean()), float(excess[harm].mean())
        out |= {"harmful_amplification": amp, "harmful_amplification_null": _mean(amp_null),
                "p_harmful_amplification": _p(amp, amp_null),
                "harmful_excess": exc, "harmful_excess_null": _mean(exc_null), "p_harmful_excess": _p(exc, exc_null),
                "harmful_cosine": float(cos[harm].mean()),
                "rho_harmful_geometry": _spearman(cos[harm], obs[harm]) if len(harm) > 2 else float("nan")}
    return out
