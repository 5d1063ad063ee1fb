"""`make figures` wall times, as `run_notebooks` records them (nothing is run here).

Reads figures/notebook_times.csv (the latest run) and build/notebook_times_history.csv (every
run, appended), splits the history into runs, and compares the latest complete runs of the
default profile (what `make figures` runs) with the goals: warm (every notebook built 0 cached
artifacts) <= 60 s in total, cold (notebook 00 trained the organisms, so everything downstream
was computed too) <= 20 minutes in total, on the 2-core CPU. A run counts only if it ran every notebook and all
succeeded; if none was recorded, the table says so rather than adding up partial runs.

Each history row carries the `run` it belongs to (the run's start time) and the `selection`
(`all` or the notebooks asked for), written by `run_notebooks`.
"""

from __future__ import annotations

import pandas as pd

from emgeo_utils.core import paths
from emgeo_utils.report.run_notebooks import notebooks

from . import common

PROFILE = "default"
GOALS = {"cold": 20 * 60.0, "warm": 60.0}


def split_runs(history: pd.DataFrame) -> list[pd.DataFrame]:
    """One frame per run; rows written before runs were labelled (no `run` value) are left out."""
    if "run" not in history:
        history = history.assign(run=pd.NA)
    unlabelled = history.run.isna().sum()
    if unlabelled:
        print(f"  {unlabelled} history rows carry no run label (written by an older version): left out")
    return [part for _, part in history.dropna(subset=["run"]).groupby("run", sort=True)]


def kind(run: pd.DataFrame) -> str:
    first = run[run.notebook.str.startswith("00_")]
    if (run.artifacts_built == 0).all():
        return "warm"
    return "cold" if len(first) and (first.organisms_trained > 0).all() else "mixed"


def describe(run: pd.DataFrame, every: set[str]) -> str:
    complete = set(run.notebook) == every
    failed = (run.status != "ok").sum()
    return (f"{run.finished.iloc[-1]} {run.profile.iloc[0]:>7} {kind(run):>5} {run.seconds.sum():7.1f} s "
            f"{'complete' if complete else 'partial: ' + ' '.join(n[:2] for n in run.notebook)}"
            + (f", {failed} failed" if failed else ""))


def run() -> list[common.Row]:
    common.setup(seed=0, threads=1)  # nothing random or threaded here; set for uniformity
    every = {nb.stem for nb in notebooks()}
    latest_file = paths.figures_dir(PROFILE) / "notebook_times.csv"
    history_file = paths.build_dir() / "notebook_times_history.csv"
    if latest_file.is_file():
        print(f"  latest run ({paths.display_path(latest_file)}): {describe(pd.read_csv(latest_file), every)}")
    else:
        print(f"  no {paths.display_path(latest_file)}: make figures has not finished a run here")
    runs = split_runs(pd.read_csv(history_file)) if history_file.is_file() else []
    print(f"  {len(runs)} runs in {paths.display_path(history_file)}; the last 8:")
    for r in runs[-8:]:
        print("    " + describe(r, every))
    rows = []
    for label, goal in GOALS.items():
        valid = [r for r in runs if r.profile.iloc[0] == PROFILE and set(r.notebook) == every
                 and (r.status == "ok").all() and kind(r) == label]
        value = float(valid[-1].seconds.sum()) if valid else None
        note = (f"latest of {len(valid)}, {valid[-1].finished.iloc[-1]}" if valid
                else f"no complete {label} run of profile {PROFILE} recorded")
        print(f"  {label}: " + (f"{value:.1f} s ({note})" if valid else note))
        rows.append(common.Row("5 make figures", f"{label} total, all {len(every)} notebooks", value, "s",
                               ("<=", goal), note=note, missing="none recorded"))
    return rows
