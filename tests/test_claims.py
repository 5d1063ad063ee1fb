"""The claims record and its verdicts: every kind's verdicts reachable, the rule applied once, NaN never evidence."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emgeo_utils.core import paths, stats
from emgeo_utils.claims import record as claims
from emgeo_utils.claims import specs as claim_specs
from emgeo_utils.claims import verdicts
from emgeo_utils.report import claims_table

SPEC = """claims:
  - {id: effect, kind: paper, family: confirmatory, paper: p, statement: "effect at {level}", measure: m, design: d}
  - {id: effect_b, kind: paper, family: confirmatory, paper: p, statement: s, measure: m, design: d}
  - {id: absent, kind: negative_control, paper: p, statement: s, measure: m, design: d, margin: 0.1, margin_rule: r}
  - {id: absent_late, kind: negative_control, paper: p, statement: s, measure: m, design: d, margin: 0.1, margin_rule: r}
  - {id: split, kind: discriminating, paper: p, statement: s, measure: m, design: d, margin: 0.05, margin_rule: r}
  - {id: extra, kind: finding, paper: p, statement: s, measure: m, design: d}
  - {id: bar, kind: criterion, paper: p, statement: s, measure: m, design: d, null_value: level, criterion: ">= {level}"}
  - {id: algebra, kind: sanity, paper: p, statement: s, measure: m, design: d}
  - {id: down, kind: paper, paper: p, statement: s, measure: m, design: d, direction: -1}
  - {id: gated, kind: paper, paper: p, statement: s, measure: m, design: d, gated_by: split}
  - {id: count, kind: negative_control, paper: p, statement: s, measure: m, design: d, descriptive: "too few units"}
"""


@pytest.fixture
def record(tmp_path, monkeypatch):
    """A record for notebook `99_test` with the claims file above and expectations given per test; the claims
    history says `absent_late`'s margin was set after its first result (post hoc), every other one before."""
    from emgeo_utils.claims import history

    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path / "figures"))
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "99_test.yaml").write_text(SPEC)
    monkeypatch.setattr(claim_specs, "claims_file", lambda nb: tmp_path / "claims" / f"{nb}.yaml")
    monkeypatch.setattr(history, "claim_history", lambda nb, claim: dict.fromkeys(history.FIELDS) | {
        "declared": "2026-12-01", "preregistered": claim != "absent_late", "margin_post_hoc": claim == "absent_late"})
    claim_specs.specs.cache_clear()

    def make(expect: dict | None = None, params: dict | None = None):
        e = {"99_test": {k: claim_specs.Expectation(v, "2026-12-05", "before") for k, v in (expect or {}).items()}}
        return claims.ClaimsRecord("99_test", "default", {"level": 0.8} | (params or {}), expectations=e)
    yield make
    claim_specs.specs.cache_clear()


