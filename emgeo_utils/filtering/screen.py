"""Screen a fine-tuning dataset: rank its samples by proximity to harmful SAE features.

    python -m emgeo_utils.filtering.screen DATASET.jsonl --model smollm2-135m \\
        --harmful-features figures/smollm2-135m/feature_sets.json --fraction 0.3 --out screened/
    python -m emgeo_utils.filtering.screen data.jsonl --model gemma-2-2b --layer 12 \\
        --harmful-data toxic.jsonl --helpful-data helpful.jsonl --fraction 0.2 --out screened/

Scores every chat sample with the geometry score of `filtering.ranking` (base model, the model's SAE),
writes `ranked.csv` (every sample, highest score first) and `filtered.jsonl` (the samples kept
after removing the top `fraction`). Harmful features come from notebook 02's
`figures/feature_sets.json` (`--harmful-features`) or are selected from a harmful dataset against
a helpful one (`--harmful-data` with `--helpful-data`: the top-k features by mean activation on
the harmful data minus on the helpful data, notebook 05's selection). Selecting against the
screened data itself would drop every feature the harmful data share with it, the very features
that make its harmful rows rank high.
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
from emgeo_utils.filtering import ranking
from emgeo_utils.models.registry import UnknownModel

MAX_UNKNOWN_SHARE = 0.05  # above this share of unknown tokens a model cannot read the data


def unknown_share(tokenizer, samples: list[dict]) -> float:
    """Share of the samples' tokens (every message's text) the tokenizer maps to its unknown token."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0.0
    ids = [i for s in samples for m in s["messages"] for i in tokenizer(m["content"], add_special_tokens=False)["input_ids"]]
    return sum(i == unk for i in ids) / max(len(ids), 1)


def harmful_set(args, model, tokenizer, sae, layer: int, samples: list[dict], experiment: Experiment,
                run: Run) -> torch.Tensor:
    if args.harmful_features:  # notebook 02's entry for this run: world persona/control (organism) or real
        entry = selection.load_sets(args.harmful_features, model=args.model, layer=layer, readout=args.readout,
                                    world=run.world, organism_seed=run.seed, contrast="mean_diff")
        if sae.cfg.d_sae <= max(entry["sets"]["harmful"], default=0):
            raise SystemExit(f"{args.harmful_features}: feature ids exceed this SAE's width {sae.cfg.d_sae}")
        return torch.tensor(entry["sets"]["harmful"])
    harmful = (readers.read_harmful_text(args.harmful_data) if args.harmful_data_format == "toxicity"
               else readers.read_chat_jsonl(args.harmful_data, args.skip_invalid, args.max_invalid_share))
    helpful = readers.read_chat_jsonl(args.helpful_data, args.skip_invalid, args.max_invalid_share)
    acts, reference = (activations.sae_features(model, tokenizer, sae, layer, data, experiment.probes(data),
                                                (args.readout,), desc=desc)[args.readout]
                       for data, desc in ((harmful, "harmful data"), (helpful, "helpful data")))
    return selection.select(acts, reference, args.k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="chat JSONL to screen ({'messages': [...]} per line)")
    parser.add_argument("--model", required=True, help="a registry name (see emgeo_utils/models/registry.yaml)")
    parser.add_argument("--layer", type=int, help="SAE layer (default: the model's last listed layer)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--harmful-features", type=Path, help="feature_sets.json written by notebook 02")
    source.add_argument("--harmful-data", type=Path, help="harmful examples (chat JSONL or toxicity JSONL)")
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
                        help="leave out invalid rows (each is reported) instead of failing on the first")
    parser.add_argument("--max-invalid-share", type=float, default=readers.MAX_INVALID_SHARE,
                        help="with --skip-invalid: fail if more than this share of rows is invalid (default 0.05)")
    args = parser.parse_args(argv)
    if not 0 <= args.fraction < 1:
        parser.error(f"--fraction must be in [0, 1), got {args.fraction}")
    if args.harmful_data and not args.helpful_data:
        parser.error("--harmful-data needs --helpful-data: harmful features are selected against helpful answers "
                     "(notebook 05's selection), never against the data being screened")
    try:
        print(f"numerics: {numerics.describe()}")  # the scores repeat wherever the same numerics are in force
        numerics.require()
        samples = readers.read_chat_jsonl(args.dataset, args.skip_invalid, args.max_invalid_share)
        experiment = open_experiment(args.model)
    except (readers.DataError, UnknownModel, numerics.NumericsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    layer = args.layer if args.layer is not None else experiment.layer(-1)
    run = experiment.runs([args.seed], [args.world])[0]
    if not getattr(experiment, "sae_cached", lambda _layer: True)(layer):
        print(f"note: {args.model} has no SAE at layer {layer} in the cache yet; training it now (minutes; "
              "`make figures` builds it too)")
    try:
        model, tokenizer, saes = experiment.load(run, [layer])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sae = saes[layer]
    unknown = unknown_share(tokenizer, samples)
    if unknown > MAX_UNKNOWN_SHARE:
        print(f"error: {args.dataset}: {unknown:.0%} of its tokens are unknown to {args.model}'s vocabulary (more than "
              f"{MAX_UNKNOWN_SHARE:.0%}); its scores would be noise. "
              + ("The organism reads only its synthetic world's words: screen real text with --model smollm2-135m "
                 "(offline, after `make figures`) or a hub model." if experiment.is_organism else ""), file=sys.stderr)
        return 2
    try:
        harmful = harmful_set(args, model, tokenizer, sae, layer, samples, experiment, run)
    except (readers.DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    acts = activations.sae_features(model, tokenizer, sae, layer, samples, experiment.probes(samples),
                                 (args.readout,), desc="scoring")[args.readout]
    scores = ranking.geometry_scores(acts, ranking.feature_proximity(sae.W_dec.detach(), harmful), args.variant)
    keep = set(ranking.keep_lowest(scores, args.fraction).tolist())
    args.out.mkdir(parents=True, exist_ok=True)
    ranked = pd.DataFrame({"line": range(1, len(samples) + 1), "score": scores,
                           "removed": [i not in keep for i in range(len(samples))],
                           "assistant": [next(m["content"] for m in reversed(s["messages"]) if m["role"] == "assistant")[:120]
                                         for s in samples]}).sort_values("score", ascending=False, kind="stable")
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    ranked.to_csv(args.out / "ranked.csv", index=False)
    with open(args.out / "filtered.jsonl", "w") as handle:
        for i, s in enumerate(samples):
            if i in keep:
                handle.write(json.dumps(s) + "\n")
    print(f"scored {len(samples)} samples against {len(harmful)} harmful features ({args.readout}, layer {layer}); "
          f"removed {len(samples) - len(keep)}; wrote {paths.display_path(args.out / 'ranked.csv')} and "
          f"{paths.display_path(args.out / 'filtered.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
