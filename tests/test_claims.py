"""The claims record and its verdicts: every kind's verdicts reachable, the rule applied once, NaN never evidence."""

import json
from pathlib import Path

import numpy as np
import pytest

from emgeo_utils.core import paths, stats
from emgeo_utils.claims import record as claims
from emgeo_utils.claims import specs as claim_specs
from emgeo_utils.claims import verdicts
from emgeo_utils.report import claims_table

SPEC = """claims:
  - {id: effect, kind: paper, family: confirmatory, paper: p, statement: "effect at {level}", measure: m, design: d}
  - {id: effect_b, kind: paper, family: confirmatory, paper: p, statement: s, measure: m, design: d}
  - {id: absent, kind: negative_control, paper: p, statement: s, measure: m, design: d, margin: 0.1}
  - {id: split, kind: discriminating, paper: p, statement: s, measure: m, design: d, margin: 0.05}
  - {id: extra, kind: finding, paper: p, statement: s, measure: m, design: d}
  - {id: bar, kind: criterion, paper: p, statement: s, measure: m, design: d, null_value: level, criterion: ">= {level}"}
  - {id: algebra, kind: sanity, paper: p, statement: s, measure: m, design: d}
  - {id: down, kind: paper, paper: p, statement: s, measure: m, design: d, direction: -1}
"""


@pytest.fixture
def record(tmp_path, monkeypatch):
    """A record for notebook `99_test` with the claims file above and expectations given per test."""
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path / "figures"))
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "99_test.yaml").write_text(SPEC)
    monkeypatch.setattr(claim_specs, "claims_file", lambda nb: tmp_path / "claims" / f"{nb}.yaml")
    claim_specs.specs.cache_clear()

    def make(expect: dict | None = None, params: dict | None = None):
        e = {"99_test": {k: claim_specs.Expectation(v, "2026-12-05", "before") for k, v in (expect or {}).items()}}
        return claims.ClaimsRecord("99_test", "default", {"level": 0.8} | (params or {}), expectations=e)
    yield make
    claim_specs.specs.cache_clear()