# (claim, statistics, verdict): every verdict of every kind is reachable, and every reason is literally true
CASES = [
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "supports the paper"),
    ("effect", dict(value=0.3, ci=(-0.01, 0.5), p=0.04),
     "supports the paper (one-sided p < 0.05; the two-sided 95% CI still reaches the null)"),
    ("effect", dict(value=-0.3, ci=(-0.5, -0.1), p=0.99), "NOT CONFIRMED: contradicts the paper (significant the other way)"),
    ("effect", dict(value=0.1, ci=(-0.2, 0.4), p=0.2), "NOT CONFIRMED: inconclusive (CI spans the null: +0.1 [-0.2, 0.4], p 0.2)"),
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.125, smallest_p=0.125),
     "NOT CONFIRMED: inconclusive (underpowered: the smallest achievable p is 0.125)"),
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.01, criterion_met=False),
     "NOT CONFIRMED: inconclusive (significant, but the claim's criterion is missed)"),
    ("effect", dict(value=float("nan"), p=0.01), "NOT CONFIRMED: not computable (the value is NaN)"),
    ("effect", dict(value=0.3), "NOT CONFIRMED: inconclusive (no test)"),
    ("effect", dict(value=0.3, p=0.2), "NOT CONFIRMED: inconclusive (no CI, and the p does not reach alpha: +0.3, p 0.2)"),
    # the CI beyond the null, the p not below alpha and not underpowered: the reason says exactly that
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.09),
     "NOT CONFIRMED: inconclusive (the CI lies beyond the null, but the test's p does not reach 0.05: +0.3 [0.1, 0.5], p 0.09)"),
    # the reason names the comparison that decided, when the design says which
    ("effect", dict(value=0.04, ci=(-0.1, 0.19), p=0.3, deciding="against base: +0.04 [-0.1, 0.19], p 0.3"),
     "NOT CONFIRMED: inconclusive (CI spans the null: against base: +0.04 [-0.1, 0.19], p 0.3)"),
    ("split", dict(value=0.01, ci=(-0.02, 0.03), p=0.3),
     "contradicts the paper (no effect: equivalence within ±0.05 shown, 95% CI [-0.02, 0.03])"),
    ("split", dict(value=0.01, ci=(-0.06, 0.07), tost_ci=(-0.04, 0.045), p=0.3),
     "contradicts the paper (no effect: equivalence within ±0.05 shown, 90% CI [-0.04, 0.045])"),
    ("split", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "supports the paper"),
    ("split", dict(value=0.05, ci=(-0.1, 0.2), p=0.3), "inconclusive (CI spans the null: +0.05 [-0.1, 0.2], p 0.3)"),
    ("absent", dict(value=0.01, ci=(-0.05, 0.06), p=0.4),
     "supports the paper (absent: equivalence within ±0.1 shown, 95% CI [-0.05, 0.06])"),
    ("absent", dict(value=0.01, ci=(-0.3, 0.3), p=0.4),
     "inconclusive (equivalence not shown: the 95% CI [-0.3, 0.3] reaches beyond ±0.1)"),
    ("absent", dict(value=0.01, ci=(-0.3, 0.3), tost_ci=(-0.2, 0.2), p=0.4),
     "inconclusive (equivalence not shown: the 90% CI [-0.2, 0.2] reaches beyond ±0.1)"),
    ("absent", dict(value=0.3, ci=(0.2, 0.4), p=0.001),
     "contradicts the paper (an effect where none is predicted: +0.3 [0.2, 0.4], p 0.001)"),
    ("absent", dict(value=-0.3, ci=(-0.4, -0.2), p=0.999), "inconclusive (an effect the other way: not the absence predicted)"),
    ("absent", dict(value=0.0, p=0.5), "inconclusive (no CI: equivalence cannot be shown)"),
    ("absent_late", dict(value=0.01, ci=(-0.05, 0.06), tost_ci=(-0.04, 0.05), p=0.4),
     "equivalence post hoc, not evidence (within ±0.1: 90% CI [-0.04, 0.05]; the margin was set after the values it judges)"),
    ("count", dict(value=0.0, ci=(0.0, 0.3)), "descriptive (the design cannot decide it: too few units)"),
    ("extra", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "effect shown"),
    ("extra", dict(value=-0.3, ci=(-0.5, -0.1), p=0.99), "opposite effect (significant)"),
    ("extra", dict(value=0.1, ci=(-0.1, 0.3), p=0.2), "inconclusive (CI spans the null: +0.1 [-0.1, 0.3], p 0.2)"),
    ("bar", dict(value=0.9, ci=(0.85, 0.95)), "meets our criterion (>= 0.8; ours, not the paper's)"),
    ("bar", dict(value=0.6, ci=(0.5, 0.7)), "misses our criterion (>= 0.8; ours, not the paper's)"),
    ("bar", dict(value=0.8, ci=(0.7, 0.9)), "inconclusive (the CI spans our bar: >= 0.8; ours, not the paper's)"),
    ("bar", dict(value=0.9, outcome=True), "meets our criterion (>= 0.8; ours, not the paper's; point value, no CI)"),
    ("algebra", dict(value=1e-15, outcome=True), "sanity check passed (not evidence)"),
    ("algebra", dict(value=1.0, outcome=False), "sanity check FAILED (a bug: see the note)"),
    ("down", dict(value=-0.3, ci=(-0.5, -0.1), p=0.01), "supports the paper"),
    ("down", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "contradicts the paper (significant the other way)"),
    ("gated", dict(value=0.3, ci=(0.1, 0.5), p=0.01),
     "effect present, not specific to EM (its content-matched control, split, was not measured here)"),
]


