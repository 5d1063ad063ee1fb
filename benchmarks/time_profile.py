"""Where a cold `make figures` spends its time: each notebook's wall time split by kind of work.

Nothing is run here. The latest complete run of each profile (build/notebook_times_history.csv)
gives every notebook's window; every cached job of that run (its cache entry's meta.json: the
function, its seconds and when it finished) is placed in the window it finished in and counted
under its kind of work. Jobs run in worker processes side by side, so a kind's summed job
seconds can exceed the wall time; `covered` is the share of the notebook's wall time during
which at least one of its jobs ran, and the rest ran in the notebook's kernel (nulls, bootstraps,
tables, plots) or waited. Which profile a job belongs to is read from its inputs: SmolLM2's jobs
name its GGUF, the organism's an organism artifact.

    python -m benchmarks time_profile
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd

from emgeo_utils.core import paths

from . import common

# Wrappers whose time is their children's (a fine-tune, then its evaluations): not counted twice.
WRAPPERS = {"finetune_and_evaluate_organism", "finetune_and_evaluate_world_lm", "finetune_and_evaluate_real"}
KINDS = {"pretrain": "pretraining", "train_sae": "SAE training", "train_residual_sae": "SAE training",
         "finetune_lora": "fine-tuning", "evaluate_organism_em": "EM evaluation", "evaluate": "EM evaluation",
         "in_context_probe": "EM evaluation", "organism_cut_em": "EM evaluation", "cut_em": "EM evaluation",
         "recipe_scores": "EM evaluation", "extract": "extraction", "card_data": "extraction",
         "token_activity": "extraction", "feature_changes": "extraction", "organism_evaluated_activity": "extraction",
         "world_lm_evaluated_activity": "extraction", "encode": "text embeddings", "train_toy": "toy models",
         "toy_spillover": "toy models"}
PROFILES = ("default", "smollm2-135m")


def jobs() -> pd.DataFrame:
    """Every cache entry's function, kind of work, profile, start and end."""
    rows = []
    for meta in paths.cache_dir().glob("*/*/meta.json"):
        m = json.loads(meta.read_text())
        name = m["function"].rsplit(".", 1)[-1]
        if name in WRAPPERS:
            continue
        end = datetime.fromisoformat(m["created"])
        real = "gguf" in json.dumps(m["inputs"]) or ".world_lm" in m["function"]
        rows.append({"function": name, "kind": KINDS.get(name, "other"), "profile": "smollm2-135m" if real else "default",
                     "seconds": m["seconds"], "end": end, "start": end - timedelta(seconds=m["seconds"])})
    return pd.DataFrame(rows)


def latest_complete(history: pd.DataFrame, profile: str) -> pd.DataFrame | None:
    runs = [r for _, r in history[history.profile == profile].groupby("run")
            if r.selection.iloc[0] == "all" and (r.status == "ok").all() and r.artifacts_built.sum() > 0]
    return runs[-1] if runs else None


def covered(intervals: list[tuple], start, end) -> float:
    """Seconds of [start, end] during which at least one interval ran."""
    total, at = 0.0, start
    for s, e in sorted(intervals):
        s, e = max(s, at), min(e, end)
        if e > s:
            total += (e - s).total_seconds()
            at = e
    return total


def profile_table(run: pd.DataFrame, done: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, nb in run.sort_values("finished").iterrows():
        end = datetime.fromisoformat(nb.finished)
        start = end - timedelta(seconds=float(nb.seconds))
        inside = done[(done.end > start) & (done.end <= end)]
        row = {"notebook": nb.notebook, "wall_s": float(nb.seconds), "jobs": len(inside),
               "covered": covered(list(zip(inside.start, inside.end)), start, end) / max(float(nb.seconds), 1e-9)}
        for kind, part in inside.groupby("kind"):
            row[f"{kind} (job s)"] = round(float(part.seconds.sum()), 1)
        rows.append(row)
    return pd.DataFrame(rows).fillna(0.0)


def run() -> list[common.Row]:
    history_file = paths.build_dir() / "notebook_times_history.csv"
    if not history_file.is_file():
        print(f"  no {paths.display_path(history_file)}: run make figures first")
        return [common.Row("6 time profile", "cold run recorded", None, "s", note="no history")]
    history, done = pd.read_csv(history_file), jobs()
    out = []
    for profile in PROFILES:
        run_rows = latest_complete(history, profile)
        if run_rows is None or done.empty:
            out.append(common.Row("6 time profile", f"{profile}: a run that built artifacts", None, "s",
                                  note="none recorded with its cache entries"))
            continue
        table = profile_table(run_rows, done[done.profile == profile])
        print(f"  {profile}, run {run_rows.run.iloc[0]} ({run_rows.seconds.sum():.0f} s of notebooks):")
        print("    " + table.round(2).to_string(index=False).replace("\n", "\n    "))
        for _, r in table.iterrows():
            out.append(common.Row("6 time profile", f"{profile} {r.notebook[:2]}: wall time with a job running",
                                  r.covered, "x", note=f"{r.wall_s:.0f} s wall, {int(r.jobs)} jobs"))
    return out
