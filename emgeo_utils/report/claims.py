"""The claims record: what each notebook claims, what it measured, and whether it held.

A notebook states each claim once: the paper's statement (and figure), our measured value
with its CI, the test behind the verdict, and the outcome the profile expects. `check`
asserts the outcome matches the expectation, so a flipped result fails loudly; an
expectation of `None` (the `test` profile) records without checking. `make figures`
gathers every notebook's record into `claims.md` and `claims.csv`, which a reviewer reads
first.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd

from emgeo_utils.core import paths
from emgeo_utils.core.files import write_text_atomic

COLUMNS = ["notebook", "claim", "paper", "statement", "measure", "value", "ci_low", "ci_high",
           "p_value", "outcome", "expected", "verdict", "note"]


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
    expected: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        held = "holds" if self.outcome else "does not hold"
        if self.expected is None:
            return f"{held} (not checked)"
        return f"{held} (as expected)" if self.outcome == self.expected else f"{held} (UNEXPECTED)"


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
              p_value: float | None = None, note: str = "") -> None:
        """Record a claim and assert its outcome equals the profile's expectation."""
        if expected is not None and not isinstance(expected, bool):
            raise TypeError(f"expectation for {claim!r} must be true, false or null, got {expected!r}")
        ci_low, ci_high = (ci if ci is not None else (None, None))
        entry = Claim(self.notebook, claim, paper, statement, measure, _num(value), _num(ci_low),
                      _num(ci_high), _num(p_value), bool(outcome), expected, note)
        self.claims = [c for c in self.claims if c.claim != claim] + [entry]
        self.save()
        if expected is not None and bool(outcome) != expected:
            raise ClaimMismatch(
                f"{self.notebook}: claim {claim!r} {entry.verdict}: measured {measure} = {value} "
                f"(CI {ci_low}, {ci_high}; p = {p_value}), expected outcome {expected}. If this "
                "result is real, change the expectation in the profile and the notebook's prose.")

    def path(self) -> Path:
        return paths.figures_dir(self.profile) / "claims" / f"{self.notebook}.json"

    def save(self) -> Path:
        rows = [dataclasses.asdict(c) | {"verdict": c.verdict} for c in self.claims]
        return write_text_atomic(self.path(), json.dumps(rows, indent=1))

    def table(self) -> pd.DataFrame:
        return to_frame([dataclasses.asdict(c) | {"verdict": c.verdict} for c in self.claims])


def to_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


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
    lines = [f"# Claims table (profile `{profile}`)", "",
             "Every row was computed by the notebook named in it; `expected` is the outcome the "
             "profile asserts (empty = not checked).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    (folder / "claims.md").write_text("\n".join(lines) + "\n")
    return frame
