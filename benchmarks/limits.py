"""Each kind of work a cold `make figures` spends its time on, against the rate its shapes allow on one core.

The limit is the bare matrix product: one thread's float32 GEMM rate, timed side by side with each job's
own step in the same rounds. Every step's floating-point operations are counted by torch's own
`FlopCounterMode` (the matrix products it sees: forward, backward and the optimiser's are all counted
when they are matmuls), so the ratio `achieved FLOP/s / GEMM FLOP/s` says how far the job sits from
what its arithmetic needs. Near 1: only doing less work can make it faster. Far below 1: Python,
small shapes or memory traffic dominate, and a faster path may exist.

Kinds measured here, with their jobs' own code: the organism's pretraining step (`organism.pretraining`,
answer-only loss, AdamW), its SAE training (`features.sae_training.fit_topk_sae`, sae-lens's trainer, the
organism's shape and SmolLM2's), its EM sampling (`models.generation.sample_answers`, KV cache). SmolLM2's
forward, extraction, fine-tuning and candidate scoring are the `smollm2` item's rows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from emgeo_utils.features.sae_training import fit_topk_sae
from emgeo_utils.models.generation import sample_answers
from emgeo_utils.organism import pretraining as organism
from emgeo_utils.organism.evaluate import eval_questions
from emgeo_utils.organism.eval_config import EvalConfig

from . import common

GEMM = 512  # a square float32 product big enough to run at one core's matmul rate


def flops(step) -> int:
    """Floating-point operations of one call of `step`, as torch counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def gemm_step():
    a, b = torch.randn(GEMM, GEMM), torch.randn(GEMM, GEMM)
    return lambda: [torch.mm(a, b) for _ in range(20)]


def pretraining_step(w):
    """`organism.pretrain`'s loop body on 4 batches of 32 real documents (the default config). A copy of its six
    lines: sharing them would change pretraining.py, whose code hash keys every cached organism."""
    tok = common.tokenizer(w)
    model = organism.make_model(tok, organism.ArchConfig()).train()
    docs = organism.encode_documents(tok, w, 128, seed=0, max_len=organism.ArchConfig().max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assistant_id, end_id = tok.convert_tokens_to_ids([organism.ASSISTANT, organism.END])
    batches = [organism.pad_batch(docs[i:i + 32], tok.pad_token_id) for i in range(0, 128, 32)]

    def step():
        for ids, labels in batches:
            loss = organism.answer_loss(model, ids, labels, organism.answer_mask(ids, assistant_id, end_id))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return step


def sae_step(d_in: int, expansion: int, k: int, samples: int = 40 * 1024):
    """`fit_topk_sae` (sae-lens's trainer) on random activations: 40 steps of 1,024, with its setup."""
    acts = torch.randn(4 * 1024, d_in)

    def step():
        with tempfile.TemporaryDirectory(prefix="emgeo-bench-sae-") as out:  # the saved SAE is not read here
            fit_topk_sae(acts, expansion=expansion, k=k, training_samples=samples, batch_size=1024, lr=1e-3,
                         hook_name="blocks.0.hook_resid_post", model_name="bench", seed=0, out=Path(out))
    return step


def sampling_step(w):
    """`sample_answers` as the organism's EM evaluation calls it: every eval question, 8 answers, 24 tokens."""
    tok = common.tokenizer(w)
    model = common.gpt2(tok, organism.ArchConfig())
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids([organism.END, organism.EOS])
    config = EvalConfig()
    questions = [q.text for q in eval_questions(w, config)]
    return lambda: torch.no_grad()(sample_answers)(model, tok, questions, config.samples_per_question,
                                                     config.max_new_tokens, 0, config.batch_size)


def run() -> list[common.Row]:
    common.setup(seed=0, threads=1)
    w = common.world()
    steps = {"bare GEMM": gemm_step(), "pretraining (organism)": pretraining_step(w),
             "SAE training (organism 64x512, k 8)": sae_step(64, 8, 8),
             "SAE training (SmolLM2 576x4608, k 32)": sae_step(576, 8, 32),
             "EM sampling (organism)": sampling_step(w)}
    counted = {name: flops(step) for name, step in steps.items()}
    best, _ = common.side_by_side(steps, rounds=2)
    rate = {name: counted[name] / best[name] for name in steps}
    limit = rate.pop("bare GEMM")
    print(f"  [1 thread] bare {GEMM}x{GEMM} float32 GEMM: {limit / 1e9:.1f} GFLOP/s (CPU time)")
    for name, r in rate.items():
        print(f"  {name}: {counted[name] / 1e9:.2f} GFLOP in {best[name]:.2f} s -> {r / 1e9:.2f} GFLOP/s, "
              f"{r / limit:.2f}x the GEMM rate")
    return [common.Row("8 limits", f"{name}: FLOP/s / one core's GEMM FLOP/s", float(np.round(r / limit, 4)), "x",
                       note=f"{r / 1e9:.2f} of {limit / 1e9:.1f} GFLOP/s") for name, r in rate.items()]
