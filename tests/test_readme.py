"""The README's promises are the ones the project keeps."""

import json
import re
from pathlib import Path

from emgeo_utils.report import estimates
from emgeo_utils.report import run_notebooks

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_two_commands_at_the_top_are_what_ci_runs():
    top = README[:README.index("## What is in it")]
    assert "make figures" in top and "make test" in top
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make figures" in ci


def test_estimates_table_is_computed_by_code():
    assert estimates.table() in README, "run `python -m emgeo_utils.report.estimates --write-readme`"


def test_every_notebook_and_figure_is_listed():
    for nb in run_notebooks.notebooks():
        assert f"`{nb.stem}`" in README
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        names = re.findall(r'save_figure\(fig,\s*"([^"]+)"', code)
        assert names, f"{nb.stem} saves no figure through nb.save_figure"
        for name in names:
            assert f"`{name}`" in README, f"{nb.stem} makes figure {name!r}: list it in the README"