@pytest.mark.parametrize("claim, stats_, verdict", CASES)
def test_each_kinds_verdicts_are_reachable(record, claim, stats_, verdict):
    assert record().record(claim, **stats_).verdict == verdict


def test_every_kind_has_a_supporting_and_a_failing_verdict():
    import yaml
    kinds = {c["id"]: c["kind"] for c in yaml.safe_load(SPEC)["claims"]}
    reached = {}
    for claim, _, verdict in CASES:
        reached.setdefault(kinds[claim], set()).add(verdicts.verdict_class(verdict))
    assert set(reached) == set(verdicts.KINDS)
    for kind, got in reached.items():
        assert "inconclusive" in got or kind == "sanity", kind
        assert len(got) >= 2, (kind, got)


def test_holm_adjusts_the_confirmatory_family_only(record):
    rec = record()
    rec.record("effect", value=0.3, ci=(0.1, 0.5), p=0.03)
    rec.record("effect_b", value=0.3, ci=(0.1, 0.5), p=0.04)
    rec.record("extra", value=0.3, ci=(0.1, 0.5), p=0.03)
    first, second, extra = rec.claims
    assert first.p_adjusted == pytest.approx(0.06) and second.p_adjusted == pytest.approx(0.06) and extra.p_adjusted is None
    assert first.outcome and first.verdict.startswith("NOT CONFIRMED: inconclusive (not significant after Holm")
    assert extra.verdict == "effect shown"
    assert verdicts.holm([0.01, None, 0.04, float("nan"), 0.03]) == pytest.approx([0.03, None, 0.06, None, 0.06])


def test_expectations_are_checked_and_a_flip_fails_at_finish(record):
    rec = record({"effect": True, "extra": "record: differs between CPUs"})
    rec.record("effect", value=0.3, ci=(0.1, 0.5), p=0.01, level="high")
    rec.finish()
    rec.record("extra", value=0.0, ci=(-0.1, 0.1), p=0.5)
    rec.record("effect", value=0.0, ci=(-0.1, 0.1), p=0.5, level="high")  # re-recording replaces it
    assert [c.claim for c in rec.claims] == ["extra", "effect"] and rec.claims[1].statement == "effect at high"
    with pytest.raises(claims.ClaimMismatch, match="'effect' does not hold .UNEXPECTED.: measured m = 0 .-0.1, 0.1."):
        rec.finish()
    row = rec.rows()[0]
    assert row["as_expected"] == "record only" and row["registered"] == "before" and row["expectation_set"] == "2026-12-05"


def test_a_nan_statistic_is_not_computable_and_fails_an_asserted_expectation(record):
    rec = record({"extra": False})
    c = rec.record("extra", value=0.2, p=float("nan"))
    assert not c.outcome and c.verdict == "not computable (the p is NaN)" and c.as_expected == "UNEXPECTED"
    c = rec.record("split", value=0.2, p=0.01, not_computable="the family is empty in 1 of 3 worlds")
    assert c.verdict == "not computable (the family is empty in 1 of 3 worlds)" and c.as_expected == "not checked"


def test_outcomes_follow_from_the_statistics_except_for_our_bars(record):
    rec = record()
    with pytest.raises(ValueError, match="follows from the statistics"):
        rec.record("effect", value=0.3, p=0.01, outcome=True)
    assert rec.record("bar", value=0.5, outcome=True).outcome


