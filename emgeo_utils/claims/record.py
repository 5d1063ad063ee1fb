"""The claims record: each notebook's measurements, read against its claims file.

A notebook computes statistics and hands each to one helper per design (`paired`, `over_units`,
`correlation`, `seed_level`, `share`, `noninferiority`, `record`); the claim's words, kind, direction,
null, margin and alpha come from `notebooks/claims/<notebook>.yaml` and the profile's expectation from
`params/<profile>/expectations.yaml` (`claims/specs.py`). The rule is applied once, here:

- *outcome*: the statement's effect is shown at alpha (raw p), and its criterion met; it is what an
  expectation asserts (`finish` fails the notebook, naming every flip, after every claim is recorded);
- *verdict*: the outcome read by kind (`claims/verdicts.py`), with Holm over the notebook's
  confirmatory claims.

`summary` writes the notebook's closing summary from the record; `report/claims_table.py` gathers
every notebook's record into `claims.md` / `claims.csv`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from emgeo_utils.core import paths, stats
from emgeo_utils.core.files import write_text_atomic
from emgeo_utils.claims import history, specs, verdicts

COLUMNS = ["notebook", "claim", "kind", "family", "paper", "predicts", "statement", "measure", "value", "ci_low",
           "ci_high", "p_value", "p_adjusted", "smallest_p", "null_value", "margin", "tost_low", "tost_high", "units",
           "outcome", "expected", "registered", "expectation_set", "declared", "preregistered", "verdict", "as_expected",
           "note"]


class ClaimMismatch(AssertionError):
    """A measured outcome differs from the outcome the profile expects."""


@dataclasses.dataclass
class Claim:
    notebook: str
    claim: str
    kind: str
    family: str
    paper: str
    statement: str
    measure: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    outcome: bool
    expected: bool | str | None  # "record: <why>": recorded, not asserted
    note: str = ""
    predicts: str | None = None
    registered: str | None = None
    expectation_set: str | None = None
    smallest_p: float | None = None
    p_adjusted: float | None = None  # Holm over the notebook's confirmatory claims
    alpha: float = 0.05
    direction: int = 1
    null_value: float = 0.0
    margin: float | None = None
    criterion: str = ""
    criterion_met: bool | None = None
    cell: int | None = None  # the execution count of the cell that recorded it (the report links it)
    units: str | None = None  # "k/n": units whose effect points the way the statement says
    not_computable: str | None = None
    tost_low: float | None = None   # the 90% CI equivalence is read on (TOST at 0.05), where the design gives one
    tost_high: float | None = None
    deciding: str | None = None     # the comparison that decided the p, with the row's numbers (the verdict's reason)
    gated_by: tuple = ()            # content-matched controls this paper claim needs (`claims/verdicts.py`)
    gate_verdicts: dict | None = None
    descriptive: str | None = None  # why the design cannot decide it
    declared: str | None = None     # when the claims file first declared it (git history, `claims/history.py`)
    preregistered: bool | None = None  # declared before its first committed result
    margin_post_hoc: bool | None = None

    @property
    def held(self) -> str:
        return "holds" if self.outcome else "does not hold"

    @property
    def as_expected(self) -> str:
        if self.not_computable and isinstance(self.expected, bool):
            return "UNEXPECTED"  # an asserted outcome cannot rest on a statistic that was not computed
        if isinstance(self.expected, str):
            return "record only"
        if self.expected is None:
            return "not checked"
        return "as expected" if self.outcome == self.expected else "UNEXPECTED"

    @property
    def verdict(self) -> str:
        return verdicts.read(self)


def fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def measured(c: dict | Claim) -> str:
    """`measure = value [lo, hi], p = p`: one claim's measurement in words."""
    r = dataclasses.asdict(c) if isinstance(c, Claim) else c
    text = f"{r.get('measure', '')} = {fmt(r.get('value')) or 'NaN'}"
    if r.get("ci_low") is not None and r.get("ci_high") is not None and not pd.isna(r.get("ci_low")):
        text += f" [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
    if r.get("p_value") is not None and not pd.isna(r.get("p_value")):
        text += f", p = {fmt(r['p_value'])}"
        if r.get("p_adjusted") is not None and not pd.isna(r.get("p_adjusted")):
            text += f" (Holm {fmt(r['p_adjusted'])})"
    return text


