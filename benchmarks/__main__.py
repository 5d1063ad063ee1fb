"""Run every benchmark, print the table, write benchmarks/results/bench.csv.

    python -m benchmarks                  # all items (about 3 minutes on 2 CPU cores)
    python -m benchmarks geometry         # some items, by module name
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; as `make` sets it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import emgeo_utils  # noqa: E402,F401  (first: it pins the numerics before numpy and torch load)

import csv  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from transformers.utils import logging as hf_logging  # noqa: E402

from .common import Row  # noqa: E402

MODULES = ["extraction", "geometry", "sampling", "finetuning", "smollm2", "numerics", "notebook_times", "time_profile", "unit_cost", "screening", "limits"]
RESULTS = Path(__file__).with_name("results") / "bench.csv"


def table(rows: list[Row]) -> str:
    cells = [("item", "measure", "ratio or time", "goal", "met")]
    cells += [(r.item, r.measure, r.value_text, r.goal_text, r.met) for r in rows]
    widths = [min(max(len(c[i]) for c in cells), 72) for i in range(5)]
    lines = ["  ".join(c[i][:widths[i]].ljust(widths[i]) for i in range(5)).rstrip() for c in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main(selected: list[str]) -> int:
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    unknown = set(selected) - set(MODULES)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; have {MODULES}")
    rows, failed, start = [], [], time.perf_counter()
    for name in selected or MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}: {module.__doc__.splitlines()[0]}", flush=True)
        item_start = time.perf_counter()
        try:
            rows += module.run()
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            failed.append(name)
            rows.append(Row(name, "benchmark failed (traceback above)", None, "x", note="error"))
        print(f"   ({time.perf_counter() - item_start:.0f} s)", flush=True)
    print(f"\nResults ({time.perf_counter() - start:.0f} s in all; ratios from CPU time, side by side in this run):\n")
    print(table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["item", "measure", "value", "unit", "goal", "met", "note"])
        out.writerows([r.item, r.measure, "" if r.value is None else f"{r.value:.4g}", r.unit, r.goal_text, r.met, r.note]
                      for r in rows)
    print(f"\n-> {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