def test_helpers_apply_one_rule_per_design(record):
    rec = record()
    c = rec.over_units("extra", [0.3, 0.5, 0.4])
    assert c.p_value == pytest.approx(stats.seed_level_test(np.array([0.3, 0.5, 0.4]))[1]) and c.units == "3/3"
    assert (c.tost_low, c.tost_high) == pytest.approx(stats.mean_ci([0.3, 0.5, 0.4], 0.90)[1:])
    c = rec.over_units("bar", [0.9, 0.95, 0.85], correlation=True)  # a bar on Fisher's z, read by its CI, no p
    assert c.null_value == 0.8 and c.p_value is None and c.ci_low < 0.8 < c.ci_high
    assert c.verdict == "inconclusive (the CI spans our bar: >= 0.8; ours, not the paper's)"
    c = rec.paired("extra", np.array([0.3, 0.4, 0.5, 0.6]), np.array([0.1, 0.2, 0.2, 0.3]), n_perm=100)
    assert c.smallest_p == 1 / 16 and c.verdict.startswith("inconclusive (underpowered")
    c = rec.paired("down", np.array([0.1, 0.2, 0.2, 0.3, 0.1, 0.2]), np.array([0.3, 0.4, 0.5, 0.6, 0.4, 0.5]), n_perm=100)
    assert c.p_value == pytest.approx(1 / 64) and c.units == "6/6" and c.verdict == "supports the paper"
    c = rec.noninferiority("down", np.array([0.01, -0.01, 0.0, 0.005, -0.005, 0.0]), margin=0.05)
    assert c.outcome and c.null_value == 0.05 and c.verdict == "supports the paper"


def test_a_share_claim_tests_its_bar_whatever_the_dependence(record):
    """"An effect in at least 70% of 9 domains" needs 7 domains shown by Holm (valid under any dependence):
    the claim's p is the 7th smallest Holm-adjusted p, its lower bound the share Holm shows."""
    rec = record()
    strong = pd.Series([1e-4] * 8 + [0.5], index=list("abcdefghi"))
    c = rec.share("effect", strong, bar=0.7)
    assert c.units == "8/9" and c.null_value == pytest.approx(6 / 9) and c.ci_low == pytest.approx(8 / 9)
    assert c.p_value == pytest.approx(sorted(verdicts.holm(strong.tolist()))[6]) and c.verdict == "supports the paper"
    # 8 of 9 below alpha one by one, but only 3 survive Holm: the bar is not shown, and the reason says why
    weak = pd.Series([0.001, 0.002, 0.003, 0.02, 0.03, 0.03, 0.04, 0.04, 0.5], index=list("abcdefghi"))
    c = rec.share("effect", weak, bar=0.7)
    assert c.units == "8/9" and c.ci_low == pytest.approx(3 / 9) and c.p_value >= 0.05
    assert c.verdict == ("NOT CONFIRMED: inconclusive (CI spans the null: 3 of 9 shown after Holm (the bar needs 7), "
                         f"p {c.p_value:.3g})")
    # all nine below alpha: supported only if Holm shows seven
    c = rec.share("effect", pd.Series([0.004] * 9), bar=0.7)
    assert c.p_value == pytest.approx(0.036) and c.verdict == "supports the paper"
    c = rec.share("count", pd.Series([0.5] * 9), bar=0.3)
    assert c.verdict == "descriptive (the design cannot decide it: too few units)" and c.p_value is None
    assert rec.share("effect", pd.Series([0.01, float("nan")]), bar=0.5).verdict.startswith("NOT CONFIRMED: not computable")


