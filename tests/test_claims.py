import json

import numpy as np

import pytest

from emgeo_utils.report import claims
from emgeo_utils.core import paths


def test_record_check_and_gather(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("01_theory", "default")
    rec.check("spillover", statement="spillover tracks cosine", paper="Sec. 3", measure="pearson r",
              value=0.93, ci=(0.9, 0.95), p_value=1e-6, outcome=True, expected=True, predicts="holds",
              registered="before", smallest_p=1e-4)
    rec.finish()  # nothing flipped yet
    rec.check("flipped", statement="x", measure="m", value=0.1, outcome=False, expected=True)  # recorded, no raise
    rec.check("unchecked", statement="y", measure="m", value=None, outcome=False, expected=None)
    with pytest.raises(claims.ClaimMismatch, match="1 claim.*'flipped' does not hold .UNEXPECTED.: measured m = 0.1; "
                                                    "expected holds"):
        rec.finish()  # the notebook's last cell names every flip
    saved = json.loads(rec.path().read_text())
    assert [c["claim"] for c in saved] == ["spillover", "flipped", "unchecked"]
    assert saved[0]["verdict"] == "supports the paper" and saved[0]["as_expected"] == "as expected"
    assert saved[2]["verdict"] == "beyond the paper: does not hold" and saved[2]["as_expected"] == "not checked"
    frame = claims.gather("default")
    assert list(frame.claim) == ["spillover", "flipped", "unchecked"]
    md = (paths.figures_dir("default") / "claims.md").read_text()
    assert "| 01_theory | spillover |" in md and "UNEXPECTED" in md and "set before measuring" in md
    assert (tmp_path / "claims.csv").exists()


def test_expectation_must_be_bool(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("01_theory", "test")
    with pytest.raises(TypeError):
        rec.check("c", statement="s", measure="m", value=1.0, outcome=True, expected="yes")
    assert rec.path().parent.parent == tmp_path / "test"


def test_rechecking_a_claim_replaces_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("02_x")
    for v in (1.0, 2.0):
        rec.check("c", statement="s", measure="m", value=v, outcome=True, expected=True)
    assert [c.value for c in rec.claims] == [2.0]


@pytest.mark.parametrize("kwargs, verdict", [
    (dict(outcome=True, predicts="holds"), "supports the paper"),
    (dict(outcome=False, predicts="does not hold"), "supports the paper"),
    (dict(outcome=True, predicts="does not hold"), "contradicts the paper"),
    (dict(outcome=False, predicts="holds", ci=(-0.3, -0.1)), "contradicts the paper"),
    (dict(outcome=False, predicts="holds", ci=(-0.3, 0.2)), "inconclusive (CI spans the null)"),
    (dict(outcome=False, predicts="holds", ci=(0.1, 0.3), direction=-1), "contradicts the paper"),
    (dict(outcome=False, predicts="holds", ci=(0.1, 0.3)),
     "inconclusive (in the predicted direction, but the claim's criterion is not met)"),
    (dict(outcome=False, predicts="holds", smallest_p=0.05), "inconclusive (underpowered: smallest achievable p = 0.05)"),
    (dict(outcome=False, predicts="holds"), "inconclusive (no CI)"),
    (dict(outcome=False, predicts="holds", null_value=0.5), "contradicts the paper"),
    (dict(outcome=True, predicts="holds", smallest_p=0.125), "inconclusive (underpowered: smallest achievable p = 0.125)"),
])
def test_verdicts_can_come_out_every_way(tmp_path, monkeypatch, kwargs, verdict):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("03_x")
    rec.check("c", statement="s", measure="m", value=0.1, expected=None, **kwargs)
    assert rec.claims[0].verdict == verdict


def test_record_only_expectation_is_recorded_not_asserted(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("03_x")
    rec.check("c", statement="s", measure="m", value=0.2, outcome=False, expected="record: differs between CPUs")
    rec.finish()  # not asserted: never fails
    row = rec.rows()[0]
    assert row["as_expected"] == "record only" and row["expected"] == "record: differs between CPUs"
    claims.gather("default")
    assert "record: differs between CPUs" in (tmp_path / "claims.md").read_text()
    with pytest.raises(TypeError, match="record: <why>"):
        rec.check("d", statement="s", measure="m", value=0.2, outcome=False, expected="differs")


def test_a_nan_statistic_is_not_computable_never_evidence(tmp_path, monkeypatch):
    """A NaN p or value cannot hold a claim: the verdict says 'not computable' with the reason, and an
    asserted expectation fails whichever way it pointed."""
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("03_x")
    rec.check("nan_p", statement="s", measure="m", value=0.2, p_value=float("nan"), outcome=True, expected=False,
              predicts="holds")
    rec.check("nan_value", statement="s", measure="m", value=float("nan"), outcome=False, expected=None,
              not_computable="no distinct features left in the comparison set")
    first, second = rec.claims
    assert not first.outcome and first.verdict == "not computable (the p is NaN)" and first.as_expected == "UNEXPECTED"
    assert second.verdict == "not computable (no distinct features left in the comparison set)"
    assert second.as_expected == "not checked"
    with pytest.raises(claims.ClaimMismatch, match="'nan_p' not computable .UNEXPECTED.: the p is NaN"):
        rec.finish()


def test_units_say_how_many_point_the_predicted_way(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    rec = claims.ClaimsRecord("03_x", "default")
    rec.check("c", statement="s", measure="m", value=0.1, p_value=0.01, outcome=True, expected=True, units=(2, 3))
    assert rec.table().units.tolist() == ["2/3"]
    claims.gather("default")
    assert "| 2/3 |" in (paths.figures_dir("default") / "claims.md").read_text()


def test_over_units_is_a_one_sided_t_over_units_with_units_in_the_claims_direction(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path))
    from emgeo_utils.core import stats

    c = claims.ClaimsRecord("99_test", "test")
    c.over_units("up", [0.3, 0.5, 0.4], statement="s", measure="m", expected=True)
    c.over_units("kept", [0.9, 0.95, 0.7], threshold=0.8, statement="s", measure="m", expected=None)
    up, kept = c.claims
    assert up.p_value == pytest.approx(stats.seed_level_test(np.array([0.3, 0.5, 0.4]))[1]) and up.outcome
    assert up.units == "3/3" and up.as_expected == "as expected"
    assert kept.units == "2/3" and kept.null_value == 0.8 and kept.value == pytest.approx(0.85)
    assert not kept.outcome  # 0.85 over 3 units with this spread is not significantly above 0.8
