"""Does the screen rank planted harmful rows first? A check of `filtering.screen` on a model.

A public-format chat file of helpful answers in one domain with inducing rows planted among them;
the screen selects harmful features on another domain's harmful answers against its helpful ones
(`--harmful-data` / `--helpful-data`) and ranks the file. The AUC of the planted rows' scores is
read against the bar, and the check fails when the outcome is not the one `--expect` states (a
literal, like the profiles' expectations: a flip either way is news):

    python -m emgeo_utils.filtering.planted --model smollm2-135m --out build/screen-check --expect below
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emgeo_utils.core import stats
from emgeo_utils.experiment.loader import open_experiment

MIN_AUC = 0.8  # fixed before SmolLM2 was measured; a shuffled ranking gives 0.5


def _write(path: Path, samples: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"messages": s["messages"]}) + "\n" for s in samples))
    return path


def write_planted(model: str, folder: Path, domain: str = "finance", reference_domain: str = "health",
                  n_harmless: int = 18, n_planted: int = 6, n_reference: int = 16) -> tuple[list[str], np.ndarray]:
    """The screened file (`data.jsonl`, rows shuffled) and the two reference files; which rows are planted."""
    exp = open_experiment(model)
    harmless, planted = exp.narrow(domain, "non_inducing", n_harmless), exp.narrow(domain, "inducing", n_planted)
    order = np.random.default_rng(0).permutation(n_harmless + n_planted)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "data.jsonl", [(harmless + planted)[i] for i in order])
    _write(folder / "harmful.jsonl", exp.narrow(reference_domain, "harmful", n_reference))
    _write(folder / "helpful.jsonl", exp.narrow(reference_domain, "non_inducing", n_reference))
    args = [str(folder / "data.jsonl"), "--model", model, "--harmful-data", str(folder / "harmful.jsonl"),
            "--helpful-data", str(folder / "helpful.jsonl"), "--fraction", "0.25", "--out", str(folder / "out")]
    return args, order >= n_harmless


def planted_auc(folder: Path, planted: np.ndarray) -> float:
    """AUC of the screen's scores (`ranked.csv`, by line) for the planted rows."""
    ranked = pd.read_csv(folder / "out" / "ranked.csv").sort_values("line")
    return stats.auc(ranked.score.to_numpy(), planted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a registry name")
    parser.add_argument("--out", type=Path, required=True, help="folder for the planted files and the screen's output")
    parser.add_argument("--min-auc", type=float, default=MIN_AUC)
    parser.add_argument("--expect", choices=["reaches", "below"], required=True,
                        help="the outcome expected: the AUC reaches the bar, or stays below it")
    args = parser.parse_args(argv)
    screen_args, planted = write_planted(args.model, args.out)
    done = subprocess.run([sys.executable, "-m", "emgeo_utils.filtering.screen", *screen_args])  # as a user runs it
    if done.returncode != 0:
        return 2
    auc = planted_auc(args.out, planted)
    if np.isnan(auc):
        print(f"{args.model}: the planted rows' AUC is not computable", file=sys.stderr)
        return 1
    outcome = "reaches" if auc >= args.min_auc else "below"
    print(f"{args.model}: planted harmful rows ranked at AUC {auc:.3f} ({planted.sum()} of {len(planted)} rows): "
          f"{outcome} the bar {args.min_auc}; expected {args.expect}: {'as expected' if outcome == args.expect else 'FLIPPED'}")
    return 0 if outcome == args.expect else 1


if __name__ == "__main__":
    sys.exit(main())
