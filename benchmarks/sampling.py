"""Evaluation sampling: `evaluate.sample_answers` batched (prompts of equal length share a batch,
KV cache) against one prompt at a time (the same function with batch_size=1: the same answers
count, max_new_tokens and KV cache, one row per forward).

One-at-a-time is what a plain generation loop does; the speedup is the point of batching.
What limits it: every generation step is a separate forward of a batch whose size is the number
of prompts of one token length (the length buckets split the work), and a batch keeps stepping
until its last answer ends. The organism's questions and answer budget (EvalConfig defaults:
all held-out questions, 24 new tokens), half the samples per question to keep it short, on a
random organism-shaped GPT-2 (answers then rarely stop early, on both sides alike). Also
reported: the same number of answers when all prompts share one length (one bucket), which
bounds what padding the prompts into one batch could gain.
"""

from __future__ import annotations

import torch

from emgeo_utils.models import generation
from emgeo_utils.organism import evaluate
from emgeo_utils.organism.eval_config import EvalConfig

from . import common

SAMPLES_PER_QUESTION = 4
ROUNDS = 2


@torch.no_grad()
def run() -> list[common.Row]:
    common.setup(seed=0, threads=1)
    w = common.world()
    tok = common.tokenizer(w)
    model = common.gpt2(tok, common.SHAPES["organism d64x2"])
    config = EvalConfig()
    questions = [q.text for q in evaluate.eval_questions(w, config)]
    lengths = {len(generation.prompt_ids(tok, q)) for q in questions}

    def sample(batch_size: int):
        return lambda: generation.sample_answers(model, tok, questions, SAMPLES_PER_QUESTION, config.max_new_tokens,
                                               seed=0, batch_size=batch_size)

    def one_bucket():  # as many answers, all prompts of one length: what a single padded batch could reach
        generation.sample_answers(model, tok, questions[:1] * len(questions), SAMPLES_PER_QUESTION,
                                config.max_new_tokens, seed=0, batch_size=config.batch_size)

    paths = {"batched": sample(config.batch_size), "one at a time": sample(1), "one length bucket": one_bucket}
    best, _ = common.side_by_side(paths, ROUNDS)
    n = len(questions) * SAMPLES_PER_QUESTION
    print(f"  [organism d64x2, 1 thread] {n} answers of <= {config.max_new_tokens} tokens to {len(questions)} questions "
          f"in {len(lengths)} prompt-length buckets, CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in best.items()))
    return [common.Row("3 sampling", f"sample_answers batched / one-at-a-time speedup [{n} answers]",
                       best["one at a time"] / best["batched"], "x", note=f"{len(lengths)} length buckets"),
            common.Row("3 sampling", f"same answers in one length bucket / as bucketed speedup [{n} answers]",
                       best["batched"] / best["one length bucket"], "x", note="what one padded batch could gain")]
