"""An expectation changes only with a new date: the profile's expectations against the committed snapshot.

The snapshot (`results/<profile>/claims.csv`) records each claim's expectation and the date it was set. An
expectation that differs from the snapshot's under the same date was changed without saying when; one that
disappeared was dropped without a trace (write it as "record: <why>" with a new date instead)."""

import re

import pandas as pd
import pytest

from emgeo_utils.core import paths
from emgeo_utils.claims import specs as claim_specs

PROFILES = sorted(p.parent.name for p in (paths.PROJECT_ROOT / "results").glob("*/claims.csv"))


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
        # `expect` is true, false or 'record: <why>' (`claim_specs` refuses anything else); the snapshot
        # spells it as str() does: 'True', 'False' or the record text
        elif now.set == row.expectation_set and str(now.expect) != row.expected:
            problems.append(f"{row.notebook}.{row.claim}: {row.expected!r} -> {now.expect!r} under the same date {now.set}")
    assert not problems, (f"params/{profile}/expectations.yaml changes expectations without a new `set` date: "
                          + "; ".join(problems))


@pytest.mark.parametrize("kind", ["boolean", "record"])
def test_a_changed_expectation_without_a_new_date_is_caught(tmp_path, monkeypatch, kind):
    """The check above can fail, for both kinds of expectation: in a copy, flip a true one to false, or
    turn a 'record: <why>' one into true, keeping its date."""
    profile = PROFILES[0]
    source = (paths.params_dir() / profile / "expectations.yaml").read_text()
    snapshot = pd.read_csv(paths.PROJECT_ROOT / "results" / profile / "claims.csv", dtype=str, keep_default_na=False)
    if kind == "boolean":
        row = snapshot[snapshot.expected == "True"].iloc[0]
        before, after, message = "true", "false", "'True' -> False"
    else:
        row = snapshot[snapshot.expected.str.startswith("record:")].iloc[0]
        before, after, message = f'"{row.expected}"', "true", f"{row.expected!r} -> True"
    (tmp_path / profile).mkdir()
    flipped = source.replace(f"  {row.claim}: {{expect: {before},", f"  {row.claim}: {{expect: {after},", 1)
    assert flipped != source
    (tmp_path / profile / "expectations.yaml").write_text(flipped)
    monkeypatch.setenv("EMGEO_PARAMS", str(tmp_path))
    with pytest.raises(AssertionError, match=re.escape(f"{row.claim}: {message} under the same date")):
        test_an_expectation_differs_from_the_snapshot_only_with_a_new_date(profile)
