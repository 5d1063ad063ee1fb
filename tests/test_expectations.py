"""An expectation changes only with a new date: the profile's expectations against the committed snapshot.

The snapshot (`results/<profile>/claims.csv`) records each claim's expectation and the date it was set. An
expectation that differs from the snapshot's under the same date was changed without saying when; one that
disappeared was dropped without a trace (write it as "record: <why>" with a new date instead)."""

import pandas as pd
import pytest

from emgeo_utils.core import paths
from emgeo_utils.claims import specs as claim_specs

PROFILES = sorted(p.parent.name for p in (paths.PROJECT_ROOT / "results").glob("*/claims.csv"))


def _text(value) -> str:
    return str(value) if not isinstance(value, bool) else str(value)


@pytest.mark.parametrize("profile", PROFILES)
def test_an_expectation_differs_from_the_snapshot_only_with_a_new_date(profile):
    snapshot = pd.read_csv(paths.PROJECT_ROOT / "results" / profile / "claims.csv", dtype=str, keep_default_na=False)
    expected = claim_specs.expectations(profile)
    problems = []
    for row in snapshot.itertuples():
        now = expected.get(row.notebook, {}).get(row.claim)
        if now is None:
            if row.expected:
                problems.append(f"{row.notebook}.{row.claim}: expectation {row.expected!r} dropped")
        elif now.set == row.expectation_set and _text(now.expect) != row.expected:
            problems.append(f"{row.notebook}.{row.claim}: {row.expected!r} -> {now.expect!r} under the same date {now.set}")
    assert not problems, (f"params/{profile}/expectations.yaml changes expectations without a new `set` date: "
                          + "; ".join(problems))


def test_a_changed_expectation_without_a_new_date_is_caught(tmp_path, monkeypatch):
    """The check above can fail: flip one expectation of a copy, keeping its date."""
    profile = PROFILES[0]
    source = (paths.params_dir() / profile / "expectations.yaml").read_text()
    snapshot = pd.read_csv(paths.PROJECT_ROOT / "results" / profile / "claims.csv", dtype=str, keep_default_na=False)
    row = snapshot[snapshot.expected == "True"].iloc[0]
    (tmp_path / profile).mkdir()
    flipped = source.replace(f"  {row.claim}: {{expect: true,", f"  {row.claim}: {{expect: false,", 1)
    assert flipped != source
    (tmp_path / profile / "expectations.yaml").write_text(flipped)
    monkeypatch.setenv("EMGEO_PARAMS", str(tmp_path))
    with pytest.raises(AssertionError, match=f"{row.claim}: 'True' -> False under the same date"):
        test_an_expectation_differs_from_the_snapshot_only_with_a_new_date(profile)
