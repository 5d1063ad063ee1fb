"""The claims' dates come from git: the committed table matches the history, and the rule on a small history."""

import os
import subprocess

import pytest

from emgeo_utils.claims import history
from emgeo_utils.core import paths


def test_committed_table_matches_git():
    why = history.history_available(paths.PROJECT_ROOT)
    if why:
        pytest.skip(f"the checkout is {why}: the claims' dates cannot be read")
    assert history.rows_out_of_date() == [], "run `python -m emgeo_utils.claims.history update` and commit the table"


DAY = "2026-01-01T12:00:00+0000"  # every commit on one day and second: only the order of commits can decide


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for name, value in {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
                        "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "GIT_AUTHOR_DATE": DAY, "GIT_COMMITTER_DATE": DAY}.items():
        monkeypatch.setenv(name, value)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "notebooks" / "claims").mkdir(parents=True)
    (tmp_path / "results" / "default").mkdir(parents=True)
    return tmp_path


def claims(root, **margins):
    lines = ["claims:"] + [f"  - id: {claim}" + (f"\n    margin: {m}" if m is not None else "") for claim, m in margins.items()]
    (root / "notebooks" / "claims" / "nb.yaml").write_text("\n".join(lines) + "\n")


def results(root, *ids):
    (root / "results" / "default" / "claims.csv").write_text("notebook,claim,value\n" + "".join(f"nb,{i},1\n" for i in ids))


def commit(root, message) -> str:
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout[:10]


def test_dates_and_order_from_a_small_history(repo):
    claims(repo, early=None, margined=0.1)
    declare = commit(repo, "declare early, margined")
    results(repo, "early", "margined", "late")  # `late` measured before it is declared
    measure = commit(repo, "first results")
    claims(repo, early=None, margined=0.1, late=0.2, unmeasured=None)
    add = commit(repo, "declare late (with a margin) and unmeasured")
    claims(repo, early=None, margined=0.15, late=0.2, unmeasured=None)
    moved = commit(repo, "move margined's margin after its results")
    rows = {r["claim"]: r for r in history.compute(repo)}
    assert {c: (r["declared_commit"], r["first_result_commit"], r["preregistered"]) for c, r in rows.items()} == {
        "early": (declare, measure, "True"), "margined": (declare, measure, "True"),
        "late": (add, measure, "False"), "unmeasured": (add, "", "True")}
    assert rows["early"]["declared"] == "2026-01-01" and rows["unmeasured"]["first_result"] == ""
    assert (rows["margined"]["margin_set_commit"], rows["margined"]["margin_post_hoc"]) == (moved, "True")
    assert (rows["late"]["margin_set_commit"], rows["late"]["margin_post_hoc"]) == (add, "True")
    assert rows["early"]["margin_set"] == rows["early"]["margin_post_hoc"] == ""

    # A claim only the working tree holds is declared today, `uncommitted`; its result, if there, too.
    claims(repo, early=None, margined=0.15, late=0.2, unmeasured=None, pending=0.3)
    pending = {r["claim"]: r for r in history.compute(repo)}["pending"]
    assert (pending["declared_commit"], pending["preregistered"], pending["margin_post_hoc"]) == ("uncommitted", "True", "False")
    results(repo, "early", "margined", "late", "pending")
    pending = {r["claim"]: r for r in history.write_history(repo)}["pending"]
    assert (pending["first_result_commit"], pending["preregistered"], pending["margin_post_hoc"]) == ("uncommitted", "False", "True")

    # Committed with the table: `check` accepts the row naming `uncommitted` for its own commit ...
    assert len(history.rows_out_of_date(repo)) == 0
    together = commit(repo, "pending, its result and the table")
    assert {r["claim"]: r for r in history.compute(repo)}["pending"]["declared_commit"] == together
    assert history.rows_out_of_date(repo) == []
    # ... and nothing else: a later change not written to the table is named.
    claims(repo, early=None, margined=0.2, late=0.2, unmeasured=None, pending=0.3)
    commit(repo, "move margined's margin again, table not updated")
    problems = history.rows_out_of_date(repo)
    assert len(problems) == 1 and "nb margined" in problems[0] and "margin_set_commit" in problems[0]


def test_lookup_reads_the_table_and_knows_nothing_of_an_unknown_claim(tmp_path):
    table = tmp_path / "history.csv"
    table.write_text(history.render_table([dict(notebook="nb", claim="c", declared="2026-01-01", declared_commit="abc",
                                          first_result="", first_result_commit="", preregistered="True",
                                          margin_set="2026-01-02", margin_set_commit="def", margin_post_hoc="True")]))
    assert history.claim_history("nb", "c", table) == dict(
        declared="2026-01-01", declared_commit="abc", first_result=None, first_result_commit=None, preregistered=True,
        margin_set="2026-01-02", margin_set_commit="def", margin_post_hoc=True)
    assert history.claim_history("nb", "unknown", table) == dict.fromkeys(history.FIELDS)
    assert history.claim_history("no_such_notebook", "c") == dict.fromkeys(history.FIELDS)
