"""The screen's measured AUCs, rendered into the README and docs/screening.md from `results/screen/planted.csv`
(written by `make check-screen`'s `--record`), never typed.

    python -m emgeo_utils.report.screening           # rewrite both blocks
    python -m emgeo_utils.report.screening --check   # exit 1 when either differs from a fresh rendering
"""

from __future__ import annotations

import sys

import pandas as pd

from emgeo_utils.filtering.validation import DEFAULT_METHOD, MIN_AUC, RECORD
from emgeo_utils.report import blocks

START, END = "<!-- screening:start -->", "<!-- screening:end -->"
FILES = ("README.md", "docs/screening.md")


def render_screening() -> str:
    if not RECORD.is_file():
        return f"{START}\nNo measurement recorded yet (`python -m emgeo_utils.filtering.planted --out build/screen-check --record`).\n{END}"
    frame = pd.read_csv(RECORD)
    first = frame.iloc[0]
    lines = [f"Measured by `make check-screen` on {first.model} ({first.date}): {int(first.n_rows)} hand-written chats, "
             f"{int(first.n_planted)} of them reckless (planted); {first.shared_pairs:.0%} of a row's word pairs occur in the "
             f"reference answers, against {first.shared_pairs_within_reference:.0%} for one half of the reference in the other. "
             f"The whole screen (`--method all`, loading included) took {first.screen_all_seconds:,.0f} s on a 2-core machine for "
             f"{int(first.n_rows)} rows. No real labelled set is measured: none could be fetched here.", "",
             "| method | AUC, planted rows | 95% CI | bar (CI at least 0.8 at its lower end) |", "|---|---|---|---|"]
    for r in frame.sort_values("auc", ascending=False).itertuples():
        name = f"`{r.method}`" + (" (default)" if r.method == DEFAULT_METHOD else "")
        lines.append(f"| {name} | {r.auc:.3f} | [{r.ci_low:.3f}, {r.ci_high:.3f}] | {'met' if r.ci_low >= MIN_AUC else 'not met'} |")
    return "\n".join([START, *lines, END])


def screening_block(text: str) -> str:
    return blocks.block(text, START, END, "the file")


def main(argv: list[str] | None = None) -> int:
    fresh = render_screening()
    return blocks.main_for("the screen's AUCs", "emgeo_utils.report.screening", [(n, START, END, fresh) for n in FILES], argv)


if __name__ == "__main__":
    sys.exit(main())
