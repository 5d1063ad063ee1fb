"""The two files behind every claim: what it says (the notebook's claims file) and what a profile expects.

`notebooks/claims/<notebook>.yaml` declares each claim, read on its own (a pre-registration only for the claims
git shows declared before their first result: `claims/history.py`): per claim its statement,
the paper's sentence it tests (or "beyond the paper"), its kind (`claims/verdicts.py`), its family
(confirmatory: the paper's claims as pre-registered and the bars they rest on, Holm-adjusted within the
notebook; or exploratory),
its design, direction, `null_value` (the bar, for our criteria), the equivalence margin where absence is
predicted, and alpha. Statements may name the notebook's parameters in braces (`{min_share_persona:.0%}`).

`params/<profile>/expectations.yaml` holds only the outcomes a profile asserts: per notebook and claim,
`expect` (true, false, or "record: <why>": recorded, not asserted), `set` (the date it was set) and
`registered` (before or after the claim was first measured), and `why` where prediction and measurement
differ. A profile without the file asserts nothing (the `test` profile).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from pathlib import Path

import yaml

from emgeo_utils.core import paths
from emgeo_utils.claims.verdicts import FAMILIES, KINDS


class ClaimSpecError(ValueError):
    """A claims or expectations file is malformed: the message names the file, line and field."""


class _LineLoader(yaml.SafeLoader):
    """Keeps each mapping's line so an error can point at it."""


def _mapping_with_line(loader, node):
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _load(path: Path) -> dict:
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader) or {}
    except yaml.YAMLError as err:
        raise ClaimSpecError(f"{paths.display_path(path)}: not valid YAML: {err}") from err


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    id: str
    kind: str
    paper: str
    statement: str
    measure: str
    design: str
    family: str = "exploratory"
    direction: int = 1
    null_value: float | str = 0.0  # a number or the name of a notebook parameter (for our criteria: the bar)
    margin: float | str | None = None
    criterion: str = ""          # what the claim needs beyond significance, in words (its bar)
    alpha: float = 0.05
    margin_rule: str = ""        # how the margin was fixed (a fraction of what, measured when): required with a margin
    gated_by: tuple[str, ...] = ()  # discriminating controls a paper claim needs to count as support
    descriptive: str = ""        # why this design cannot decide the claim (said before it runs): read, not tested
    line: int = 0

    @property
    def predicts(self) -> str | None:
        return {"paper": "holds", "discriminating": "holds", "negative_control": "does not hold"}.get(self.kind)


REQUIRED = ("kind", "paper", "statement", "measure", "design")


def claims_file(notebook: str) -> Path:
    return paths.notebooks_dir() / "claims" / f"{notebook}.yaml"


