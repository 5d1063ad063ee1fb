"""A profile too long for CI: its committed claims appear in the report and in claims_by_model.md with
the commit they ran at, and are marked STALE, naming the files, once the code has changed since."""

import json

import nbformat
import pandas as pd
import pytest

from emgeo_utils.claims import record as claims
from emgeo_utils.report import claims_table, page, recorded, snapshot


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Fresh claims of two profiles under a temporary figures folder, committed results in another."""
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("EMGEO_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(recorded, "results_dir", lambda p: tmp_path / "results" / p)
    code = {"emgeo_utils/a.py": "1", "notebooks/05_filtering.ipynb": "2"}
    monkeypatch.setattr(recorded, "fingerprint", lambda p: dict(code))
    monkeypatch.setattr(recorded, "git", lambda *a: "" if a[0] == "status" else "0123456789abcdef")
    for profile, verdict in (("default", "supports the paper"), ("smollm2-135m-full", "inconclusive (CI spans the null)")):
        folder = tmp_path / "figures" / ("" if profile == "default" else profile)
        (folder / "claims").mkdir(parents=True, exist_ok=True)
        row = dict.fromkeys(claims.COLUMNS) | {
            "notebook": "05_filtering", "claim": "geometry_reduces_em", "kind": "paper", "family": "confirmatory",
            "statement": "Removing samples reduces EM", "measure": "EM(unfiltered) - EM(geometry)", "value": 0.25,
            "ci_low": -0.1, "ci_high": 0.6, "p_value": 0.03, "outcome": verdict.startswith("supports"),
            "expected": "record: either way" if profile == "smollm2-135m-full" else True, "verdict": verdict,
            "as_expected": "as expected", "cell": 2}
        (folder / "claims" / "05_filtering.json").write_text(json.dumps([row]))
        claims_table.gather(profile)
        if profile != "default":  # its executed notebook, whose cell 2 checked the claim
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_markdown_cell("# 05", id="cell-000"),
                        nbformat.v4.new_code_cell("x = 1", id="cell-001", execution_count=1),
                        nbformat.v4.new_code_cell("claims()", id="cell-002", execution_count=2)]
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            (tmp_path / "build" / profile).mkdir(parents=True)
            nbformat.write(nb, tmp_path / "build" / profile / "05_filtering.ipynb")
    recorded.stamp("smollm2-135m-full", None)
    pd.DataFrame([{"notebook": "05_filtering", "seconds": 2100.0, "status": "ok"}]).to_csv(
        tmp_path / "figures" / "smollm2-135m-full" / "notebook_times.csv", index=False)
    snapshot.update(["smollm2-135m-full"], with_notebooks=True)
    return tmp_path, code


def test_the_run_stamps_its_code_and_update_commits_the_stamp(project):
    tmp_path, code = project
    committed = json.loads((tmp_path / "results" / "smollm2-135m-full" / "provenance.json").read_text())
    assert committed["commit"] == "0123456789abcdef" and committed["files"] == code and not committed["dirty"]
    assert (tmp_path / "results" / "smollm2-135m-full" / "notebook_times.csv").is_file()
    assert (tmp_path / "results" / "smollm2-135m-full" / "notebooks" / "05_filtering.ipynb").is_file()
    assert json.loads((tmp_path / "results" / "smollm2-135m-full" / "cells.json").read_text()) == {"05_filtering/geometry_reduces_em": 2}
    rec = recorded.Recorded("smollm2-135m-full")
    assert not rec.stale and "0123456789" in rec.title() and "STALE" not in rec.title()
    assert rec.rows[0]["value"] == 0.25 and rec.rows[0]["outcome"] is False and rec.rows[0]["registered"] is None


def test_recorded_claims_are_a_column_and_marked_stale_once_the_code_moves(project):
    tmp_path, code = project
    frame = claims_table.by_model(["default"], ["smollm2-135m-full"])
    fresh_column = [c for c in frame.columns if c.startswith("smollm2-135m-full (recorded")]
    assert len(fresh_column) == 1 and frame[fresh_column[0]].iloc[0].startswith("inconclusive")
    assert "unchanged since" in (tmp_path / "figures" / "claims_by_model.md").read_text()
    code["notebooks/05_filtering.ipynb"] = "changed"
    frame = claims_table.by_model(["default"], ["smollm2-135m-full"])
    text = (tmp_path / "figures" / "claims_by_model.md").read_text()
    assert any("STALE" in c for c in frame.columns) and "notebooks/05_filtering.ipynb" in text
    index = page.build(["default"], ["smollm2-135m-full"])
    html = index.read_text()
    assert "<th class=stale>" in html and "notebooks/05_filtering.ipynb" in html and "commit 0123456789" in html
    assert 'href="notebooks/smollm2-135m-full/05_filtering.html#cell-id=cell-002"' in html  # the committed notebook's cell
    assert 'id="cell-id=cell-002"' in (index.parent / "notebooks" / "smollm2-135m-full" / "05_filtering.html").read_text()


def test_a_profile_run_here_is_not_also_shown_as_recorded_and_missing_ones_say_so(project, capsys):
    assert recorded.available(["smollm2-135m-full", "nothing"], ["smollm2-135m-full"]) == []
    assert [r.profile for r in recorded.available(["smollm2-135m-full", "nothing"], [])] == ["smollm2-135m-full"]
    assert "[nothing] not shown" in capsys.readouterr().out


def test_rerunning_some_notebooks_at_other_code_marks_the_stamp_mixed(project):
    _, code = project
    recorded.stamp("smollm2-135m-full", ["05"])  # same code: the whole run's stamp stands
    assert "mixed" not in json.loads(recorded.stamp_file("smollm2-135m-full").read_text())
    code["emgeo_utils/a.py"] = "changed"
    recorded.stamp("smollm2-135m-full", ["05"])
    assert json.loads(recorded.stamp_file("smollm2-135m-full").read_text())["mixed"] == ["05"]


def test_the_fingerprint_covers_the_code_the_params_and_not_the_report():
    files = recorded.fingerprint("smollm2-135m-full")
    assert "emgeo_utils/experiment/world_lm.py" in files and "notebooks/05_filtering.ipynb" in files
    assert "params/smollm2-135m-full/05_filtering.yaml" in files and "notebooks/claims/05_filtering.yaml" in files
    assert "emgeo_utils/models/registry.yaml" in files and not any(f.startswith("emgeo_utils/report/") for f in files)
    assert not any(f.startswith("params/default/") for f in files)


def test_a_run_is_dirty_only_when_code_that_can_move_its_numbers_is_uncommitted(tmp_path, monkeypatch):
    """A deleted placeholder, an edited README or report code leaves the stamp clean; an edited, new or deleted
    module or a new parameter file does not."""
    import subprocess

    from emgeo_utils.core import paths

    def sh(*args):
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "emgeo_utils").mkdir()
    (tmp_path / "figures").mkdir()
    for name, text in (("emgeo_utils/a.py", "x = 1\n"), ("emgeo_utils/c.py", "z = 1\n"), ("emgeo_utils/report/r.py", "r = 1\n"),
                       ("README.md", "hi\n"), ("figures/.gitkeep", "")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    sh("git", "init", "-q")
    sh("git", "add", ".")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(recorded, "notebook_modules", lambda: {"emgeo_utils.a", "emgeo_utils.b"})  # d: no notebook reaches it
    (tmp_path / "figures" / ".gitkeep").unlink()
    (tmp_path / "README.md").write_text("edited\n")
    (tmp_path / "emgeo_utils" / "report" / "r.py").write_text("r = 2\n")  # report code renders, moves no number
    assert recorded.uncommitted("p") == []
    (tmp_path / "emgeo_utils" / "a.py").write_text("x = 2\n")
    (tmp_path / "emgeo_utils" / "b.py").write_text("y = 1\n")
    (tmp_path / "emgeo_utils" / "d.py").write_text("w = 1\n")
    (tmp_path / "emgeo_utils" / "c.py").unlink()
    (tmp_path / "params" / "p").mkdir(parents=True)
    (tmp_path / "params" / "p" / "00.yaml").write_text("seed: 1\n")
    assert recorded.uncommitted("p") == ["emgeo_utils/a.py", "emgeo_utils/b.py", "emgeo_utils/c.py", "params/p/00.yaml"]


def test_a_notebooks_prose_does_not_make_a_record_stale(tmp_path):
    """Only a notebook's code cells can move a number: rewording its prose keeps the record current."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("EM, reproduced"), nbformat.v4.new_code_cell("x = 1")])
    file = tmp_path / "n.ipynb"
    nbformat.write(nb, file)
    before = recorded._content(file)
    nb.cells[0].source = "EM: not established"
    nbformat.write(nb, file)
    assert recorded._content(file) == before
    nb.cells[1].source = "x = 2"
    nbformat.write(nb, file)
    assert recorded._content(file) != before


