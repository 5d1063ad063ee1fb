"""The reviewer's report: every claim links to the cell that checked it, and a real browser finds
nothing broken (and does find a deleted image or a renamed anchor)."""

import json
import os
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from emgeo_utils.core import paths  # noqa: E402
from emgeo_utils.report import browser, page  # noqa: E402

ROOT = paths.PROJECT_ROOT
REQUIRED = os.environ.get("EMGEO_REQUIRE_BROWSER") == "1"  # CI sets it: there a missing browser fails


@pytest.fixture
def report(monkeypatch, tmp_path):
    """A finished run of one notebook: its claims record (checked in cell 2), its figure, its executed copy."""
    base = ROOT / "build" / "test-report" / tmp_path.name  # inside the project: notebooks print project-relative paths
    shutil.rmtree(base, ignore_errors=True)
    monkeypatch.setenv("EMGEO_FIGURES", str(base / "figures"))
    monkeypatch.setenv("EMGEO_BUILD", str(base / "build"))
    figures, executed = base / "figures", base / "build" / "default"
    (figures / "claims").mkdir(parents=True)
    executed.mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(figures / "theory_line.png")
    plt.close(fig)
    claim = {"notebook": "01_theory", "claim": "exact_identity", "kind": "sanity", "family": "exploratory",
             "expectation_set": "2026-11-27", "paper": "claim 1", "statement": "A step moves every readout",
             "measure": "max error", "value": 1e-15, "ci_low": None, "ci_high": None, "p_value": None, "outcome": True,
             "expected": True, "note": "", "predicts": "holds", "registered": "before", "smallest_p": None, "alpha": 0.05,
             "direction": 1, "null_value": 0.0, "cell": 2, "verdict": "sanity check passed (not evidence)", "as_expected": "as expected"}
    (figures / "claims" / "01_theory.json").write_text(json.dumps([claim]))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Theory", id="cell-000"),
                nbformat.v4.new_code_cell("x = 1", id="cell-001", execution_count=1, outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/plain": "bar", "application/vnd.jupyter.widget-view+json":
                                          {"model_id": "m1", "version_major": 2, "version_minor": 0}})]),
                nbformat.v4.new_code_cell("print('saved')", id="cell-002", execution_count=2,
                                          outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                          text=f"saved {paths.display_path(figures / 'theory_line.png')}\n")])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, executed / "01_theory.ipynb")
    index = page.build(["default"])
    yield index, figures, executed
    shutil.rmtree(base, ignore_errors=True)


def test_every_claim_links_to_the_cell_that_checked_it(report):
    index, figures, _ = report
    text = index.read_text()
    assert 'href="notebooks/default/01_theory.html#cell-id=cell-002"' in text
    assert 'id="cell-id=cell-002"' in (index.parent / "notebooks" / "default" / "01_theory.html").read_text()
    assert 'src="../theory_line.png"' in text and "sanity check passed" in text
    exported = (index.parent / "notebooks" / "default" / "01_theory.html").read_text()
    assert "cdnjs" not in exported and "unpkg" not in exported  # works offline: no remote script, no widget renderer
    assert "<th>commit</th>" in text


def _browser_or_skip():
    try:
        browser.find_browser()
    except browser.BrowserMissing as err:
        if REQUIRED:
            raise
        pytest.skip(str(err))


def test_browser_finds_nothing_broken_then_a_deleted_image_and_a_renamed_anchor(report):
    _browser_or_skip()
    index, figures, _ = report
    shot = ROOT / "build" / "report-test.png"
    assert browser.page_problems(index, shot) == []
    assert shot.is_file()
    exported = index.parent / "notebooks" / "default" / "01_theory.html"
    exported.write_text(exported.read_text().replace('id="cell-id=cell-002"', 'id="cell-id=renamed"'))
    assert browser.page_problems(index) == ["broken anchor: 01_theory.html#cell-id=cell-002"]
    (figures / "theory_line.png").unlink()
    assert "image did not load: ../theory_line.png" in browser.page_problems(index)


def test_jupyterlab_renders_an_executed_notebook(report):
    _browser_or_skip()
    _, _, executed = report
    assert browser.lab_problems(executed / "01_theory.ipynb", ROOT / "build" / "report-test-lab.png") == []
