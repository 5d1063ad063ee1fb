"""GPU memory and time *estimates* for the real-model profiles (nothing here was measured).

    python -m emgeo_utils.report.estimates                 # print the table
    python -m emgeo_utils.report.estimates --write-readme  # refresh it in docs/real-models.md

Memory: bf16 weights (2 bytes a parameter) + LoRA training overhead; for feature extraction, the
weights + the SAE in float32 (encoder and decoder) + the SAE step's temporaries, from the shapes
`features.activations` uses (one encode chunk of `ENCODE_BYTES`, its pooled copy, the pooled
outputs of every readout) + one residual batch.
Time: training costs 6 FLOPs per parameter per token, inference 2; both at an assumed 40% of an
A100's 312 bf16 TFLOP/s; plus the LLM judge: two calls (aligned, coherent) per sampled answer, the
answers counted from the profile's question file (its `samples_per_paraphrase`, times the
judge's `samples_scale`) when the file is present, else the first-plot set's 8 x 50, at an
assumed `JUDGE_CALLS_PER_S`. Token counts come from each profile's parameter files. Replace
these with measured numbers once a profile has run on a GPU.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from emgeo_utils.core import paths
from emgeo_utils.models import registry
from emgeo_utils.report.profiles import profile_parameters

EFFECTIVE_FLOPS = 0.4 * 312e12
TOKENS_PER_SAMPLE = 300        # a chat sample of the public EM datasets, prompt + answer
NEW_TOKENS_PER_ANSWER = 200
EVAL_ANSWERS = 8 * 50          # the EM "first plot" questions, 50 samples each
LORA_OVERHEAD = 1.3            # activations, LoRA weights and optimiser state over the bf16 weights
MARKERS = ("<!-- estimates:start -->", "<!-- estimates:end -->")


FILTERS = 5  # notebook 05: geometry, random, judge, persona vector, oracle
JUDGE_CALLS_PER_S = 10.0     # an assumption: a hosted judge at the default concurrency of 8
FEATURE_BATCH = 32           # `sae_features`' default batch (samples)


def answers_per_evaluation(params: dict) -> int:
    """Sampled answers per evaluation: from the profile's question file if it is here."""
    scale = params.get("judge", {}).get("samples_scale", 1.0)
    file = params.get("questions_file")
    if file and (paths.PROJECT_ROOT / file).is_file():
        from emgeo_utils.core.readers import read_questions_yaml

        questions = read_questions_yaml(paths.PROJECT_ROOT / file)
        return sum(len(q["paraphrases"]) * max(1, round(q.get("samples_per_paraphrase", 1) * scale)) for q in questions)
    return round(EVAL_ANSWERS * scale)


def feature_memory_gb(spec: dict, n: float, d_sae: int) -> float:
    """Weights, the float32 SAE, and the SAE step's temporaries at the shapes `sae_features` uses."""
    from emgeo_utils.features.activations import ENCODE_BYTES, READOUTS

    d = spec["hidden_size"]
    sae = 2 * d_sae * d * 4
    encode = 2 * ENCODE_BYTES  # one encoded chunk and the copy one readout pools from it
    pooled = len(READOUTS) * FEATURE_BATCH * d_sae * 4
    residual = FEATURE_BATCH * TOKENS_PER_SAMPLE * d * 4
    return (2 * n + sae + encode + pooled + residual) / 1e9


def estimate(name: str) -> dict:
    spec = registry.entry(name)
    n = spec["params_billion"] * 1e9
    d_sae = spec["sae"].get("d_sae", 16 * spec["hidden_size"])
    p00, p05 = profile_parameters("00_model_organism", name), profile_parameters("05_filtering", name)
    questions, questions_05 = answers_per_evaluation(p00), answers_per_evaluation(p05)
    # notebook 00: one epoch over the samples per condition and seed; judged at the end and at base
    finetunes = len(p00["conditions"]) * len(p00["finetune_seeds"])
    train_tokens = finetunes * p00["n_finetune_samples"] * TOKENS_PER_SAMPLE
    eval_tokens = (finetunes + 1) * questions * (NEW_TOKENS_PER_ANSWER + 100)
    # notebook 05, per fine-tuning seed: fixed steps (unfiltered + every filter at every fraction),
    # then fixed epochs (unfiltered + every filter at the main fraction, on fewer samples)
    step_samples = p05["steps"] * spec.get("finetune", {}).get("batch_size", 8)
    runs_05 = (1 + FILTERS * len(p05["fractions"]) + 1 + FILTERS) * len(p05["finetune_seeds"])
    samples_05 = step_samples * len(p05["finetune_seeds"]) * (
        1 + FILTERS * len(p05["fractions"]) + 1 + FILTERS * (1 - p05["main_fraction"]))
    hours = lambda flops: flops / EFFECTIVE_FLOPS / 3600
    calls_00, calls_05 = 2 * (finetunes + 1) * questions, 2 * runs_05 * questions_05
    judge_h = lambda calls: calls / JUDGE_CALLS_PER_S / 3600
    return {"model": name, "parameters": f"{spec['params_billion']:g}B",
            "GPU memory, fine-tune (GB, est.)": round(2 * n / 1e9 * LORA_OVERHEAD),
            "GPU memory, features (GB, est.)": round(feature_memory_gb(spec, n, d_sae)),
            "judge calls 00 + 05": f"{calls_00:,} + {calls_05:,}",
            "notebook 00 (h, est.)": round(hours(6 * n * train_tokens + 2 * n * eval_tokens) + judge_h(calls_00), 1),
            "notebook 05 (h, est.)": round(hours(6 * n * samples_05 * TOKENS_PER_SAMPLE
                                                 + 2 * n * runs_05 * questions_05 * (NEW_TOKENS_PER_ANSWER + 100))
                                           + judge_h(calls_05), 1)}


def table() -> str:
    rows = [estimate(name) for name, spec in registry.registry().items() if spec.get("kind") == "hub"]
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(["*Estimates from parameter counts and profile sample counts (`python -m emgeo_utils.report.estimates`), "
                      f"not measurements: A100-class GPU at 40% utilisation, bf16 weights, the SAE step's temporaries, and "
                      f"the LLM judge at {JUDGE_CALLS_PER_S:g} calls/s.*", ""] + lines)


def write_readme(readme: Path = paths.PROJECT_ROOT / "docs" / "real-models.md") -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    readme.write_text(pattern.sub(MARKERS[0] + "\n" + table() + "\n" + MARKERS[1], text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-readme", action="store_true")
    if parser.parse_args().write_readme:
        write_readme()
    print(table())


if __name__ == "__main__":
    main()