def test_committed_notebooks_must_show_the_snapshot_they_sit_beside(project):
    """`check` holds a profile's committed executed notebooks to its snapshot: the same code, the same claims."""
    tmp_path, code = project
    assert snapshot.notebooks_match("smollm2-135m-full") == []
    record = json.loads((tmp_path / "results" / "smollm2-135m-full" / "provenance.json").read_text())
    assert record["claims_sha256"] and len(record["claims_sha256"]) == 16
    code["emgeo_utils/a.py"] = "2"
    assert any("code changed" in p for p in snapshot.notebooks_match("smollm2-135m-full"))
    code["emgeo_utils/a.py"] = "1"
    claims_csv = tmp_path / "results" / "smollm2-135m-full" / "claims.csv"
    claims_csv.write_text(claims_csv.read_text().replace("0.25", "0.26"))
    assert snapshot.notebooks_match("smollm2-135m-full") == ["their run's claims are not the committed snapshot's"]


def test_only_code_the_notebooks_reach_can_make_a_record_stale():
    """The fingerprint holds the notebooks' import closure (lazy imports and packages' __init__ included): the
    screening command, which no notebook runs, cannot move a recorded number; the geometry can."""
    reached = recorded.notebook_modules()
    assert {"emgeo_utils.geometry.components", "emgeo_utils.claims", "emgeo_utils.core.numerics"} <= reached
    assert "emgeo_utils.filtering.screen" not in reached
    files = recorded.fingerprint("default")
    assert "emgeo_utils/geometry/components.py" in files and "emgeo_utils/filtering/screen.py" not in files
    assert not any(f.startswith("emgeo_utils/report/") for f in files)


