"""An executed notebook's last cell: what its claims found, in words, written by the runner from the claims the
run recorded (and by `snapshot update --with-notebooks` for a recorded run), never typed. The README's findings
(`findings.py`) use the same words."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from emgeo_utils.claims import verdicts
from emgeo_utils.claims.record import fmt


def short_verdict(verdict: str) -> str:
    """A verdict's first words: its class, with NOT CONFIRMED kept in front."""
    text = str(verdict)
    head = verdicts.verdict_class(text)
    return f"NOT CONFIRMED ({head})" if text.startswith(verdicts.NOT_CONFIRMED) else head


def row_in_words(r: dict) -> str:
    value = fmt(r.get("value")) or "NaN"
    if not pd.isna(r.get("ci_low")) and not pd.isna(r.get("ci_high")):
        value += f" [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
    return f"`{r['claim']}` {short_verdict(r['verdict'])} ({value})"


KIND_WORDS = (("discriminating", "Discriminating controls (they separate EM from the data's content)"),
              ("paper", "The paper's rows"), ("criterion", "Our criteria"), ("negative_control", "Negative controls"),
              ("finding", "Beyond the paper"), ("sanity", "Sanity checks"))


def rows_by_kind(rows: list[dict]) -> list[tuple[str, str]]:
    """(the kind's words, its rows in words) for each kind present, discriminating controls first."""
    return [(words, "; ".join(row_in_words(r) for r in rows if r["kind"] == kind)) for kind, words in KIND_WORDS
            if any(r["kind"] == kind for r in rows)]


FINDINGS_TAG = "findings"


def notebook_findings(rows: list[dict]) -> str:
    """An executed notebook's last cell: what its claims found, in words, from the claims it recorded."""
    support = sum(verdicts.verdict_class(str(r["verdict"])) == "supports the paper" for r in rows if r["kind"] == "paper")
    paper = sum(r["kind"] == "paper" for r in rows)
    lines = ["## What this notebook found", "",
             "*Written by the runner from the claims this run recorded (`emgeo_utils/report/notebook_findings.py`), not typed: "
             "each claim's verdict and its value with its 95% CI.*", ""]
    if not rows:
        return "\n".join(lines + ["This run recorded no claims."])
    lines += [f"{support} of the paper's {paper} rows here support it." if paper else "No row here tests the paper's own claims.", ""]
    lines += [f"- **{words}**: {said}." for words, said in rows_by_kind(rows)]
    return "\n".join(lines)


def append_findings(executed: Path, claims_json: Path) -> bool:
    """Add (or replace) the findings cell at the end of an executed notebook; False when it recorded no claims file."""
    if not claims_json.is_file() or not executed.is_file():
        return False
    notebook = json.loads(executed.read_text())
    cells = [c for c in notebook["cells"] if FINDINGS_TAG not in c.get("metadata", {}).get("tags", [])]
    text = notebook_findings(json.loads(claims_json.read_text()))
    cell = {"cell_type": "markdown", "metadata": {"tags": [FINDINGS_TAG]}, "source": text.splitlines(keepends=True)}
    if notebook.get("nbformat_minor", 0) >= 5:  # nbformat 4.5 on: every cell has an id
        cell = {"id": FINDINGS_TAG} | cell
    cells.append(cell)
    notebook["cells"] = cells
    executed.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return True
