"""Claim 2 taken apart, with a null that redraws the samples and re-runs the selection.

The paper-like statistic (mean max-cosine of the inducing set to the harmful set, minus that
of the comparison set, features shared with the harmful set counted with cosine 1) mixes two
things. **overlap**: how many more features the inducing set shares with the harmful set —
activation overlap, which the selection can produce by itself. **distinct**: the same
difference with shared features dropped — the geometry of distinct features, which is the
superposition claim proper. **combined**: the paper-like mixture of both.

Each component is tested against two nulls, and its p is the larger of the two (an
intersection-union test: it rejects only when both do, so it keeps its size whenever either null
is true):
- **samples relabelled**: the inducing and comparison samples are shuffled, both sets selected
  again and the component recomputed, so the variability of which samples were drawn is in it.
  It tests "the two groups of samples are alike", which real data never are (other words, other
  topics): alone it rejects about three times too often when the groups differ in features that
  have nothing to do with the harmful set (tests/test_selection_null.py measures it);
- **placebo feature sets**: every feature of both sets is replaced by a random feature of the
  same activation-frequency bin (the harmful set fixed) and the component recomputed. It tests
  "each set is no nearer the harmful set than random features of its frequencies", which holds
  when the groups differ in unrelated features, in frequency or in norm, even where frequent
  features lie nearer the harmful ones. `distinct` draws only outside the harmful set, and
  `combined` draws shared features at their chance rate, so a few shared features test as
  `overlap` instead of flooring it.

The CI resamples samples within every group (the harmful set re-selected too), one draw for a
group the statistic uses twice (the helpful answers are both the reference and the harmful set's
contrast). Selection runs on a batch of relabellings at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from emgeo_utils.core.stats import frequency_matched_draws, mean_ci, permutation_p, seed_level_test
from emgeo_utils.features.selection import activation_frequency, contrast_of
from emgeo_utils.geometry.similarity import unit_rows

COMPONENTS = ("overlap", "distinct", "combined")


def group_moments(acts: torch.Tensor, groups: np.ndarray, contrast: str):
    """Per-row means (and population variances for `standardized`) of `acts` [n, d] over each
    row of sample indices `groups` [m, size] (repeats count again, as a resample needs)."""
    rows = acts[torch.from_numpy(np.asarray(groups, np.int64))]  # [m, size, d]
    mean = rows.mean(1)
    if contrast == "mean_diff":
        return mean, None
    return mean, (rows * rows).mean(1) - mean * mean


def select_batch(mean_a, var_a, n_a, mean_r, var_r, n_r, k: int, contrast: str):
    """Top-k features per row by contrast (positive scores only): indices [m, k] and a validity mask,
    exactly as `selection.select` ranks them (`var_*`: population variances, made unbiased here)."""
    if contrast == "standardized":
        var_a, var_r = var_a * n_a / max(n_a - 1, 1), var_r * n_r / max(n_r - 1, 1)  # as torch.var
    top = torch.topk(contrast_of(mean_a, var_a, mean_r, var_r, contrast), min(k, mean_a.shape[1]), dim=1)
    return top.indices, top.values > 0


class FeatureScores:
    """Per-feature similarity to a fixed harmful set, for every feature of the dictionary."""

    def __init__(self, unit: torch.Tensor, harmful: torch.Tensor, reduce: str, rows: torch.Tensor | None = None):
        """Scores every feature, or only `rows` (the others stay NaN): a resample needs only the
        features its sets selected, which keeps a 131k-wide dictionary out of every bootstrap step."""
        if reduce not in ("max", "mean"):
            raise ValueError(f"reduce must be max or mean, got {reduce!r}")
        n = unit.shape[0]
        self.in_harmful = torch.zeros(n, dtype=torch.bool)
        self.in_harmful[harmful] = True
        self.include = torch.full((n,), float("nan"), dtype=torch.float64)
        self.others = self.include.clone()
        if len(harmful) == 0:
            return
        rows = torch.arange(n) if rows is None else rows
        sims = unit[rows] @ unit[harmful].T  # [len(rows), |H|]
        self_col = harmful[None, :] == rows[:, None]
        if reduce == "max":
            self.include[rows] = sims.max(1).values
            self.others[rows] = sims.masked_fill(self_col, -float("inf")).max(1).values
        else:
            others_n = len(harmful) - self_col.sum(1)
            self.include[rows] = sims.mean(1)
            self.others[rows] = (sims.masked_fill(self_col, 0).sum(1) / others_n.clamp(min=1)).masked_fill(
                others_n == 0, float("nan"))


def _set_stats(scores: FeatureScores, idx: torch.Tensor, valid: torch.Tensor, shared: str) -> dict[str, torch.Tensor]:
    """Per row of selected sets: overlap count, distinct-neighbour mean and the `shared`-handled mean."""
    inh = scores.in_harmful[idx] & valid
    overlap = inh.sum(1).double()
    distinct_mask = valid & ~inh
    include = scores.include[idx]
    with np.errstate(invalid="ignore"):
        distinct = (include * distinct_mask).sum(1) / distinct_mask.sum(1)  # NaN when every feature is shared
        per = scores.others[idx] if shared == "others" else include
        combined = (torch.nan_to_num(per, nan=0.0) * valid).sum(1) / (valid & per.isfinite()).sum(1)
    if shared == "drop":
        combined = distinct
    return {"overlap": overlap, "distinct": distinct, "combined": combined}


class Decomposition:
    """Inducing vs comparison set, each selected against `reference` samples (symmetric) or
    against each other (mirror), compared in their proximity to the harmful set.

    `groups`: sample indices of "inducing", "comparison", "reference", "harmful", "helpful".
    `target`: a fixed feature set to measure proximity to instead of the harmful set selected from
    the harmful and helpful groups (a family chosen on other data, as notebook 07's ground truth; the
    bootstrap then keeps it fixed).
    """

    def __init__(self, acts: torch.Tensor, w_dec: torch.Tensor, groups: dict[str, np.ndarray], k: int,
                 contrast: str = "mean_diff", selection: str = "symmetric", reduce: str = "max", shared: str = "include",
                 target: np.ndarray | None = None):
        self.target = None if target is None else torch.as_tensor(np.asarray(target, np.int64))
        if selection not in ("symmetric", "mirror"):
            raise ValueError(f"selection must be symmetric or mirror, got {selection!r}")
        self.acts = acts.double()
        self.unit = unit_rows(w_dec.double())
        self.groups = {name: np.asarray(idx, np.int64) for name, idx in groups.items()}
        for name in ("inducing", "comparison", "harmful", "helpful") + (("reference",) if selection == "symmetric" else ()):
            if len(self.groups.get(name, ())) < 2:
                raise ValueError(f"the {name} group has {len(self.groups.get(name, ()))} samples; it needs at least 2")
        self.k, self.contrast, self.selection, self.reduce, self.shared = k, contrast, selection, reduce, shared

    # --- selection -------------------------------------------------------------------------------
    def _select(self, a_groups: np.ndarray, ref_mean, ref_var, n_ref: int):
        """Top-k per row of `a_groups` [m, size] against one reference (its mean and variance)."""
        m, size = a_groups.shape
        chunk = max(1, int(2 ** 25 // max(1, size * self.acts.shape[1])))  # bounds the [chunk, size, d] gather
        idx, valid = [], []
        for start in range(0, m, chunk):
            ma, va = group_moments(self.acts, a_groups[start:start + chunk], self.contrast)
            i, v = select_batch(ma, va, size, ref_mean.expand_as(ma), None if ref_var is None else ref_var.expand_as(ma),
                                n_ref, self.k, self.contrast)
            idx.append(i)
            valid.append(v)
        return torch.cat(idx), torch.cat(valid)

    def _reference(self, group: np.ndarray):
        mean, var = group_moments(self.acts, group[None, :], self.contrast)
        return mean, var, len(group)

    def sets(self, ind: np.ndarray, comp: np.ndarray, ref: np.ndarray | None = None) -> tuple:
        """Selected (indices, valid) of the inducing and comparison sets, for rows of sample groups
        `ind` [m, n_a] and `comp` [m, n_b]; symmetric selection uses the one reference group `ref`."""
        if self.selection == "symmetric":
            r = self._reference(self.groups["reference"] if ref is None else ref)
            return self._select(ind, *r), self._select(comp, *r)
        a = [self._select(ind[i:i + 1], *self._reference(comp[i])) for i in range(len(ind))]
        b = [self._select(comp[i:i + 1], *self._reference(ind[i])) for i in range(len(ind))]
        cat = lambda parts: (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))  # noqa: E731
        return cat(a), cat(b)

    def harmful_set(self, harmful: np.ndarray | None = None, helpful: np.ndarray | None = None) -> torch.Tensor:
        if self.target is not None:
            return self.target
        h = self.groups["harmful"] if harmful is None else harmful
        idx, valid = self._select(h[None, :], *self._reference(self.groups["helpful"] if helpful is None else helpful))
        return idx[0][valid[0]]

    # --- statistics ------------------------------------------------------------------------------
    def _differences(self, scores: FeatureScores, a, b) -> dict[str, torch.Tensor]:
        sa, sb = _set_stats(scores, *a, self.shared), _set_stats(scores, *b, self.shared)
        out = {c: sa[c] - sb[c] for c in COMPONENTS}
        out |= {f"{c}_query": sa[c] for c in COMPONENTS} | {f"{c}_reference": sb[c] for c in COMPONENTS}
        out["n_distinct_query"] = (a[1] & ~scores.in_harmful[a[0]]).sum(1).double()
        out["n_distinct_reference"] = (b[1] & ~scores.in_harmful[b[0]]).sum(1).double()
        return out

    def observed(self) -> dict:
        g = self.groups
        harmful = self.harmful_set()
        scores = FeatureScores(self.unit, harmful, self.reduce)
        a, b = self.sets(g["inducing"][None, :], g["comparison"][None, :])
        diffs = self._differences(scores, a, b)
        self.harmful, self.scores = harmful, scores  # for the feature-level and random-set nulls and plots
        self.query, self.comparison_set = a[0][0][a[1][0]], b[0][0][b[1][0]]
        return {name: float(v[0]) for name, v in diffs.items()} | {"n_harmful": len(harmful)}

    def null(self, n_perm: int, seed: int) -> dict[str, np.ndarray]:
        """Every component under `n_perm` relabellings of the inducing / comparison samples (harmful set fixed)."""
        if not hasattr(self, "scores"):
            self.observed()
        g = self.groups
        pool = np.concatenate([g["inducing"], g["comparison"]])
        n_a = len(g["inducing"])
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(pool) for _ in range(n_perm)])
        a, b = self.sets(perms[:, :n_a], perms[:, n_a:])
        diffs = self._differences(self.scores, a, b)
        return {c: diffs[c].numpy() for c in COMPONENTS}

    def feature_null(self, n_perm: int, seed: int) -> dict[str, np.ndarray]:
        """Every component for placebo pairs of feature sets, harmful set fixed: each feature of the
        inducing and of the comparison set replaced by a random feature of its activation-frequency
        bin ({component: null draws}, empty where a set has no features to replace). `distinct`
        draws only outside the harmful set."""
        if not hasattr(self, "scores"):
            self.observed()
        frequency = activation_frequency(self.acts).numpy()
        harmful = torch.nonzero(self.scores.in_harmful).flatten().numpy()
        per = (self.scores.others if self.shared == "others" else self.scores.include).numpy()
        in_harmful = self.scores.in_harmful.double().numpy()
        out = {}
        for c in COMPONENTS:
            outside = c == "distinct" or (c == "combined" and self.shared == "drop")
            a, b = self.query.numpy(), self.comparison_set.numpy()
            if outside:
                a, b = a[~in_harmful[a].astype(bool)], b[~in_harmful[b].astype(bool)]
            if not len(a) or not len(b):
                out[c] = np.array([])
                continue
            exclude = harmful if outside else None
            draws_a = frequency_matched_draws(frequency, a, n_perm, seed, exclude=exclude)
            draws_b = frequency_matched_draws(frequency, b, n_perm, seed + 1, exclude=exclude)
            values = in_harmful if c == "overlap" else per
            stat = _sum if c == "overlap" else _finite_mean
            out[c] = stat(values[draws_a]) - stat(values[draws_b])
        return out

    def bootstrap(self, n_boot: int, seed: int) -> dict[str, np.ndarray]:
        """Every component after resampling samples within each group and selecting every set again;
        groups holding the same samples (reference and helpful) share one draw, as in the statistic."""
        g = self.groups
        rng = np.random.default_rng(seed)
        out = {c: [] for c in COMPONENTS}
        for _ in range(n_boot):
            drawn: dict[bytes, np.ndarray] = {}

            def draw(name: str) -> np.ndarray:
                key = g[name].tobytes()
                if key not in drawn:
                    drawn[key] = g[name][rng.integers(len(g[name]), size=len(g[name]))]
                return drawn[key]

            harmful = self.harmful_set(draw("harmful"), draw("helpful"))
            ref = draw("reference") if self.selection == "symmetric" else None
            a, b = self.sets(draw("inducing")[None, :], draw("comparison")[None, :], ref)
            scores = FeatureScores(self.unit, harmful, self.reduce, torch.unique(torch.cat([a[0][0], b[0][0]])))
            diffs = self._differences(scores, a, b)
            for c in COMPONENTS:
                out[c].append(float(diffs[c][0]))
        return {c: np.asarray(v) for c, v in out.items()}


def _sum(rows: np.ndarray) -> np.ndarray:
    return rows.sum(1)


def _finite_mean(rows: np.ndarray) -> np.ndarray:
    """Per row, the mean of its finite values (NaN for a row with none)."""
    ok = np.isfinite(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, rows, 0.0).sum(1) / ok.sum(1)


def decompose(dec: Decomposition, n_perm: int = 1000, n_boot: int = 200, seed: int = 0) -> dict:
    """Observed components, each with its claim-2 p (one-sided: inducing > comparison; the larger of
    the sample-relabelling and the feature-relabelling p, see the module's docstring), both parts,
    the smallest p the design can reach, and bootstrap CIs."""
    obs = dec.observed()
    null = dec.null(n_perm, seed) if n_perm else None
    features = dec.feature_null(n_perm, seed + 2) if n_perm else None
    boots = dec.bootstrap(n_boot, seed + 1) if n_boot else None
    out = dict(obs)
    for c in COMPONENTS:
        value = obs[c]
        p_samples = permutation_p(value, null[c]) if null is not None else float("nan")
        p_features = permutation_p(value, features[c]) if features else float("nan")
        out[f"p_samples_{c}"], out[f"p_features_{c}"] = p_samples, p_features
        # each null's centre: the world-level test (`across_seeds`) reads every unit against both
        out[f"null_mean_samples_{c}"] = _finite_mean(null[c][None, :])[0] if null is not None else float("nan")
        out[f"null_mean_features_{c}"] = (_finite_mean(features[c][None, :])[0] if features and len(features[c])
                                          else float("nan"))
        out[f"p_{c}"] = max(p_samples, p_features) if np.isfinite(p_samples) and np.isfinite(p_features) else float("nan")
        b = boots[c][np.isfinite(boots[c])] if boots is not None else np.array([])
        lo, hi = np.quantile(b, [0.025, 0.975]) if len(b) > 10 else (np.nan, np.nan)
        out[f"ci_low_{c}"], out[f"ci_high_{c}"] = float(lo), float(hi)
    out["n_perm"], out["smallest_p"] = n_perm, 1 / (1 + n_perm) if n_perm else float("nan")
    return out


NULLS = {"features": "placebo feature sets", "samples": "relabelled samples"}


def unit_columns(component: str) -> tuple[str, ...]:
    """The columns of a `decompose` row the world-level test reads for one component."""
    return (component, f"p_{component}", f"p_features_{component}") + tuple(f"null_mean_{n}_{component}" for n in NULLS)


def across_seeds(frame, component: str) -> dict:
    """One component over independent units (`frame`: one `decompose` row per unit, each its own world):
    the world-level claim-2 test.

    Each unit's value is read against the centres of its two nulls (`decompose`: the placebo feature sets'
    mean, frequency-matched random features; the relabelled samples' mean) and counts only its excess over
    the larger of the two. The p is the one-sided t over units of that excess, so the test keeps its size
    wherever either null holds in every unit (the excess over the larger centre is at most the excess over
    the valid one), and it costs little power against the t over the raw values (measured in
    tests/test_selection_null.py: 0.84-1.0x on planted effects). Value, CI and p are that excess's, so the CI
    inverts the test that gives the p; `decided_by` says so. For equivalence (a negative control) the 90%
    interval runs from the excess over the larger centre's lower end to the excess over the smaller centre's
    upper end (`tost_low`, `tost_high`): absence must hold against both nulls. With one row (a real model)
    that run's own claim-2 p (the larger of its two permutation p's) and resampled CI stand in."""
    values = frame[component].to_numpy(float)
    out = {"per_seed": values.round(3).tolist(), "per_seed_p": frame[f"p_{component}"].round(4).tolist(),
           "units": (int((values > 0).sum()), len(values)), "raw_mean": float(values.mean())}
    if len(frame) == 1:
        row = frame.iloc[0]
        return out | {"mean": row[component], "ci_low": row.get(f"ci_low_{component}", np.nan),
                      "ci_high": row.get(f"ci_high_{component}", np.nan), "p_seeds": row[f"p_{component}"],
                      "p_t": np.nan, "smallest_p": row.get("smallest_p", np.nan), "decided_by": None, "parts": {}}
    centres = np.stack([frame[f"null_mean_{null}_{component}"].to_numpy(float) if f"null_mean_{null}_{component}" in frame
                        else np.full(len(values), np.nan) for null in NULLS])
    excess, generous = values - centres.max(0), values - centres.min(0)
    mean, lo, hi = mean_ci(excess)
    p = seed_level_test(excess)[1]
    parts = {}
    for null, centre in zip(NULLS, centres):
        m, l, h = mean_ci(values - centre)
        parts[null] = {"label": NULLS[null], "mean": m, "ci_low": l, "ci_high": h, "p": seed_level_test(values - centre)[1]}
    return out | {"mean": mean, "ci_low": lo, "ci_high": hi, "p_seeds": p, "p_t": seed_level_test(values)[1],
                  "smallest_p": None, "parts": parts, "tost_low": mean_ci(excess, 0.90)[1],
                  "tost_high": mean_ci(generous, 0.90)[2],
                  "decided_by": f"the excess over the larger null centre per unit: {_signed(mean)} [{_g(lo)}, {_g(hi)}], p {_g(p)}"}


def _g(x: float) -> str:
    return f"{x:.3g}"


def _signed(x: float) -> str:
    return f"{x:+.3g}"


def across_seeds_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`: each component's mean over seeds and its seed-level p (`across_seeds`)."""
    rows = []
    for key, part in frame.groupby(by, sort=False):
        row = dict(zip(by, key))
        for c in COMPONENTS:
            summary = across_seeds(part, c)
            row |= {c: summary["mean"], f"p_seeds_{c}": summary["p_seeds"]}
        rows.append(row)
    return pd.DataFrame(rows)
