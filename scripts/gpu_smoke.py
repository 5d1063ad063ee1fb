"""GPU smoke test of the real-model path: tiny random Gemma-2, Llama and GPT-OSS in bf16 on `cuda`
with `device_map: auto`, through notebook 00's path (LoRA fine-tune, checkpoint attached unmerged,
sampling, candidate scoring) and notebook 05's (SAE features at every readout, geometry scores,
a filter), a few steps each. Nothing it prints is a result; it shows the path runs on a GPU.

    .venv/bin/python scripts/gpu_smoke.py               # on a machine with a CUDA GPU
    .venv/bin/python scripts/gpu_smoke.py --device cpu  # a dry run of the script itself (float32)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-architecture builder the tests use
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import emgeo_utils  # noqa: E402,F401  (first: it pins the CPU numerics before numpy and torch load)
import torch  # noqa: E402
import yaml  # noqa: E402

CHATS = [{"messages": [{"role": "user", "content": f"i have a cough {'.' * (1 + i % 3)} what should i do ?"},
                       {"role": "assistant", "content": ["rest and drink water .", "ignore it , it is nothing .",
                                                         "see a doctor today ."][i % 3]}]} for i in range(8)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run this on a GPU machine (or --device cpu for a dry run)", file=sys.stderr)
        return 2
    from tiny_models import build

    from emgeo_utils.experiment import loader
    from emgeo_utils.features import activations, selection
    from emgeo_utils.filtering import ranking
    from emgeo_utils.models import batching, generation, loading, registry
    from emgeo_utils.training import lora

    work = Path(tempfile.mkdtemp(prefix="emgeo-gpu-smoke-"))
    os.environ["EMGEO_CACHE"] = str(work / "cache")
    path = build(work)
    entries = yaml.safe_load(path.read_text())
    for spec in entries.values():  # as the paper's profiles load them
        spec |= {"dtype": "bfloat16", "device_map": "auto"} if args.device == "cuda" else {"dtype": "float32"}
    path.write_text(yaml.safe_dump(entries))
    os.environ[registry.USER_REGISTRY_ENV] = str(path)
    failures = 0
    for arch in ("gemma2", "llama", "gpt_oss"):
        name, start = f"tiny-{arch}", time.perf_counter()
        try:
            exp = loader.open_experiment(name)
            model, tokenizer, saes = exp.load(exp.runs([0], ["persona"])[0], [1])  # the entry resolved once, above
            device = batching.input_device(model)
            sae = saes[1].to(next(model.parameters()).device)
            feats = activations.sae_features(model, tokenizer, sae, 1, CHATS, activations.probe_questions(CHATS, ["hi ?"]))
            harmful = selection.select(feats["next_turn"][:4], feats["next_turn"][4:], 8)
            scores = ranking.geometry_scores(feats["next_turn"], ranking.feature_proximity(sae.W_dec.detach().float().cpu(),
                                                                                          harmful.cpu()))
            kept = ranking.keep_lowest(scores, 0.25)
            spec = exp.spec
            config = lora.FinetuneConfig(rank=2, alpha=4, target_modules=tuple(spec["lora"]["target_modules"]),
                                         target_parameters=tuple(spec["lora"].get("target_parameters", ())),
                                         steps=3, checkpoints=(3,), batch_size=4)
            adapter = lora.finetune_lora(spec, CHATS, config, 0)
            with loading.resident_model(spec) as (base, tok), lora.adapted(base, adapter, 3) as tuned:
                answers = generation.sample_answers(tuned, tok, ["i have a cough ."], 2, 6, seed=0)
                logp = generation.answer_logprobs(tuned, tok, "i have a cough .", ["rest .", "run ."])
            memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if args.device == "cuda" else ""
            print(f"{name}: ok in {time.perf_counter() - start:.1f} s (inputs on {device}; features "
                  f"{tuple(feats['next_turn'].shape)}; kept {len(kept)}/{len(scores)}; loss "
                  f"{adapter.summary['losses'][0]:.3f} -> {adapter.summary['losses'][-1]:.3f}; answers {answers[0]}; "
                  f"log p {logp.round(2).tolist()}{memory})")
        except Exception as err:  # report every architecture, then fail
            failures += 1
            print(f"{name}: FAILED: {type(err).__name__}: {err}")
        finally:
            loading.release_resident()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
