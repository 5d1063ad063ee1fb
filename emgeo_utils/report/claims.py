"""The claims record: what each notebook claims, what it measured, and what that says of the paper.

A notebook states each claim once: the paper's statement, what the paper predicts for it
(`predicts`: "holds", "does not hold", or None for a claim beyond the paper), our measured
value with its CI and p, the smallest p the design can reach, and the outcome the profile
expects, with whether that expectation was set before or after measuring (`registered`).
`check` records whether the outcome matches the expectation; `finish` (a notebook's last cell) fails
the notebook naming every flipped result, so a flip fails loudly but only after the whole notebook
has run and every claim is recorded. An expectation of `None` (the `test` profile) records without
checking.

The verdict reads the measurement against the paper: *supports the paper*, *contradicts the
paper*, or *inconclusive* (a design whose smallest achievable p is not below alpha, or a
failed prediction whose CI still spans the null value). `make figures` gathers every
notebook's record into `claims.md` and `claims.csv`, which a reviewer reads first.
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

COLUMNS = ["notebook", "claim", "paper", "predicts", "statement", "measure", "value", "ci_low", "ci_high",
           "p_value", "smallest_p", "units", "outcome", "expected", "registered", "verdict", "as_expected", "note"]
PREDICTIONS = ("holds", "does not hold", None)
REGISTERED = ("before", "after", None)


class ClaimMismatch(AssertionError):
    """A measured outcome differs from the outcome the profile expects."""


@dataclasses.dataclass
class Claim:
    notebook: str
    claim: str
    paper: str
    statement: str
    measure: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    outcome: bool
    expected: bool | str | None  # "record: <why>": recorded, not asserted (e.g. "record: differs between CPUs")
    note: str = ""
    predicts: str | None = None
    registered: str | None = None
    smallest_p: float | None = None
    alpha: float = 0.05
    direction: int = 1       # +1: the paper's prediction is a value above `null_value`; -1: below
    null_value: float = 0.0
    cell: int | None = None  # the execution count of the notebook cell that checked it (the report links it)
    # "k/n": in how many independent units (seeds, models) the effect points the way the claim states
    # (not necessarily the paper's prediction: a control claim counts the units where its effect is there)
    units: str | None = None
    not_computable: str | None = None  # why the statistic or its p could not be computed (NaN is never evidence)

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
        if self.not_computable:
            return f"not computable ({self.not_computable})"
        if self.smallest_p is not None and self.smallest_p >= self.alpha:
            return f"inconclusive (underpowered: smallest achievable p = {self.smallest_p:.3g})"
        if self.predicts is None:
            return f"beyond the paper: {self.held}"
        if self.outcome == (self.predicts == "holds"):
            return "supports the paper"
        if self.predicts == "does not hold":
            return "contradicts the paper"  # an effect the paper's account says should not be there
        low, high = self.ci_low, self.ci_high
        if low is not None and high is not None:
            opposite = high < self.null_value if self.direction > 0 else low > self.null_value
            predicted_side = low > self.null_value if self.direction > 0 else high < self.null_value
            if opposite:
                return "contradicts the paper"
            if predicted_side:  # e.g. a rate well above zero that misses the claim's own bar
                return "inconclusive (in the predicted direction, but the claim's criterion is not met)"
            return "inconclusive (CI spans the null)"
        if self.value is not None and (self.value - self.null_value) * self.direction < 0:
            return "contradicts the paper"  # no CI, but the value lies on the other side
        return "inconclusive (no CI)"


def mismatch(c: Claim) -> str:
    """`held (UNEXPECTED): measured x = v [lo, hi], p = p; expected holds`: one flipped claim."""
    ci = f" [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]" if c.ci_low is not None and c.ci_high is not None else ""
    p = f", p = {_fmt(c.p_value)}" if c.p_value is not None else ""
    if c.not_computable:
        return f"not computable (UNEXPECTED): {c.not_computable}; expected {'holds' if c.expected else 'does not hold'}"
    return (f"{c.held} (UNEXPECTED): measured {c.measure} = {_fmt(c.value)}{ci}{p}; expected "
            f"{'holds' if c.expected else 'does not hold'}")


def _execution_count() -> int | None:
    """The running cell's number in a notebook kernel (IPython counts up after the cell), else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "execution_count", None) if shell is not None else None


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