def mismatch(c: Claim) -> str:
    """`held (UNEXPECTED): measured x = v [lo, hi], p = p; expected holds`: one flipped claim."""
    want = "holds" if c.expected else "does not hold"
    if c.not_computable:
        return f"not computable (UNEXPECTED): {c.not_computable}; expected {want}"
    return f"{c.held} (UNEXPECTED): measured {measured(c)}; expected {want}"


def _execution_count() -> int | None:
    """The running cell's number in a notebook kernel (IPython counts up after the cell), else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "execution_count", None) if shell is not None else None


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


class ClaimsRecord:
    """One notebook's claims, saved to `<figures>/claims/<notebook>.json` after every claim."""

    def __init__(self, notebook: str, profile: str = "default", params: dict | None = None,
                 expectations: dict | None = None):
        self.notebook = notebook
        self.profile = profile
        self.params = params or {}
        self.specs = specs.specs(notebook)
        self.expectations = (specs.expectations(profile) if expectations is None else expectations).get(notebook, {})
        self.claims: list[Claim] = []

    def _spec(self, claim: str) -> specs.ClaimSpec:
        if claim not in self.specs:
            raise specs.ClaimSpecError(
                f"claim {claim!r} is not declared in {paths.display_path(specs.claims_file(self.notebook))}: "
                f"add it there (known: {', '.join(self.specs)})")
        return self.specs[claim]

    def _resolve(self, value, claim):
        """A number, or the name of a notebook parameter (a bar or margin the profile sets)."""
        if value is None or isinstance(value, (int, float)):
            return value
        if value not in self.params:
            raise specs.ClaimSpecError(f"{paths.display_path(specs.claims_file(self.notebook))}, claim "
                                             f"{claim!r}: {value!r} is neither a number nor a parameter of the notebook "
                                             "(a bar computed from the data is passed as null=)")
        return float(self.params[value])

    def _words(self, text: str, claim: str, words: dict) -> str:
        try:
            return text.format_map({**self.params, **words})
        except (KeyError, IndexError, ValueError) as err:
            raise specs.ClaimSpecError(
                f"{paths.display_path(specs.claims_file(self.notebook))}, claim {claim!r}: the text {text!r} names "
                f"{err}, which is neither a parameter nor a word the notebook passes ({sorted(words)})") from err

    def record(self, claim: str, *, value, ci=None, p=None, smallest_p=None, units=None, criterion_met=None,
               outcome=None, null: float | None = None, note: str = "", not_computable: str | None = None,
               tost_ci=None, deciding: str | None = None, **words) -> Claim:
        """Record one claim from statistics the notebook computed. `outcome` only for our criteria and
        sanity checks (whether the bar was met); every other outcome follows from the statistics. `null`:
        a bar computed from the data, where the claims file says so in words. `tost_ci`: the 90% CI that
        equivalence is read on; `deciding`: the comparison that decided the p, in words with the row's numbers."""
        spec = self._spec(claim)
        null = self._resolve(spec.null_value, claim) if null is None else null
        margin = self._resolve(spec.margin, claim)
        lo, hi = ci if ci is not None else (None, None)
        nan = [name for name, x in (("value", value), ("p", p)) if x is not None and math.isnan(float(x))]
        if nan and not not_computable:
            not_computable = f"the {' and the '.join(nan)} is NaN"
        e = self.expectations.get(claim)
        c = Claim(self.notebook, claim, spec.kind, spec.family, spec.paper, self._words(spec.statement, claim, words),
                  self._words(spec.measure, claim, words), _num(value), _num(lo), _num(hi), _num(p), False,
                  e.expect if e else None, note, spec.predicts, e.registered if e else None, e.set if e else None,
                  _num(smallest_p), None, spec.alpha, spec.direction, float(null), margin,
                  self._words(spec.criterion, claim, words), criterion_met, _execution_count(),
                  f"{units[0]}/{units[1]}" if units else None, not_computable)
        c.tost_low, c.tost_high = (_num(tost_ci[0]), _num(tost_ci[1])) if tost_ci is not None else (None, None)
        c.deciding, c.gated_by, c.descriptive = deciding, spec.gated_by, spec.descriptive or None
        known = history.claim_history(self.notebook, claim)
        c.declared, c.preregistered = known["declared"], known["preregistered"]
        c.margin_post_hoc = known["margin_post_hoc"] if margin is not None else None
        if not_computable:
            c.outcome = False
        elif spec.kind in ("criterion", "sanity") and outcome is not None:
            c.outcome = bool(outcome)
            c.criterion_met = c.outcome if criterion_met is None else criterion_met
        elif outcome is not None:
            raise ValueError(f"claim {claim!r} ({spec.kind}): its outcome follows from the statistics; pass criterion_met")
        else:
            c.outcome = verdicts.effect_shown(c) and criterion_met is not False
        self.claims = [x for x in self.claims if x.claim != claim] + [c]
        self._adjust()
        self._gate()
        self.save()
        if c.as_expected == "UNEXPECTED":
            print(f"claim {claim!r} {mismatch(c)} (recorded; the notebook fails at its end)")
        return c

    def _adjust(self) -> None:
        """Holm over the notebook's confirmatory claims that have a p."""
        family = [c for c in self.claims if c.family == "confirmatory"]
        for c, adj in zip(family, verdicts.holm([c.p_value for c in family])):
            c.p_adjusted = adj

    def _gate(self) -> None:
        """Each gated claim sees the verdicts of its content-matched controls recorded so far."""
        by_id = {c.claim: c for c in self.claims}
        for c in self.claims:
            if c.gated_by:
                c.gate_verdicts = {g: by_id[g].verdict for g in c.gated_by if g in by_id}

    # one helper per design ------------------------------------------------------------------------
    def paired(self, claim: str, a, b, *, n_perm: int = 5000, seed: int = 0, note: str = "", **words) -> Claim:
        """a - b paired by unit (pandas Series aligned on their index, or arrays): t-interval of the mean
        difference and the one-sided sign-flip p in the claim's direction (exact up to 2^12 pairs)."""
        d = (pd.Series(a) - pd.Series(b)).dropna().to_numpy() if isinstance(a, pd.Series) else np.asarray(a, float) - np.asarray(b, float)
        direction = self._spec(claim).direction
        mean, lo, hi = stats.mean_ci(d)
        p = stats.sign_flip_test(direction * d, n_perm, seed)[1]
        return self.record(claim, value=mean, ci=(lo, hi), p=p, smallest_p=stats.smallest_p_paired(len(d), n_perm),
                           units=(int((direction * d > 0).sum()), len(d)), tost_ci=stats.mean_ci(d, 0.90)[1:],
                           note=f"mean {np.mean(a):.4g} vs {np.mean(b):.4g}; sign-flip over {len(d)} pairs" + _more(note), **words)

    def over_units(self, claim: str, values, *, correlation: bool = False, note: str = "", **words) -> Claim:
        """One value per independent unit (a pretraining world): the t-interval over units and the one-sided
        t against the claim's null in its direction (correlations on Fisher's z, so the interval stays
        inside [-1, 1] and a bar such as rho >= 0.8 is tested on z). Our criteria get no p: their CI is
        read against the bar."""
        spec = self._spec(claim)
        null = self._resolve(spec.null_value, claim)
        x = np.asarray(values, float)
        interval = stats.correlation_mean_ci if correlation else stats.mean_ci
        mean, lo, hi = interval(x)
        shifted = stats.fisher_z(x) - stats.fisher_z(null) if correlation else x - null
        p = stats.seed_level_test(spec.direction * shifted)[1]
        return self.record(claim, value=mean, ci=(lo, hi), p=None if spec.kind == "criterion" else p,
                           units=(int((spec.direction * shifted > 0).sum()), len(x)), tost_ci=interval(x, 0.90)[1:],
                           note=f"per unit {np.round(x, 3).tolist()}" + _more(note), **words)

    def exceeds_all(self, claim: str, a, comparisons: dict, *, note: str = "", **words) -> Claim:
        """`a` (one value per fine-tuning seed) exceeds every comparison: another condition's seeds (Welch), or
        a single model's rate with its sampling error, given as (value, standard error, n items) (Welch with
        that rate's n - 1 degrees of freedom). All must hold (an intersection-union test): the p is the
        largest, and value and CI are those of the comparison that gives it (the one that decides)."""
        a = np.asarray(a, float)
        parts = {}
        for name, b in comparisons.items():
            if isinstance(b, tuple):
                parts[name] = stats.welch_against_rate(a, *b)
            else:
                d, p = stats.seed_level_test(a, b)
                parts[name] = (d, *stats.welch_ci(a, b)[1:], p, *stats.welch_ci(a, b, 0.90)[1:])
        finite = {k: x for k, x in parts.items() if np.isfinite(x[3])}
        deciding = max(finite, key=lambda k: finite[k][3]) if len(finite) == len(parts) else next(iter(parts))
        d, lo, hi, p, lo90, hi90 = parts[deciding]
        p = p if len(finite) == len(parts) else float("nan")
        return self.record(claim, value=d, ci=(lo, hi), p=p, tost_ci=(lo90, hi90),
                           deciding=f"against {deciding.replace('_', '-')}: {d:+.3g} [{lo:.3g}, {hi:.3g}], p {p:.3g}",
                           note="; ".join(f"vs {k}: {x[0]:+.3f} [{x[1]:.3f}, {x[2]:.3f}] p {x[3]:.3g}" for k, x in parts.items())
                                + _more(note), **words)

    def correlation(self, claim: str, x, y, *, seed: int = 0, note: str = "", **words) -> Claim:
        """Spearman rho over points, its bootstrap CI and one-sided permutation p (H1: rho > 0)."""
        rho, lo, hi, p = stats.spearman_ci(x, y, seed=seed)
        return self.record(claim, value=rho, ci=(lo, hi), p=p, note=f"{len(np.asarray(x))} points" + _more(note), **words)

    def seed_level(self, claim: str, summary: dict, *, smallest_p: float | None = None, note: str = "", **words) -> Claim:
        """A claim-2 summary over units (`geometry.components.across_seeds`, the world-level test): value, CI and
        p of each unit's excess over the larger of its two null centres; the excess over each null and the units'
        raw values in the note. Equivalence (a negative control) is read on the summary's 90% interval, which
        must hold against both nulls."""
        per = summary.get("per_seed", [])
        parts = summary.get("parts") or {}
        tost = (summary["tost_low"], summary["tost_high"]) if "tost_low" in summary else None
        smallest = summary["smallest_p"] if "smallest_p" in summary else smallest_p
        smallest = None if smallest is None or not np.isfinite(smallest) else smallest
        return self.record(claim, value=summary["mean"], ci=(summary["ci_low"], summary["ci_high"]), p=summary["p_seeds"],
                           smallest_p=smallest, units=summary.get("units"), tost_ci=tost, deciding=summary.get("decided_by"),
                           note=f"raw per unit {np.round(np.asarray(per, float), 3).tolist()} (mean {summary.get('raw_mean', np.nan):.3g})"
                                + "".join(f"; excess over the {x['label']}' null {x['mean']:+.3g} [{x['ci_low']:.3g}, "
                                          f"{x['ci_high']:.3g}] p {x['p']:.3g}" for x in parts.values())
                                + (f"; unit claim-2 p {summary.get('per_seed_p')}" if len(per) > 1 else "") + _more(note),
                           **words)

    def share(self, claim: str, p_values: pd.Series, *, bar: float, note: str = "", **words) -> Claim:
        """The claim "an effect in at least `bar` of these n items (held-out domains)", tested as stated, whatever
        the dependence between the items (they share models, SAE and reference groups): Holm over the items'
        p-values controls the chance of any false call under any dependence, so the number of items Holm
        rejects is a one-sided 95% lower bound on the number with an effect. The claim's p is the k-th
        smallest Holm-adjusted p (k = the items the bar needs): below alpha exactly when at least k items
        are shown. Value: the share of items whose own p is below alpha (unadjusted, descriptive)."""
        spec = self._spec(claim)
        p = pd.Series(p_values, dtype=float)
        n = len(p)
        need = int(np.ceil(bar * n - 1e-9))
        adjusted = pd.Series(verdicts.holm(p.tolist()), index=p.index, dtype=float)
        raw_hits, shown = int((p < spec.alpha).sum()), int((adjusted < spec.alpha).sum())
        ranked = np.sort(adjusted.to_numpy())
        p_claim = float(ranked[need - 1]) if 0 < need <= n and np.isfinite(ranked[need - 1]) else float("nan")
        names = lambda part: ", ".join(map(str, part.index)) or "none"  # noqa: E731
        return self.record(claim, value=raw_hits / n, ci=(shown / n, 1.0) if not spec.descriptive else None,
                           p=None if spec.descriptive else p_claim, null=(need - 1) / n, units=(raw_hits, n),
                           not_computable="an item's p is NaN" if p.isna().any() else None,
                           deciding=f"{shown} of {n} shown after Holm (the bar needs {need}), p {p_claim:.3g}",
                           note=f"{raw_hits} of {n} with p < {spec.alpha:g} ({names(p[p < spec.alpha])}); {shown} after Holm "
                                f"({names(adjusted[adjusted < spec.alpha])}); the bar needs {need}" + _more(note), **words)

    def noninferiority(self, claim: str, differences, margin: float, *, note: str = "", **words) -> Claim:
        """A harm difference (lower is better) lies below `margin`: the one-sided t-test of mean < margin
        (p < alpha exactly when the one-sided 95% upper bound is below the margin)."""
        d = np.asarray(differences, float)
        _, bound = stats.noninferiority(d, margin)
        mean, lo, hi = stats.mean_ci(d)
        p = stats.seed_level_test(margin - d)[1]
        return self.record(claim, value=mean, ci=(lo, hi), p=p, null=margin,
                           note=f"margin {margin:.3g}, one-sided upper bound {bound:.3g}" + _more(note), **words)

    # reading the record ---------------------------------------------------------------------------
    def unexpected(self) -> list[Claim]:
        return [c for c in self.claims if c.as_expected == "UNEXPECTED"]

    def finish(self) -> None:
        """Fail, naming every claim whose outcome differs from the profile's expectation."""
        wrong = self.unexpected()
        if wrong:
            raise ClaimMismatch(f"{self.notebook}: {len(wrong)} claim(s) UNEXPECTED: " + "; ".join(
                f"{c.claim!r} {mismatch(c)}" for c in wrong) + ". If a result is real, change the expectation in "
                f"{paths.display_path(specs.expectations_file(self.profile))} with today's date (registered "
                "after measuring); if it flips between CPUs, make it 'record: differs between CPUs'.")

    def path(self) -> Path:
        return paths.figures_dir(self.profile) / "claims" / f"{self.notebook}.json"

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(c) | {"verdict": c.verdict, "as_expected": c.as_expected} for c in self.claims]

    def save(self) -> Path:
        return write_text_atomic(self.path(), json.dumps(self.rows(), indent=1))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows(), columns=COLUMNS)

    def summary(self):
        """The notebook's closing summary, written from its claims: by kind, discriminating rows first."""
        from IPython.display import Markdown
        return Markdown(summary_markdown(self.rows()))


def _more(note: str) -> str:
    return f"; {note}" if note else ""


def summary_markdown(rows: list[dict], heading: str = "### What the claims say") -> str:
    """Markdown, by kind in `verdicts.ORDER`: each claim's statement, verdict and measurement."""
    lines = [heading, ""]
    for kind in verdicts.ORDER:
        part = [r for r in rows if r.get("kind") == kind]
        if not part:
            continue
        lines.append(f"**{verdicts.KINDS[kind].capitalize()}**" + (" — not counted as evidence" if kind == "sanity" else ""))
        lines += [f"- {r['statement']}: **{r['verdict']}** ({measured(r)}"
                  + (f"; {r['units']} units in its direction" if r.get("units") else "")
                  + ("" if r.get("family") != "confirmatory" else "; confirmatory") + ")" for r in part]
        lines.append("")
    return "\n".join(lines)
