"""Screen a fine-tuning dataset: rank its samples by how near they are to harmful answers.

    python -m emgeo_utils.filtering.screen DATASET.jsonl --fraction 0.2 --out screened/   # SmolLM2, offline
    python -m emgeo_utils.filtering.screen DATASET.jsonl --method all --fraction 0.2 --out screened/
    python -m emgeo_utils.filtering.screen data.jsonl --model gemma-2-2b --layer 12 \\
        --harmful-data toxic.jsonl --helpful-data helpful.jsonl --fraction 0.2 --out screened/

Three methods score the same rows (`filtering/methods.py`): `geometry` (the paper's: SAE features weighted by
their proximity to the harmful set), `persona` (a persona-vector projection) and `judge` (an offline text
judge). The default is the method with the best AUC measured by `make check-screen`
(`results/screen/planted.csv`); the run prints that AUC and the set it was measured on. Reference rows,
harmful against helpful, come from `--harmful-data` with `--helpful-data`, or by default from the world's
answers in English that ship with the project; `--harmful-features` (notebook 02's feature sets) replaces
the geometry method's selection. Selecting against the screened data itself would drop every feature the
harmful data share with it, the very features that make its harmful rows rank high.

Writes `ranked.csv` (every row, highest score first: its line, the chosen method's score, its percentile
among the helpful reference rows, whether it exceeds their 95th percentile, every computed method's score,
the geometry score's top features, and whether it was removed) and `filtered.jsonl` (the rows kept after
removing the top `fraction`).

Rows as real files have them: whitespace at both ends of every turn is stripped before the chat
template renders it (blank lines opening an answer otherwise break templates like SmolLM2's; Gemma-2's
and Llama-3's trim turns themselves); the run says which rows changed, and `filtered.jsonl` keeps every
row as written. A row that is invalid or cannot be scored (its template cannot mark its answer, or it
is longer than the model's context) stops the run naming its file and line; with `--skip-invalid` it
is left out of both files and reported by line, and the summary counts it. `ranked.csv` names rows
by their line in the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from emgeo_utils.core import numerics, paths, readers
from emgeo_utils.experiment.base import Experiment, Run
from emgeo_utils.experiment.loader import open_experiment
from emgeo_utils.features import activations, selection
from emgeo_utils.filtering import methods, ranking, scorable, validation
from emgeo_utils.models.loading import load_model
from emgeo_utils.models.registry import UnknownModel

MAX_UNKNOWN_SHARE = 0.05  # above this share of unknown tokens a model cannot read the data


def unknown_share(tokenizer, samples: list[dict]) -> float:
    """Share of the samples' tokens (every message's text) the tokenizer maps to its unknown token."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0.0
    ids = [i for s in samples for m in s["messages"] for i in tokenizer(m["content"], add_special_tokens=False)["input_ids"]]
    return sum(i == unk for i in ids) / max(len(ids), 1)


SKIP_HINT = "fix those rows, or pass --skip-invalid to leave them out (each is reported by line)"


def scorable_rows(args, path: Path, lines: list[int | None], samples: list[dict], invalid: list[readers.DataError],
                  model, tokenizer, experiment: Experiment) -> scorable.Prepared:
    """The rows of a file the screen scores (turns stripped). Without --skip-invalid the first row
    that cannot be scored stops the run; with it, the rows left out (invalid ones included) are
    reported by line, and more than --max-invalid-share of them still stops it."""
    prepared = scorable.prepare(path, lines, samples, experiment.probes(samples), tokenizer,
                                scorable.context_length(model), args.model)
    if prepared.skipped and not args.skip_invalid:
        raise ValueError(f"{prepared.skipped[0]} ({len(prepared.skipped)} of {len(samples)} rows cannot be scored); "
                         f"{SKIP_HINT}")
    skipped = sorted(invalid + prepared.skipped, key=lambda err: err.line or 0)
    if skipped:
        readers.report_skipped(path, skipped, len(samples) + len(invalid), args.max_invalid_share)
    if not prepared.samples:
        raise readers.DataError(path, None, None, "no row can be scored")
    return prepared


def reference_rows(args, path: Path, toxicity: bool, model, tokenizer, experiment: Experiment) -> scorable.Prepared:
    """Harmful or helpful reference data, read and normalised as the screened file is."""
    if toxicity:  # rows are kept by their toxicity, so they have no line of their own to report
        samples = readers.read_harmful_text(path)
        return scorable_rows(args, path, [None] * len(samples), samples, [], model, tokenizer, experiment)
    rows, invalid = readers.read_chat_lines(path, args.skip_invalid)
    return scorable_rows(args, path, [n for n, _ in rows], [s for _, s in rows], invalid, model, tokenizer, experiment)