def test_a_data_file_counts_when_code_the_notebooks_reach_names_it():
    files = recorded.fingerprint("default")
    assert "emgeo_utils/world/world_text.yaml" in files and "emgeo_utils/models/registry.yaml" in files
    assert "emgeo_utils/filtering/planted_text.yaml" not in files  # the screen check's text: no notebook reads it


def test_a_test_runners_pin_cannot_stale_a_record_but_a_numeric_librarys_can(tmp_path):
    """pytest-xdist only runs the tests: adding or moving its pin leaves the fingerprint; torch's moves it."""
    constraints = (recorded.paths.PROJECT_ROOT / "constraints.txt").read_text()
    pyproject = (recorded.paths.PROJECT_ROOT / "pyproject.toml").read_text()
    assert "pytest-xdist==" in constraints and '"pytest-xdist' in pyproject  # what make test runs with
    for name, text in (("constraints.txt", constraints), ("pyproject.toml", pyproject)):
        (tmp_path / name).write_text(text)
        base = recorded._content(tmp_path / name)
        (tmp_path / name).write_text(text.replace("pytest-xdist==3.8.0", "pytest-xdist==3.9.1")
                                     .replace('"pytest-xdist>=3.6,<4", ', ""))
        assert recorded._content(tmp_path / name) == base
        (tmp_path / name).write_text(text.replace("torch==2.13.0", "torch==2.14.1").replace('"torch', '"torch>=2.14,'))
        assert recorded._content(tmp_path / name) != base