# (claim, statistics, verdict): every verdict of every kind is reachable
CASES = [
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "supports the paper"),
    ("effect", dict(value=0.3, ci=(-0.01, 0.5), p=0.04),
     "supports the paper (one-sided p < 0.05; the two-sided 95% CI still reaches the null)"),
    ("effect", dict(value=-0.3, ci=(-0.5, -0.1), p=0.99), "NOT CONFIRMED: contradicts the paper (significant the other way)"),
    ("effect", dict(value=0.1, ci=(-0.2, 0.4), p=0.2), "NOT CONFIRMED: inconclusive (CI spans the null)"),
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.125, smallest_p=0.125),
     "NOT CONFIRMED: inconclusive (underpowered: the smallest achievable p is 0.125)"),
    ("effect", dict(value=0.3, ci=(0.1, 0.5), p=0.01, criterion_met=False),
     "NOT CONFIRMED: inconclusive (significant, but the claim's criterion is missed)"),
    ("effect", dict(value=float("nan"), p=0.01), "NOT CONFIRMED: not computable (the value is NaN)"),
    ("effect", dict(value=0.3), "NOT CONFIRMED: inconclusive (no test)"),
    ("split", dict(value=0.01, ci=(-0.02, 0.03), p=0.3), "contradicts the paper (no effect: equivalence within ±0.05 shown)"),
    ("split", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "supports the paper"),
    ("split", dict(value=0.05, ci=(-0.1, 0.2), p=0.3), "inconclusive (CI spans the null)"),
    ("absent", dict(value=0.01, ci=(-0.05, 0.06), p=0.4), "supports the paper (absent: equivalence within ±0.1 shown)"),
    ("absent", dict(value=0.01, ci=(-0.3, 0.3), p=0.4), "inconclusive (equivalence not shown: the CI reaches beyond ±0.1)"),
    ("absent", dict(value=0.3, ci=(0.2, 0.4), p=0.001), "contradicts the paper (an effect where none is predicted)"),
    ("absent", dict(value=-0.3, ci=(-0.4, -0.2), p=0.999), "inconclusive (an effect the other way: not the absence predicted)"),
    ("absent", dict(value=0.0, p=0.5), "inconclusive (no CI: equivalence cannot be shown)"),
    ("extra", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "effect shown"),
    ("extra", dict(value=-0.3, ci=(-0.5, -0.1), p=0.99), "opposite effect (significant)"),
    ("extra", dict(value=0.1, ci=(-0.1, 0.3), p=0.2), "inconclusive (CI spans the null)"),
    ("bar", dict(value=0.9, ci=(0.85, 0.95)), "meets our criterion (>= 0.8; ours, not the paper's)"),
    ("bar", dict(value=0.6, ci=(0.5, 0.7)), "misses our criterion (>= 0.8; ours, not the paper's)"),
    ("bar", dict(value=0.8, ci=(0.7, 0.9)), "inconclusive (the CI spans our bar: >= 0.8; ours, not the paper's)"),
    ("bar", dict(value=0.9, outcome=True), "meets our criterion (>= 0.8; ours, not the paper's; point value, no CI)"),
    ("algebra", dict(value=1e-15, outcome=True), "sanity check passed (not evidence)"),
    ("algebra", dict(value=1.0, outcome=False), "sanity check FAILED (a bug: see the note)"),
    ("down", dict(value=-0.3, ci=(-0.5, -0.1), p=0.01), "supports the paper"),
    ("down", dict(value=0.3, ci=(0.1, 0.5), p=0.01), "contradicts the paper (significant the other way)"),
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
    c = rec.over_units("bar", [0.9, 0.95, 0.85], correlation=True)  # a bar on Fisher's z, read by its CI, no p
    assert c.null_value == 0.8 and c.p_value is None and c.verdict.startswith(("meets", "inconclusive"))
    c = rec.paired("extra", np.array([0.3, 0.4, 0.5, 0.6]), np.array([0.1, 0.2, 0.2, 0.3]), n_perm=100)
    assert c.smallest_p == 1 / 16 and c.verdict.startswith("inconclusive (underpowered")
    c = rec.paired("down", np.array([0.1, 0.2, 0.2, 0.3, 0.1, 0.2]), np.array([0.3, 0.4, 0.5, 0.6, 0.4, 0.5]), n_perm=100)
    assert c.p_value == pytest.approx(1 / 64) and c.units == "6/6" and c.verdict == "supports the paper"
    c = rec.share("effect", 8, 9, bar=0.7)
    assert c.verdict == "supports the paper" and c.units == "8/9" and c.ci_low < 0.7 < c.ci_high
    c = rec.share("effect", 5, 9, bar=0.7)
    assert c.verdict.startswith("NOT CONFIRMED: inconclusive (significant, but the claim's criterion is missed")
    c = rec.share("absent", 0, 9, bar=0.3)
    assert c.verdict.startswith("inconclusive") or c.verdict.startswith("supports")
    c = rec.noninferiority("down", np.array([0.01, -0.01, 0.0, 0.005, -0.005, 0.0]), margin=0.05)
    assert c.outcome and c.null_value == 0.05 and c.verdict == "supports the paper"
    c = rec.exceeds_all("extra", np.array([0.5, 0.6, 0.55]), {"other": np.array([0.1, 0.2, 0.15]), "base": 0.5})
    assert c.value == pytest.approx(0.4) and "vs base" in c.note


def test_a_claim_not_in_the_claims_file_is_refused_naming_the_file(record):
    with pytest.raises(claim_specs.ClaimSpecError, match="'nope' is not declared in .*99_test.yaml"):
        record().record("nope", value=1.0)
    with pytest.raises(claim_specs.ClaimSpecError, match="names 'level'"):
        record(params={}).record("effect", value=1.0, level=None) if False else claims.ClaimsRecord(
            "99_test", "default", {}, expectations={}).record("effect", value=1.0)


def test_bad_claims_and_expectation_files_name_file_line_and_field(tmp_path, monkeypatch):
    bad = tmp_path / "claims" / "98_bad.yaml"
    bad.parent.mkdir()
    monkeypatch.setattr(claim_specs, "claims_file", lambda nb: tmp_path / "claims" / f"{nb}.yaml")
    for text, message in [
            ("claims:\n  - {id: a, kind: paper, paper: p, statement: s, measure: m, design: d, colour: red}\n", "line 2, claim 'a': unknown field"),
            ("claims:\n  - {id: a, kind: papers, paper: p, statement: s, measure: m, design: d}\n", "kind 'papers' is not one of"),
            ("claims:\n  - {id: a, kind: negative_control, paper: p, statement: s, measure: m, design: d}\n", "needs an equivalence margin"),
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
