"""Notebooks show the science; the package holds the wiring (issue 27's measures, counted here).

Kind branches: a notebook asks what kind of model it runs only to explain or plot, at most
`MAX_KIND_BRANCHES` times in all. Functions: a notebook defines none but plotting helpers.
Code lines (non-blank, comments included): at most `MAX_CODE_LINES` in all.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KIND = re.compile(r"\bis_organism\b|\bexp\.kind\b|\.kind\s*[!=]=|\bkind\s+(not\s+)?in\s*\(|\bexp\.unit\s*[!=]=|\"world-lm\"|\"organism\"\s*[!=]=")
MAX_KIND_BRANCHES = 5
MAX_CODE_LINES = 1_249  # a third below the 1,873 measured when issue 27 was filed


def code_cells(nb: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]


def code_lines(cell: str) -> list[str]:
    return [line for line in cell.splitlines() if line.strip() and not line.strip().startswith("#")]


def kind_branches() -> list[str]:
    return [f"{nb.stem}: {line.strip()}" for nb in NOTEBOOKS for cell in code_cells(nb) for line in code_lines(cell)
            if KIND.search(line) and re.match(r"\s*(if|elif)\b|.*\bif\b.*\belse\b", line)]


def test_notebooks_branch_on_the_models_kind_a_handful_of_times():
    found = kind_branches()
    assert len(found) <= MAX_KIND_BRANCHES, "\n".join(found)


def test_the_kind_branch_counter_sees_a_branch():
    assert KIND.search('if exp.kind == "world-lm":') and KIND.search("if exp.is_organism:")
    assert KIND.search('if exp.unit == "organism_seed":') and not KIND.search("for kind in conditions:")


def test_notebooks_define_plotting_functions_only():
    defined = [f"{nb.stem}: {node.name}" for nb in NOTEBOOKS for cell in code_cells(nb)
               for node in ast.walk(ast.parse(cell)) if isinstance(node, ast.FunctionDef)
               and not (node.name.startswith(("show_", "plot_", "draw_")))]
    assert not defined, f"functions belong in emgeo_utils (a plotting helper is named show_/plot_/draw_): {defined}"


def test_notebook_code_does_not_grow():
    total = sum(1 for nb in NOTEBOOKS for cell in code_cells(nb) for line in cell.splitlines() if line.strip())
    assert total <= MAX_CODE_LINES, f"{total} code lines in the notebooks (at most {MAX_CODE_LINES})"
