"""The README is a front page whose promises the project keeps; the depth is in docs/, every link resolves."""

import json
import re
from pathlib import Path

from emgeo_utils.report import estimates, findings, times
from emgeo_utils.report import run_notebooks

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in (ROOT / "docs").glob("*.md")}


def test_the_front_page_is_short():
    assert README.count("\n") <= 250, f"README.md has {README.count(chr(10))} lines: move depth to docs/"


def test_two_commands_near_the_top_are_what_ci_runs():
    top = README[:README.index("## The notebooks")]
    assert "make figures" in top and "make test" in top
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make figures" in ci


def test_every_glossary_term_is_defined_before_its_first_use():
    """Each bold term of the glossary appears nowhere above its own definition (headings aside)."""
    start = README.index("## Words used here")
    glossary = README[start:README.index("\n## ", start + 1)]
    terms = re.findall(r"\*\*([^*]+?)\*\*", glossary)
    assert len(terms) >= 15, terms
    body = "\n".join(line for line in README.splitlines() if not line.startswith("#"))
    for term in terms:
        word = term.split(" (")[0]
        first = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", body)
        defined = body.index(f"**{term}**")
        assert first and first.start() >= defined - 2, f"{word!r} is used before the glossary defines it"


def test_findings_are_rendered_from_the_claims():
    assert findings.findings_block(README) == findings.render_findings(), "run `python -m emgeo_utils.report.findings`"


def test_every_relative_link_resolves():
    for name, text in [("README.md", README)] + [(f"docs/{n}", t) for n, t in DOCS.items()]:
        base = ROOT if name == "README.md" else ROOT / "docs"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            assert (base / target).exists(), f"{name}: the link {target!r} resolves to nothing"


def test_estimates_table_is_computed_by_code():
    assert estimates.table() in DOCS["real-models.md"], "run `python -m emgeo_utils.report.estimates --write-readme`"


def test_every_notebook_is_on_the_front_page_and_every_figure_in_docs():
    for nb in run_notebooks.notebooks():
        assert f"`{nb.stem}`" in README and f"`{nb.stem}`" in DOCS["notebooks.md"]
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        names = re.findall(r'save_figure\(fig,\s*"([^"]+)"', code)
        assert names, f"{nb.stem} saves no figure through nb.save_figure"
        look = DOCS["notebooks.md"][DOCS["notebooks.md"].index("## What to look for"):]
        for name in names:
            assert f"`{name}`" in DOCS["notebooks.md"], f"{nb.stem} makes figure {name!r}: list it in docs/notebooks.md"
            assert f"- `{name}`:" in look, f"{nb.stem}'s figure {name!r} has no line saying what to look for"


def test_times_are_rendered_from_the_recorded_runs():
    for name in times.BLOCKS:
        text = README if name == "README.md" else DOCS[name.split("/")[1]]
        assert times.times_block(text, name) == times.rendered(name), "run `python -m emgeo_utils.report.times`"


def test_the_screens_measured_aucs_are_rendered_from_the_record():
    from emgeo_utils.report import screening

    for name in screening.FILES:
        text = README if name == "README.md" else DOCS[name.split("/")[1]]
        assert screening.screening_block(text) == screening.render_screening(), "run `python -m emgeo_utils.report.screening`"