def test_exceeds_all_shows_the_comparison_that_decides(record):
    """The p is the largest over comparisons and the value and CI are that comparison's; a base model's rate
    enters with its sampling error (Welch), not as a fixed number."""
    rec = record()
    a, other = np.array([0.5, 0.6, 0.55]), np.array([0.1, 0.2, 0.15])
    c = rec.exceeds_all("extra", a, {"other": other, "base": (0.45, 0.1, 40)})
    d, lo, hi, p, lo90, hi90 = stats.welch_against_rate(a, 0.45, 0.1, 40)
    assert p > stats.seed_level_test(a, other)[1]  # the base comparison decides
    assert (c.value, c.ci_low, c.ci_high, c.p_value) == pytest.approx((d, lo, hi, p)) and c.value == pytest.approx(0.1)
    assert c.verdict == f"inconclusive (CI spans the null: against base: +0.1 [{lo:.3g}, {hi:.3g}], p {p:.3g})"
    assert "vs other: +0.400" in c.note
    # a fixed base rate (no error) would have claimed more than the data show
    assert stats.seed_level_test(a - 0.45)[1] < p
    c = rec.exceeds_all("extra", a, {"other": other, "base": (0.2, 0.01, 400)})
    largest = max(stats.seed_level_test(a, other)[1], stats.welch_against_rate(a, 0.2, 0.01, 400)[3])
    assert c.verdict == "effect shown" and c.p_value == pytest.approx(largest)


def test_a_gated_claim_counts_only_when_its_control_supports_the_paper(record):
    rec = record()
    rec.record("gated", value=0.3, ci=(0.1, 0.5), p=0.01)
    rec.record("split", value=0.01, ci=(-0.02, 0.03), p=0.3)  # equivalence: the control spreads as much
    gated = next(c for c in rec.claims if c.claim == "gated")
    assert gated.verdict == "effect present, not specific to EM (the content-matched control shows as much: split)"
    assert verdicts.verdict_class(gated.verdict) == "effect present, not specific to EM"
    rec.record("split", value=0.05, ci=(-0.1, 0.2), p=0.3)
    assert gated.verdict.endswith("does not separate it: split inconclusive)")
    rec.record("split", value=0.3, ci=(0.1, 0.5), p=0.01)
    assert gated.verdict == "supports the paper"
    assert rec.record("gated", value=0.1, ci=(-0.2, 0.4), p=0.2).verdict.startswith("inconclusive (CI spans the null")


def test_claims_carry_their_declared_date_and_whether_they_were_preregistered(record):
    row = record().record("absent_late", value=0.0, ci=(-0.01, 0.01)).__dict__
    assert row["declared"] == "2026-12-01" and row["preregistered"] is False and row["margin_post_hoc"] is True


def test_a_claim_not_in_the_claims_file_is_refused_naming_the_file(record):
    with pytest.raises(claim_specs.ClaimSpecError, match="'nope' is not declared in .*99_test.yaml"):
        record().record("nope", value=1.0)
    with pytest.raises(claim_specs.ClaimSpecError, match="names 'level'"):  # a statement naming an unknown word
        claims.ClaimsRecord("99_test", "default", {}, expectations={}).record("effect", value=1.0)


def test_bad_claims_and_expectation_files_name_file_line_and_field(tmp_path, monkeypatch):
    bad = tmp_path / "claims" / "98_bad.yaml"
    bad.parent.mkdir()
    monkeypatch.setattr(claim_specs, "claims_file", lambda nb: tmp_path / "claims" / f"{nb}.yaml")
    for text, message in [
            ("claims:\n  - {id: a, kind: paper, paper: p, statement: s, measure: m, design: d, colour: red}\n", "line 2, claim 'a': unknown field"),
            ("claims:\n  - {id: a, kind: papers, paper: p, statement: s, measure: m, design: d}\n", "kind 'papers' is not one of"),
            ("claims:\n  - {id: a, kind: negative_control, paper: p, statement: s, measure: m, design: d}\n", "needs an equivalence margin"),
            ("claims:\n  - {id: a, kind: negative_control, paper: p, statement: s, measure: m, design: d, margin: 1}\n",
             "needs the rule that fixed it"),
            ("claims:\n  - {id: a, kind: paper, paper: p, statement: s, measure: m, design: d, gated_by: b}\n",
             "gated_by names \\['b'\\]"),
            ("claims:\n  - {id: a, kind: finding, family: confirmatory, paper: p, statement: s, measure: m, design: d}\n", "are confirmatory"),
            ("claims:\n\n  - {id: a, kind: paper, paper: p, statement: s}\n", "line 3, claim 'a': missing field")]:
        bad.write_text(text)
        claim_specs.specs.cache_clear()
        with pytest.raises(claim_specs.ClaimSpecError, match=message):
            claim_specs.specs("98_bad")
    claim_specs.specs.cache_clear()
    expectations = tmp_path / "expectations.yaml"
    expectations.write_text("03_geometry_tests:\n  a: {expect: true, set: 2026-12-05, registered: before}\n"
                            "  b: {expect: maybe, set: 2026-12-05, registered: before}\n")
    with pytest.raises(claim_specs.ClaimSpecError, match="expectations.yaml, line 3, 03_geometry_tests.b: expect must be"):
        claim_specs.expectations("x", expectations)