class ClaimsRecord:
    """Collects one notebook's claims and writes them to `<figures>/claims/<notebook>.json`."""

    def __init__(self, notebook: str, profile: str = "default"):
        self.notebook = notebook
        self.profile = profile
        self.claims: list[Claim] = []

    def check(self, claim: str, *, statement: str, measure: str, value: float | None,
              outcome: bool, expected: bool | None, paper: str = "", ci: tuple | None = None,
              p_value: float | None = None, note: str = "", predicts: str | None = None,
              registered: str | None = None, smallest_p: float | None = None, alpha: float = 0.05,
              direction: int = 1, null_value: float = 0.0, units: tuple[int, int] | None = None,
              not_computable: str | None = None) -> None:
        """Record a claim and whether its outcome equals the profile's expectation (`finish` fails on a flip).

        `units`: (k, n), the effect points the way the claim states in k of n independent units. A value or a
        p-value given as NaN makes the claim *not computable* (the outcome does not hold); say why in
        `not_computable`, or the record says the statistic was NaN."""
        if expected is not None and not isinstance(expected, bool) and not (
                isinstance(expected, str) and expected.startswith("record:")):
            raise TypeError(f"expectation for {claim!r} must be true, false, null or 'record: <why>' (recorded, not "
                            f"asserted, e.g. 'record: differs between CPUs'), got {expected!r}")
        if predicts not in PREDICTIONS:
            raise ValueError(f"predicts for {claim!r} must be one of {PREDICTIONS}, got {predicts!r}")
        if registered not in REGISTERED:
            raise ValueError(f"registered for {claim!r} must be one of {REGISTERED}, got {registered!r}")
        ci_low, ci_high = (ci if ci is not None else (None, None))
        nan = [name for name, x in (("value", value), ("p", p_value)) if x is not None and math.isnan(float(x))]
        if nan and not not_computable:
            not_computable = f"the {' and the '.join(nan)} is NaN"
        if not_computable:
            outcome = False
        entry = Claim(self.notebook, claim, paper, statement, measure, _num(value), _num(ci_low),
                      _num(ci_high), _num(p_value), bool(outcome), expected, note, predicts, registered,
                      _num(smallest_p), alpha, direction, null_value, _execution_count(),
                      f"{units[0]}/{units[1]}" if units else None, not_computable)
        self.claims = [c for c in self.claims if c.claim != claim] + [entry]
        self.save()
        if entry.as_expected == "UNEXPECTED":
            print(f"claim {claim!r} {mismatch(entry)} (recorded; the notebook fails at its end)")

    def over_units(self, claim: str, values, *, correlation: bool = False, threshold: float = 0.0,
                   alpha: float = 0.05, note: str = "", **kwargs) -> None:
        """A claim whose unit of replication is one value per independent unit (a pretraining world):
        the one-sided t over units that the mean exceeds `threshold` (correlations averaged on Fisher's
        z, so the interval stays inside [-1, 1]); the outcome holds when the mean does and p < alpha."""
        v = np.asarray(values, float) - threshold
        mean, lo, hi = stats.correlation_mean_ci(v) if correlation else stats.mean_ci(v)
        p = (stats.correlation_mean_test(v) if correlation else stats.seed_level_test(v))[1]
        self.check(claim, value=mean + threshold, ci=(lo + threshold, hi + threshold), p_value=p,
                   outcome=bool(mean > 0 and p < alpha), alpha=alpha, null_value=threshold,
                   units=(int((v > 0).sum()), len(v)),
                   note=f"per unit {np.round(v + threshold, 3).tolist()}" + (f"; {note}" if note else ""), **kwargs)

    def unexpected(self) -> list[Claim]:
        return [c for c in self.claims if c.as_expected == "UNEXPECTED"]

    def finish(self) -> None:
        """Fail, naming every claim whose outcome differs from the profile's expectation."""
        wrong = self.unexpected()
        if wrong:
            raise ClaimMismatch(f"{self.notebook}: {len(wrong)} claim(s) UNEXPECTED: " + "; ".join(
                f"{c.claim!r} {mismatch(c)}" for c in wrong) + ". If a result is real, change the expectation in "
                "the profile (registered 'after' measuring) and the notebook's prose; if it flips between CPUs, "
                "make it 'record: differs between CPUs'.")

    def path(self) -> Path:
        return paths.figures_dir(self.profile) / "claims" / f"{self.notebook}.json"

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(c) | {"verdict": c.verdict, "as_expected": c.as_expected} for c in self.claims]

    def save(self) -> Path:
        return write_text_atomic(self.path(), json.dumps(self.rows(), indent=1))

    def table(self) -> pd.DataFrame:
        return to_frame(self.rows())


