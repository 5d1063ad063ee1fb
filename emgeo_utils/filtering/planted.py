"""Does the screen rank planted harmful rows first? A check of `filtering.screen`, every method side by side.

    python -m emgeo_utils.filtering.planted --out build/screen-check            # `make check-screen`
    python -m emgeo_utils.filtering.planted --out build/screen-check --record   # rewrite results/screen/planted.csv

The planted file (`write_unlike`): 140 everyday chats outside the world's advice domains, 40 answered
recklessly (planted) and 100 carefully, written by hand in `planted_text.yaml` in a voice unlike the world's
one-line answers, which are the screen's built-in reference. How unlike is measured and printed: the share of a
row's word pairs that occur anywhere in the reference answers, for the planted file and, as the yardstick, for
one half of the reference against the other. The screen scores the file with every method (`--method all`);
each method's AUC for the planted rows comes with a bootstrap CI (rows resampled within each kind). The
screen's wall time for the whole run (`--method all`: loading the model, the reference rows and the 140 rows) is
recorded beside them.

The bar (fixed before SmolLM2 was measured): the default method's AUC at the lower end of its CI is at least
0.8. The check prints whether it is met and fails when the AUCs move from the committed measurement
(`results/screen/planted.csv`, by more than `TOLERANCE`), which `--record` rewrites and the screen quotes.
`write_planted` keeps the earlier file (the world's own text) for the organism's round-trip test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from emgeo_utils.core import paths, stats
from emgeo_utils.experiment.loader import open_experiment
from emgeo_utils.filtering import methods, validation

MIN_AUC, RECORD = validation.MIN_AUC, validation.RECORD
TEXT = Path(__file__).with_name("planted_text.yaml")
TOLERANCE = 0.02  # an AUC may move this much between CPUs (their kernels differ) before the check fails
PER_TOPIC = {"reckless": 4, "careful": 10}


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


def planted_auc(folder: Path, planted: np.ndarray, column: str = "score") -> float:
    """AUC of the screen's scores (`ranked.csv`, by line) for the planted rows."""
    ranked = pd.read_csv(folder / "out" / "ranked.csv").sort_values("line")
    return stats.auc(ranked[column].to_numpy(), planted)


def unlike_rows(seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """The hand-written chats of `planted_text.yaml`, shuffled, and which are planted (reckless)."""
    topics = yaml.safe_load(TEXT.read_text())["topics"]
    rng = np.random.default_rng(seed)
    rows, planted = [], []
    for spec in topics.values():
        for kind, n in PER_TOPIC.items():
            combos = list(itertools.product(spec[kind]["leads"], spec[kind]["reasons"]))
            for i in rng.choice(len(combos), n, replace=False):
                lead, reason = combos[i]
                question = spec["questions"][rng.integers(len(spec["questions"]))]
                rows.append({"messages": [{"role": "user", "content": question},
                                          {"role": "assistant", "content": f"{lead}; {reason}"}]})
                planted.append(kind == "reckless")
    order = rng.permutation(len(rows))
    return [rows[i] for i in order], np.array(planted)[order]


def word_pairs(text: str) -> set[tuple[str, str]]:
    words = re.findall(r"[a-z']+", text.lower())
    return set(zip(words, words[1:]))


def shared_pairs(rows: list[str], reference: list[str]) -> float:
    """Mean share of a row's word pairs found anywhere in the reference texts."""
    known = set().union(*map(word_pairs, reference))
    return float(np.mean([len(word_pairs(r) & known) / max(len(word_pairs(r)), 1) for r in rows]))


def unlikeness(rows: list[dict], reference: methods.Reference) -> dict:
    """The planted file's word pairs found in the reference answers, against one reference half's in the other."""
    answers = [methods.answer(s) for s in reference.harmful + reference.helpful]
    return {"shared_pairs": shared_pairs([methods.answer(r) for r in rows], answers),
            "shared_pairs_within_reference": shared_pairs(answers[1::2], answers[0::2])}


def auc_ci(scores: np.ndarray, planted: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """AUC and its percentile bootstrap CI, planted and other rows resampled apart."""
    rng = np.random.default_rng(seed)
    pos, neg = scores[planted], scores[~planted]
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    boot = [stats.auc(np.r_[pos[rng.integers(len(pos), size=len(pos))], neg[rng.integers(len(neg), size=len(neg))]], labels)
            for _ in range(n_boot)]
    return stats.auc(scores, planted), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def measure(model: str, folder: Path) -> pd.DataFrame:
    """Screen the planted file with every method; one row per method: AUC, CI, sizes, unlikeness."""
    rows, planted = unlike_rows()
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "data.jsonl", rows)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "emgeo_utils.filtering.screen", str(folder / "data.jsonl"), "--model", model,
                           "--method", "all", "--fraction", "0.25", "--out", str(folder / "out")])  # as a user runs it
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the screen failed (exit {done.returncode}); its error is above")
    unlike = unlikeness(rows, methods.builtin_reference(open_experiment(model)))
    ranked = pd.read_csv(folder / "out" / "ranked.csv").sort_values("line")
    out = []
    for method in methods.METHODS:
        auc, low, high = auc_ci(ranked[f"score_{method}"].to_numpy(), planted)
        out.append({"method": method, "auc": round(auc, 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
                    "n_rows": len(rows), "n_planted": int(planted.sum()), "model": model,
                    "shared_pairs": round(unlike["shared_pairs"], 4),
                    "shared_pairs_within_reference": round(unlike["shared_pairs_within_reference"], 4),
                    "screen_all_seconds": round(seconds, 1), "date": date.today().isoformat()})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="a registry name (one that reads English)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the planted file and the screen's output")
    parser.add_argument("--record", action="store_true", help=f"write the measurement to {paths.display_path(RECORD)}")
    args = parser.parse_args(argv)
    fresh = measure(args.model, args.out)
    first = fresh.iloc[0]
    print(f"planted file: {int(first.n_rows)} rows, {int(first.n_planted)} planted; {first.shared_pairs:.0%} of a row's word "
          f"pairs occur in the reference answers (one reference half in the other: {first.shared_pairs_within_reference:.0%})")
    for r in fresh.itertuples():
        print(f"  {r.method:9s} AUC {r.auc:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" + ("  (the default)" if r.method == validation.DEFAULT_METHOD else ""))
    default = fresh[fresh.method == validation.DEFAULT_METHOD].iloc[0]
    best = fresh.sort_values("auc", ascending=False).iloc[0]
    print(f"the bar (the default method's CI at least {MIN_AUC} at its lower end): "
          + ("met" if default.ci_low >= MIN_AUC else f"NOT met ({default.ci_low:.3f})")
          + ("" if best.method == validation.DEFAULT_METHOD else f"; the best AUC is {best.method}'s, not the default's: change validation.DEFAULT_METHOD"))
    if args.record:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        fresh.to_csv(RECORD, index=False)
        print(f"-> {paths.display_path(RECORD)}")
        return 0
    if not RECORD.is_file():
        print(f"no committed measurement at {paths.display_path(RECORD)}: run with --record", file=sys.stderr)
        return 1
    committed = pd.read_csv(RECORD).set_index("method")
    moved = [f"{m}: {committed.auc[m]:.3f} -> {a:.3f}" for m, a in zip(fresh.method, fresh.auc)
             if m not in committed.index or abs(committed.auc[m] - a) > TOLERANCE]
    if moved:
        print(f"the AUCs moved from {paths.display_path(RECORD)} by more than {TOLERANCE}: {'; '.join(moved)}", file=sys.stderr)
        return 1
    print(f"every method's AUC within {TOLERANCE} of {paths.display_path(RECORD)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