@functools.lru_cache(maxsize=None)
def specs(notebook: str) -> dict[str, ClaimSpec]:
    """The notebook's claims file, checked: every field known, every kind and family valid."""
    path = claims_file(notebook)
    if not path.is_file():
        raise ClaimSpecError(f"{paths.display_path(path)} is missing: every notebook that records claims declares them there")
    where = paths.display_path(path)
    data = _load(path)
    out = {}
    fields = {f.name for f in dataclasses.fields(ClaimSpec)}
    for entry in data.get("claims", []):
        line = entry.pop("__line__", 0)
        name = entry.get("id", "?")
        bad = [k for k in entry if k not in fields]
        missing = [k for k in ("id",) + REQUIRED if k not in entry]
        if bad or missing:
            raise ClaimSpecError(f"{where}, line {line}, claim {name!r}: " + "; ".join(
                ([f"unknown field(s) {bad} (known: {sorted(fields - {'line'})})"] if bad else [])
                + ([f"missing field(s) {missing}"] if missing else [])))
        if isinstance(entry.get("gated_by"), str):
            entry["gated_by"] = (entry["gated_by"],)
        spec = ClaimSpec(**{k: tuple(v) if k == "gated_by" else v for k, v in entry.items()}, line=line)
        problems = []
        if spec.kind not in KINDS:
            problems.append(f"kind {spec.kind!r} is not one of {list(KINDS)}")
        if spec.family not in FAMILIES:
            problems.append(f"family {spec.family!r} is not one of {list(FAMILIES)}")
        if spec.family == "confirmatory" and spec.kind not in ("paper", "criterion"):
            problems.append("only the paper's claims and the bars they rest on (kind: paper or criterion) are confirmatory")
        if spec.direction not in (1, -1):
            problems.append(f"direction must be 1 or -1, got {spec.direction!r}")
        if spec.kind == "negative_control" and spec.margin is None and not spec.descriptive:
            problems.append("a negative control needs an equivalence margin (margin:), fixed before it is read, "
                            "or a reason its design cannot decide it (descriptive:)")
        if spec.margin is not None and not spec.margin_rule:
            problems.append("a margin needs the rule that fixed it (margin_rule:, e.g. half of its persona-world "
                            "twin's effect measured at an earlier commit; never more than that effect)")
        if spec.gated_by and spec.kind != "paper":
            problems.append("only a paper claim is gated by a content-matched control (gated_by:)")
        if spec.id in out:
            problems.append("declared twice")
        if problems:
            raise ClaimSpecError(f"{where}, line {line}, claim {spec.id!r}: " + "; ".join(problems))
        out[spec.id] = spec
    for spec in out.values():
        unknown = [g for g in spec.gated_by if g not in out or out[g].kind != "discriminating"]
        if unknown:
            raise ClaimSpecError(f"{where}, line {spec.line}, claim {spec.id!r}: gated_by names {unknown}, which are not "
                                 "discriminating claims of this file")
    return out


@dataclasses.dataclass(frozen=True)
class Expectation:
    expect: bool | str | None
    set: str | None = None
    registered: str | None = None
    why: str = ""


def expectations_file(profile: str) -> Path:
    return paths.params_dir() / profile / "expectations.yaml"


def expectations(profile: str, path: Path | None = None) -> dict[str, dict[str, Expectation]]:
    """A profile's expectations, notebook -> claim -> Expectation (empty when the profile has none)."""
    path = path or expectations_file(profile)
    if not path.is_file():
        return {}
    where = paths.display_path(path)
    out: dict[str, dict[str, Expectation]] = {}
    for notebook, claims in _load(path).items():
        if notebook == "__line__":
            continue
        out[notebook] = {}
        for claim, entry in claims.items():
            if claim == "__line__":
                continue
            line = entry.pop("__line__", 0) if isinstance(entry, dict) else claims.get("__line__", 0)
            if not isinstance(entry, dict) or "expect" not in entry:
                raise ClaimSpecError(f"{where}, line {line}, {notebook}.{claim}: write "
                                     "{expect: true|false|'record: <why>', set: YYYY-MM-DD, registered: before|after}")
            e = Expectation(**{k: entry[k] for k in ("expect", "set", "registered", "why") if k in entry})
            problems = []
            if not (isinstance(e.expect, bool) or (isinstance(e.expect, str) and e.expect.startswith("record:"))):
                problems.append(f"expect must be true, false or 'record: <why>', got {e.expect!r}")
            if e.registered not in ("before", "after"):
                problems.append(f"registered must be before or after (measuring), got {e.registered!r}")
            if not isinstance(e.set, (str, datetime.date)):
                problems.append("set must be the date the expectation was set (YYYY-MM-DD)")
            unknown = set(entry) - {"expect", "set", "registered", "why"}
            if unknown:
                problems.append(f"unknown field(s) {sorted(unknown)}")
            if problems:
                raise ClaimSpecError(f"{where}, line {line}, {notebook}.{claim}: " + "; ".join(problems))
            out[notebook][claim] = dataclasses.replace(e, set=str(e.set))
    return out
