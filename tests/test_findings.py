"""Findings in words are rendered from recorded claims: the README's paragraphs and each executed notebook's last cell."""

import json

import nbformat

from emgeo_utils.report import notebook_findings


def _rows():
    return [{"notebook": "03_geometry_tests", "claim": "persona_exceeds_control", "kind": "discriminating",
             "verdict": "supports the paper", "value": 0.28, "ci_low": 0.05, "ci_high": 0.51},
            {"notebook": "03_geometry_tests", "claim": "distinct_persona", "kind": "paper",
             "verdict": "NOT CONFIRMED: inconclusive (CI spans the null)", "value": 0.027, "ci_low": -0.057, "ci_high": 0.11}]


def test_a_notebooks_findings_say_its_verdicts_and_nothing_else():
    text = notebook_findings.notebook_findings(_rows())
    assert "0 of the paper's 1 rows here support it." in text
    assert "`persona_exceeds_control` supports the paper (0.28 [0.05, 0.51])" in text
    assert "`distinct_persona` NOT CONFIRMED (inconclusive) (0.027 [-0.057, 0.11])" in text
    assert text.index("Discriminating controls") < text.index("The paper's rows")


def test_the_findings_cell_is_appended_once_and_replaced_on_a_rerun(tmp_path):
    executed, claims = tmp_path / "03_geometry_tests.ipynb", tmp_path / "03_geometry_tests.json"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("nb.finish()")]), executed)
    claims.write_text(json.dumps(_rows()))
    assert notebook_findings.append_findings(executed, claims)
    rows = _rows()
    rows[1]["verdict"] = "supports the paper"
    claims.write_text(json.dumps(rows))
    assert notebook_findings.append_findings(executed, claims)
    cells = nbformat.read(executed, as_version=4).cells
    assert len(cells) == 2 and "1 of the paper's 1 rows here support it." in cells[-1].source
    assert not notebook_findings.append_findings(executed, tmp_path / "missing.json")


def test_the_findings_cell_has_an_id_where_the_format_wants_one(tmp_path):
    executed, claims = tmp_path / "03_geometry_tests.ipynb", tmp_path / "03_geometry_tests.json"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("nb.finish()")]), executed)
    claims.write_text(json.dumps(_rows()))
    notebook_findings.append_findings(executed, claims)
    nbformat.validate(nbformat.read(executed, as_version=4))  # raises on a cell without an id in nbformat 4.5
    assert nbformat.read(executed, as_version=4).cells[-1].id == "findings"