def to_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


MD_COLUMNS = ["notebook", "claim", "statement", "paper predicts", "our expectation", "measured", "p (smallest)",
              "units in the claim's direction", "verdict", "note"]


def _md_row(r: dict) -> list[str]:
    e = r.get("expected")
    expected = e if isinstance(e, str) else {True: "holds", False: "does not hold", None: "not checked"}[e]
    if r.get("registered"):
        expected += f" (set {r['registered']} measuring)"
    measured = f"{r.get('measure', '')} = {_fmt(r.get('value'))}"
    if r.get("ci_low") is not None and r.get("ci_high") is not None:
        measured += f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
    p = _fmt(r.get("p_value")) + (f" ({_fmt(r['smallest_p'])})" if r.get("smallest_p") is not None else "")
    verdict = r.get("verdict", "") + ("" if r.get("as_expected") != "UNEXPECTED" else "; UNEXPECTED")
    return [_fmt(r.get("notebook")), _fmt(r.get("claim")), _fmt(r.get("statement")), _fmt(r.get("predicts") or "not in the paper"),
            _fmt(expected), _fmt(measured), p, _fmt(r.get("units")), _fmt(verdict), _fmt(r.get("note"))]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def gather(profile: str = "default") -> pd.DataFrame:
    """Merge every notebook's claims into `claims.csv` and `claims.md` in the profile's figures."""
    folder = paths.figures_dir(profile)
    rows = []
    for file in sorted((folder / "claims").glob("*.json")):
        rows += json.loads(file.read_text())
    frame = to_frame(rows)
    frame.to_csv(folder / "claims.csv", index=False)
    verdicts = frame.verdict.fillna("").str.split(" [(]|:", regex=True).str[0].value_counts()
    lines = [f"# Claims table (profile `{profile}`)", "",
             "Every row was computed by the notebook named in it. *Paper predicts*: what the paper's account "
             "says the outcome should be. *Our expectation*: the outcome the profile asserts (a flip fails the run), "
             "and whether it was set before or after measuring. *Verdict*: the measurement read against the paper — "
             "supports, contradicts, or inconclusive (the design cannot reach p < alpha, the CI spans the null, or the "
             "effect points the predicted way but misses the claim's own criterion). "
             "*p (smallest)*: the p-value and the smallest the design can produce. *Units in the claim's direction*: in "
             "how many independent units (pretraining seeds, models) the effect points the way the statement says. "
             "*Not computable*: the statistic or its p was NaN (the reason is given); NaN is never evidence.", "",
             "Verdicts: " + ", ".join(f"{n} {v}" for v, n in verdicts.items()), "",
             "| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    lines += ["| " + " | ".join(_md_row(r)) + " |" for r in rows]
    (folder / "claims.md").write_text("\n".join(lines) + "\n")
    return frame


def by_model(profiles: list[str]) -> pd.DataFrame:
    """One row per claim, a column per profile's model (the paper's prediction first), from each
    profile's `claims.csv`; a claim a profile did not run says so. Written beside the first
    profile's table as `claims_by_model.md` / `.csv`."""
    frames = {}
    for profile in profiles:
        file = paths.figures_dir(profile) / "claims.csv"
        frames[profile] = pd.read_csv(file) if file.is_file() else to_frame([])
    label = {p: ("organism" if p in ("default", "large", "test") else p) for p in profiles}
    keys = list(dict.fromkeys((n, c) for f in frames.values() for n, c in zip(f.notebook, f.claim)))
    rows = []
    for notebook, claim in keys:
        row = {"notebook": notebook, "claim": claim, "paper predicts": "", "statement": ""}
        for profile, f in frames.items():
            hit = f[(f.notebook == notebook) & (f.claim == claim)]
            if not len(hit):
                row[label[profile]] = "not run in this profile"
                continue
            r = hit.iloc[0]
            row["statement"] = row["statement"] or r.statement
            row["paper predicts"] = row["paper predicts"] or (r.predicts if isinstance(r.predicts, str) else "not in the paper")
            value = f"{_fmt(_num(r.value))}" + (f" [{_fmt(_num(r.ci_low))}, {_fmt(_num(r.ci_high))}]"
                                               if pd.notna(r.ci_low) and pd.notna(r.ci_high) else "")
            p = f", p {_fmt(_num(r.p_value))}" if pd.notna(r.p_value) else ""
            row[label[profile]] = f"{r.verdict}: {value}{p}"
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["notebook", "claim", "statement", "paper predicts"] + [label[p] for p in profiles])
    folder = paths.figures_dir(profiles[0])
    frame.to_csv(folder / "claims_by_model.csv", index=False)
    cols = ["notebook", "claim", "paper predicts"] + [label[p] for p in profiles]
    lines = ["# Claims by model", "", "One row per claim; each model's verdict, value [CI] and p, from its profile's "
             "claims table (`" + "`, `".join(str(paths.display_path(paths.figures_dir(p) / "claims.md")) for p in profiles)
             + "`, where the statements and notes are). 'not run in this profile' means the notebook or the claim was not run "
             "for that model, never a copied number.", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    (folder / "claims_by_model.md").write_text("\n".join(lines) + "\n")
    return frame


def failures(profiles: list[str]) -> list[str]:
    """What went wrong in the profiles' last runs, a line each: notebooks that failed (or never ran)
    and claims whose outcome differs from the profile's expectation, measured against expected."""
    lines = []
    for profile in profiles:
        folder = paths.figures_dir(profile)
        times = folder / "notebook_times.csv"
        if not times.is_file():
            lines.append(f"[{profile}] no run found ({paths.display_path(times)} is missing)")
            continue
        frame = pd.read_csv(times)
        lines += [f"[{profile}] {nb} failed (its executed copy shows where)" for nb in frame.notebook[frame.status != "ok"]]
        for file in sorted((folder / "claims").glob("*.json")):
            for row in json.loads(file.read_text()):
                if row.get("as_expected") == "UNEXPECTED":
                    c = Claim(**{f.name: row[f.name] for f in dataclasses.fields(Claim) if f.name in row})
                    lines.append(f"[{profile}] {c.notebook}: claim {c.claim!r} {mismatch(c)}")
    return lines


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Merge the claims tables of several profiles, a column per model; "
                                                 "or list what failed in their last runs.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--by-model", nargs="+", metavar="PROFILE")
    group.add_argument("--failures", nargs="+", metavar="PROFILE", help="print what failed; exit 1 if anything did")
    args = parser.parse_args()
    if args.failures:
        found = failures(args.failures)
        print("\n".join(["make figures FAILED:"] + found) if found else f"every notebook ran and every claim came out "
              f"as expected ({', '.join(args.failures)})")
        sys.exit(1 if found else 0)
    table = by_model(args.by_model)
    print(f"{len(table)} claims x {len(table.columns) - 4} models -> "
          f"{paths.display_path(paths.figures_dir(args.by_model[0]) / 'claims_by_model.md')}")
