"""The times a reader sees, rendered from the recorded runs' notebook times, never typed.

    python -m emgeo_utils.report.times           # rewrite the times in README.md and docs/running.md
    python -m emgeo_utils.report.times --check   # exit 1 when either differs from a fresh rendering

A profile's whole run is recorded by `snapshot update --with-notebooks` (`results/<profile>/notebook_times.csv`,
beside the stamp of its commit): each notebook's wall time, how many cached results it computed (the rest it found),
and the CPU. `make figures` runs the CI profiles side by side, so each takes longer there than alone.
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from emgeo_utils.core import paths
from emgeo_utils.report import blocks
from emgeo_utils.report.findings import is_organism

BLOCKS = {"README.md": ("<!-- times:start -->", "<!-- times:end -->"),
          "docs/running.md": ("<!-- times-table:start -->", "<!-- times-table:end -->")}


def recorded_runs() -> list[dict]:
    """One entry per profile with recorded notebook times: its total, per-notebook seconds, CPU, date and commit."""
    out = []
    for file in sorted((paths.PROJECT_ROOT / "results").glob("*/notebook_times.csv")):
        frame, stamp = pd.read_csv(file), file.with_name("provenance.json")
        record = json.loads(stamp.read_text()) if stamp.is_file() else {}
        cpu = str(frame.numerics.iloc[0]).rsplit("CPU ", 1)[-1] if "numerics" in frame else "CPU not recorded"
        built = int(frame.artifacts_built.sum()) if "artifacts_built" in frame else None
        first = frame[frame.notebook.str.startswith("00_")]
        # an organism run whose 00 trained no organism found them in the cache: far shorter than a cold run
        warm_organisms = (is_organism(file.parent.name) and "organisms_trained" in frame and len(first) > 0
                          and int(first.organisms_trained.sum()) == 0)
        out.append({"profile": file.parent.name, "total": float(frame.seconds.sum()), "cpu": cpu, "built": built, "warm_organisms": warm_organisms,
                    "date": str(frame.finished.iloc[-1])[:10] if "finished" in frame else "", "commit": record.get("commit", "")[:7],
                    "notebooks": {r.notebook[:2]: float(r.seconds) for r in frame.itertuples()}})
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds:,.0f} s ({seconds / 60:.0f} min)"


def _built(r: dict) -> str:
    """How much of the run was computed: a run that found its jobs cached took less than a cold one."""
    if r["built"] is None:
        return "cached jobs not recorded"
    return f"{r['built']} cached results computed" + ("; its pretrained organisms came from the cache" if r["warm_organisms"] else "")


def times_summary() -> str:
    runs = recorded_runs()
    if not runs:
        return "No whole run is recorded yet (`snapshot update --with-notebooks <profile>`)."
    parts = [f"`{r['profile']}` {_minutes(r['total'])} ({_built(r)}; {r['cpu']}, {r['date']})" for r in runs]
    return ("Recorded whole runs on two cores: " + "; ".join(parts) + ". Per notebook: "
            "[docs/running.md](docs/running.md#recorded-times).")


def times_table() -> str:
    runs = recorded_runs()
    notebooks = sorted({n for r in runs for n in r["notebooks"]})
    lines = ["| profile | " + " | ".join(notebooks) + " | total | cached results computed | CPU | recorded | commit |",
             "|" + "---|" * (len(notebooks) + 6)]
    for r in runs:
        cells = [f"{r['notebooks'][n]:,.0f}" if n in r["notebooks"] else "-" for n in notebooks]
        lines.append(f"| `{r['profile']}` | " + " | ".join(cells) + f" | {r['total']:,.0f} | {'-' if r['built'] is None else str(r['built']) + (' (organisms cached)' if r['warm_organisms'] else '')} "
                     f"| {r['cpu']} | {r['date']} | {r['commit']} |")
    return "\n".join(["*Seconds per notebook, rendered by `python -m emgeo_utils.report.times` from "
                      "`results/<profile>/notebook_times.csv`.*", ""] + lines)


CI_BUDGET = paths.PROJECT_ROOT / ".ci" / "budget.csv"
CI_MINUTES = 75


def ci_budget_table() -> str:
    """Each CI stage's own budget (`.ci/budget.csv`, which `.ci/run` prints every stage's time against) and the room left."""
    frame = pd.read_csv(CI_BUDGET)
    total = CI_MINUTES * 60
    lines = ["| CI stage | its budget | share of 75 min | set from |", "|---|---|---|---|"]
    lines += [f"| {stage} | {seconds:,} s | {seconds / total:.0%} | {why} |"
              for stage, seconds, why in frame.itertuples(index=False, name=None)]
    room = total - int(frame.seconds.sum())
    lines.append(f"| **room left for new work** | {room:,} s | {room / total:.0%} | 75 minutes less the stages' budgets |")
    return "\n".join([f"*`.ci/run`'s stages and their budgets, rendered from `.ci/budget.csv`; `.ci/run` prints each stage's time, "
                      f"its share of the {CI_MINUTES} minutes (the hard limit is 90) and OVER IT when a stage passes its budget.*", ""] + lines)


def rendered(name: str) -> str:
    start, end = BLOCKS[name]
    body = times_summary() if name == "README.md" else times_table() + "\n\n" + ci_budget_table()
    return f"{start}\n{body}\n{end}"


def times_block(text: str, name: str) -> str:
    return blocks.block(text, *BLOCKS[name], name)


def main(argv: list[str] | None = None) -> int:
    return blocks.main_for("the times", "emgeo_utils.report.times", [(n, *BLOCKS[n], rendered(n)) for n in BLOCKS], argv)


if __name__ == "__main__":
    sys.exit(main())