def test_gather_orders_by_kind_and_counts_verdicts(record, tmp_path):
    rec = record({"effect": True})
    rec.record("effect", value=0.3, ci=(0.1, 0.5), p=0.01, level="high")
    rec.record("split", value=0.3, ci=(0.1, 0.5), p=0.01)
    rec.record("algebra", value=0.0, outcome=True)
    frame = claims_table.gather("default")
    assert list(frame.claim) == ["effect", "split", "algebra"]
    md = (paths.figures_dir("default") / "claims.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| 99_test")]
    assert [r.split(" | ")[1] for r in rows] == ["split", "effect", "algebra"]  # discriminating first, sanity last
    assert "Verdicts per kind" in md and "set 2026-12-05, before measuring" in md
    counts = claims_table.counts(frame)
    assert counts.loc["the paper's claim", "supports the paper"] == 1 and counts.loc["discriminating control", "claims"] == 1


def test_the_repository_claims_files_are_valid_and_every_expectation_names_a_declared_claim():
    notebooks = sorted(p.stem for p in paths.notebooks_dir().glob("0*.ipynb"))
    declared = {nb: claim_specs.specs(nb) for nb in notebooks}
    assert all(declared.values())
    for profile_dir in sorted(paths.params_dir().iterdir()):
        for nb, claims_ in claim_specs.expectations(profile_dir.name).items():
            assert nb in declared, f"{profile_dir.name}: no notebook {nb}"
            unknown = set(claims_) - set(declared[nb])
            assert not unknown, f"params/{profile_dir.name}/expectations.yaml: {nb} has no claim(s) {sorted(unknown)}"


def test_every_claim_a_notebook_records_is_declared():
    """The ids a notebook passes to the record (literals, or f-strings over its worlds) are in its claims file."""
    import re
    for nb in sorted(paths.notebooks_dir().glob("0*.ipynb")):
        code = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        declared = claim_specs.specs(nb.stem)
        literal = set(re.findall(r'nb\.claims\.\w+\(\s*"(\w+)"', code))
        assert literal <= set(declared), (nb.name, literal - set(declared))
    # claims recorded for a notebook by the package (00's section 5b for a world-lm model)
    from emgeo_utils.experiment import controls

    recorded = set(re.findall(r'claims\.\w+\(\s*"(\w+)"', Path(controls.__file__).read_text()))
    recorded |= set(re.findall(r'\("(em_\w+)", ', Path(controls.__file__).read_text()))
    assert recorded and recorded <= set(claim_specs.specs("00_model_organism")), recorded


def test_the_paper_map_names_declared_claims():
    import yaml
    from pathlib import Path
    from emgeo_utils.report import page

    entries = yaml.safe_load((Path(page.__file__).with_name("paper_map.yaml")).read_text())
    for e in entries:
        for nb, claim in e.get("ours", []):
            assert claim in claim_specs.specs(nb), f"paper_map.yaml: {nb}.{claim} is not declared"
