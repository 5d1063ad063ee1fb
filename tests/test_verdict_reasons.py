"""Every committed verdict's words are literally true of its row: a reason's numbers are the row's, "CI spans the
null" only where it does, equivalence only inside the margin, support only where the test says so."""

import math
import re

import pandas as pd
import pytest

from emgeo_utils.claims import verdicts
from emgeo_utils.core import paths

SNAPSHOTS = sorted((paths.PROJECT_ROOT / "results").glob("**/claims.csv"))
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"


def rows():
    for f in SNAPSHOTS:
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
        if "null_value" not in frame.columns:  # a snapshot computed before reasons carried their numbers
            continue
        for r in frame.to_dict("records"):
            yield pytest.param(r, id=f"{f.relative_to(paths.PROJECT_ROOT).parent}:{r['notebook'][:2]}:{r['claim']}")


def num(x: str) -> float | None:
    return float(x) if x not in ("", None) else None


def g(x: float) -> str:
    return f"{x:.3g}"


def check_reason(r: dict) -> None:
    """Raise AssertionError naming what in the verdict contradicts the row's numbers."""
    v = r["verdict"]
    v = v[len(verdicts.NOT_CONFIRMED):] if v.startswith(verdicts.NOT_CONFIRMED) else v
    value, lo, hi, p = (num(r[k]) for k in ("value", "ci_low", "ci_high", "p_value"))
    null, margin, t_lo, t_hi = (num(r[k]) for k in ("null_value", "margin", "tost_low", "tost_high"))
    alpha = 0.05
    p_read = num(r["p_adjusted"]) if r["p_adjusted"] else p
    # numbers a reason names are the row's: "[lo, hi]" is its 95% CI (or, for equivalence, its 90% CI), "p x" its p
    for a, b in re.findall(rf"\[({NUMBER}), ({NUMBER})\]", v):
        assert (a, b) in {(g(lo), g(hi)) if lo is not None else None, (g(t_lo), g(t_hi)) if t_lo is not None else None}, (a, b)
    for x in re.findall(rf"(?<![<>]) p ({NUMBER})", v):
        assert x in {g(p) if p is not None else None, g(num(r["p_adjusted"])) if r["p_adjusted"] else None}, x
    if "CI spans the null" in v:
        assert lo is not None and lo <= null <= hi, (lo, null, hi)
    if "the CI lies beyond the null" in v:
        assert lo is not None and not lo <= null <= hi and p >= alpha
    if v.startswith(("supports the paper", "effect shown", "effect present")) and "absent" not in v:
        shown = p_read < alpha if p_read is not None else lo is not None and not lo <= null <= hi
        assert shown, (p_read, lo, hi)
        if "still reaches the null" in v:
            assert lo <= null <= hi
    if ("equivalence within" in v or "equivalence post hoc" in v) and not v.startswith("effect present"):
        a, b = (t_lo, t_hi) if "90% CI" in v else (lo, hi)
        assert null - margin <= a and b <= null + margin, (a, b, null, margin)
    if v.startswith("inconclusive (equivalence not shown"):
        a, b = (t_lo, t_hi) if "90% CI" in v else (lo, hi)
        assert not (null - margin <= a and b <= null + margin)
    if "significant the other way" in v or v.startswith("opposite effect"):
        assert lo is not None and not lo <= null <= hi, (lo, null, hi)  # the CI lies beyond the null
    if v.startswith(("supports", "contradicts", "effect", "opposite", "inconclusive")):
        assert not (value is not None and math.isnan(value))


@pytest.mark.skipif(not SNAPSHOTS, reason="no committed snapshot")
@pytest.mark.parametrize("row", list(rows()))
def test_every_committed_reason_is_true_of_its_numbers(row):
    check_reason(row)


def test_the_check_catches_a_false_reason():
    """The reviewer's example: "CI spans the null" beside a CI that does not."""
    row = {"verdict": "inconclusive (CI spans the null)", "value": "0.0915", "ci_low": "0.0176", "ci_high": "0.165",
           "p_value": "0.245", "p_adjusted": "", "null_value": "0", "margin": "", "tost_low": "", "tost_high": "",
           "predicts": "holds"}
    with pytest.raises(AssertionError):
        check_reason(row)
    row["verdict"] = "inconclusive (CI spans the null: +0.0915 [0.0176, 0.2], p 0.245)"
    with pytest.raises(AssertionError):
        check_reason(row)
    row |= {"ci_low": "-0.01", "verdict": "inconclusive (CI spans the null: +0.0915 [-0.01, 0.165], p 0.245)"}
    check_reason(row)


def test_every_combination_of_ci_p_and_criterion_reads_true(tmp_path, monkeypatch):
    """Every kind x CI position x p x criterion x margin: the verdict's words are true of the numbers it was given."""
    import itertools

    from emgeo_utils.claims import history
    from emgeo_utils.claims import record as claims
    from emgeo_utils.claims import specs as claim_specs

    spec = """claims:
  - {id: paper, kind: paper, paper: p, statement: s, measure: m, design: d, margin: 0.05, margin_rule: r}
  - {id: finding, kind: finding, paper: p, statement: s, measure: m, design: d}
  - {id: absent, kind: negative_control, paper: p, statement: s, measure: m, design: d, margin: 0.05, margin_rule: r}
  - {id: down, kind: paper, paper: p, statement: s, measure: m, design: d, direction: -1}
"""
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path / "figures"))
    (tmp_path / "99_test.yaml").write_text(spec)
    monkeypatch.setattr(claim_specs, "claims_file", lambda nb: tmp_path / f"{nb}.yaml")
    monkeypatch.setattr(history, "claim_history", lambda nb, c: dict.fromkeys(history.FIELDS))
    claim_specs.specs.cache_clear()
    rec = claims.ClaimsRecord("99_test", "default", {}, expectations={})
    cis = [None, (-0.3, -0.1), (-0.2, 0.2), (-0.01, 0.02), (0.1, 0.3)]
    ps = [None, 0.001, 0.04, 0.3, 0.999]
    checked = 0
    for claim, ci, p, met in itertools.product(["paper", "finding", "absent", "down"], cis, ps, [None, False]):
        value = 0.0 if ci is None else sum(ci) / 2
        c = rec.record(claim, value=value, ci=ci, p=p, criterion_met=met)
        row = {k: ("" if v is None else str(v)) for k, v in c.__dict__.items()} | {"verdict": c.verdict}
        check_reason(row)
        checked += 1
    claim_specs.specs.cache_clear()
    assert checked == 4 * 5 * 5 * 2