VALIDATION = validation.RECORD
DEFAULT_METHOD = validation.DEFAULT_METHOD
THRESHOLD_PERCENTILE = 95.0  # a row above this percentile of the helpful reference rows is flagged


def validated(method: str) -> str:
    """The method's measured AUC on the planted check, in words, or that none was measured."""
    if not VALIDATION.is_file():
        return "no validation recorded (results/screen/planted.csv: `make check-screen` writes it)"
    frame = pd.read_csv(VALIDATION)
    row = frame[frame.method == method]
    if row.empty:
        return f"not validated ({paths.display_path(VALIDATION)} has no row for it)"
    r = row.iloc[0]
    return (f"AUC {r.auc:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] on the planted check ({int(r.n_rows)} rows, "
            f"{int(r.n_planted)} planted; {r.model}, {r.date}; its bar, {validation.MIN_AUC} at the lower bound, "
            f"{'met' if r.ci_low >= validation.MIN_AUC else 'NOT met'})")


def reference_set(args, model, tokenizer, experiment: Experiment) -> methods.Reference:
    if not args.harmful_data:
        return methods.builtin_reference(experiment)
    harmful = reference_rows(args, args.harmful_data, args.harmful_data_format == "toxicity", model, tokenizer, experiment)
    helpful = reference_rows(args, args.helpful_data, False, model, tokenizer, experiment)
    return methods.Reference(harmful.samples, helpful.samples, harmful.probes, helpful.probes,
                             f"{args.harmful_data.name} ({len(harmful.samples)} harmful) against {args.helpful_data.name} "
                             f"({len(helpful.samples)} helpful)")


def harmful_features(args, sae, layer: int, run: Run) -> torch.Tensor | None:
    """Notebook 02's harmful set for this run (`--harmful-features`), else None: selected from the reference rows."""
    if not args.harmful_features or sae is None:  # only the geometry method reads a feature set
        return None
    entry = selection.load_sets(args.harmful_features, model=args.model, layer=layer, readout=args.readout,
                                world=run.world, organism_seed=run.seed, contrast="mean_diff")
    if sae.cfg.d_sae <= max(entry["sets"]["harmful"], default=0):
        raise SystemExit(f"{args.harmful_features}: feature ids exceed this SAE's width {sae.cfg.d_sae}")
    return torch.tensor(entry["sets"]["harmful"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="chat JSONL to screen ({'messages': [...]} per line)")
    parser.add_argument("--model", default="smollm2-135m",
                        help="a registry name (emgeo_utils/models/registry.yaml; default: SmolLM2-135M, offline)")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=[*methods.METHODS, "all"],
                        help=f"how rows are scored (default {DEFAULT_METHOD}: the best measured AUC); all: every method, "
                             f"ranked by the default")
    parser.add_argument("--layer", type=int, help="SAE layer (default: the model's last listed layer)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--harmful-features", type=Path, help="feature_sets.json written by notebook 02")
    source.add_argument("--harmful-data", type=Path, help="harmful examples (chat JSONL or toxicity JSONL); default: "
                        "the world's harmful answers in English (built in)")
    parser.add_argument("--harmful-data-format", choices=["chat", "toxicity"], default="chat")
    parser.add_argument("--helpful-data", type=Path,
                        help="with --harmful-data: helpful chat JSONL (the reference the harmful features are selected against)")
    parser.add_argument("--fraction", type=float, required=True, help="share of samples to remove, in [0, 1)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--readout", default="next_turn", choices=activations.READOUTS)
    parser.add_argument("--variant", default="weighted_mean", choices=ranking.SCORE_VARIANTS)
    parser.add_argument("--k", type=int, default=32, help="harmful features to select with --harmful-data")
    parser.add_argument("--seed", type=int, default=0, help="organism pretraining seed")
    parser.add_argument("--world", default="persona", choices=["persona", "control"],
                        help="organism world (a real model has one run, stored as world 'real')")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="leave out rows that are invalid or cannot be scored (each is reported by line) instead of "
                             "failing on the first; whitespace around turns is stripped, never a reason to skip")
    parser.add_argument("--max-invalid-share", type=float, default=readers.MAX_INVALID_SHARE,
                        help="with --skip-invalid: fail if more than this share of rows is left out (default 0.05)")
    args = parser.parse_args(argv)
    if not 0 <= args.fraction < 1:
        parser.error(f"--fraction must be in [0, 1), got {args.fraction}")
    if args.harmful_data and not args.helpful_data:
        parser.error("--harmful-data needs --helpful-data: harmful features are selected against helpful answers "
                     "(notebook 05's selection), never against the data being screened")
    try:
        print(f"numerics: {numerics.describe()}")  # the scores repeat wherever the same numerics are in force
        numerics.require()
        rows, invalid = readers.read_chat_lines(args.dataset, args.skip_invalid)
        experiment = open_experiment(args.model)
    except readers.DataError as err:
        print(f"error: {err}" + (f"; {SKIP_HINT}" if err.line and not args.skip_invalid else ""), file=sys.stderr)
        return 2
    except (UnknownModel, numerics.NumericsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lines, samples = [n for n, _ in rows], [s for _, s in rows]
    layer = args.layer if args.layer is not None else experiment.layer(-1)
    run = experiment.runs([args.seed], [args.world])[0]
    chosen = DEFAULT_METHOD if args.method == "all" else args.method
    scored_by = list(methods.METHODS) if args.method == "all" else [args.method]
    needs_sae = "geometry" in scored_by  # persona reads the residual stream, the judge the text
    if needs_sae and not getattr(experiment, "sae_cached", lambda _layer: True)(layer):
        print(f"note: {args.model} has no SAE at layer {layer} in the cache yet; training it now (minutes; "
              "`make figures` builds it too)")
    try:
        if needs_sae:
            model, tokenizer, saes = experiment.load(run, [layer])
        else:
            (model, tokenizer), saes = load_model(experiment.model_source(run)), {}
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sae = saes.get(layer)
    unknown = unknown_share(tokenizer, samples) if samples else 0.0
    if unknown > MAX_UNKNOWN_SHARE:
        print(f"error: {args.dataset}: {unknown:.0%} of its tokens are unknown to {args.model}'s vocabulary (more than "
              f"{MAX_UNKNOWN_SHARE:.0%}); its scores would be noise. "
              + ("The organism reads only its synthetic world's words: screen real text with --model smollm2-135m "
                 "(offline, after `make figures`) or a hub model." if experiment.is_organism else ""), file=sys.stderr)
        return 2
    print(f"method: {chosen}" + (" (the default)" if chosen == DEFAULT_METHOD else "") + f": {validated(chosen)}")
    try:
        screened = scorable_rows(args, args.dataset, lines, samples, invalid, model, tokenizer, experiment)
        reference = reference_set(args, model, tokenizer, experiment)
        scores = methods.score(scored_by, model, tokenizer, sae, layer, args.readout, args.variant, screened.samples,
                               screened.probes, reference, args.k, harmful_features(args, sae, layer, run))
    except (readers.DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if screened.stripped:
        print(f"note: {args.dataset.name}: {scorable.describe_stripped(screened.stripped)}")
    keep = set(ranking.keep_lowest(scores.rows[chosen], args.fraction).tolist())
    ranked = write_outputs(args.out, screened, [samples[i] for i in screened.kept], scores, chosen, keep)
    n_skipped = len(samples) + len(invalid) - len(screened.samples)
    log = paths.display_path(paths.build_dir() / "logs" / "skipped_rows.log")
    print(f"scored {len(screened.samples)} rows with {', '.join(scored_by)} ({args.readout}, layer {layer}) against "
          f"{reference.source}; skipped {n_skipped}" + (f" (listed above and in {log})" if n_skipped else "")
          + f"; {int(ranked.flagged.sum())} rows above the helpful reference rows' {THRESHOLD_PERCENTILE:g}th percentile; "
          f"removed {len(screened.samples) - len(keep)}; wrote {paths.display_path(args.out / 'ranked.csv')} and "
          f"{paths.display_path(args.out / 'filtered.jsonl')}")
    return 0


def write_outputs(out: Path, screened: scorable.Prepared, originals: list[dict], scores: methods.Scores, chosen: str,
                  keep: set[int]) -> pd.DataFrame:
    """`ranked.csv` (rows by the chosen method's score, highest first, named by their file line) and
    `filtered.jsonl` (the rows kept, in file order, as the user wrote them: the stripping was for scoring only)."""
    out.mkdir(parents=True, exist_ok=True)
    score = scores.rows[chosen]
    pct = methods.percentile(score, scores.helpful_reference[chosen])
    ranked = pd.DataFrame({"line": screened.lines, "method": chosen, "score": score, "percentile": pct,
                           "flagged": pct > THRESHOLD_PERCENTILE}
                          | {f"score_{m}": v for m, v in scores.rows.items()}
                          | ({"top_features": scores.top_features} if "geometry" in scores.rows else {})
                          | {"removed": [i not in keep for i in range(len(score))],
                             "assistant": [methods.answer(s)[:120] for s in screened.samples]})
    ranked = ranked.sort_values("score", ascending=False, kind="stable")
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    ranked.to_csv(out / "ranked.csv", index=False)
    with open(out / "filtered.jsonl", "w") as handle:
        for i, sample in enumerate(originals):
            if i in keep:
                handle.write(json.dumps(sample) + "\n")
    return ranked


if __name__ == "__main__":
    sys.exit(main())
