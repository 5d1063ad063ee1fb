"""Fine-tuning: LoRA training tokens/s (`finetune.lora_model` with the default FinetuneConfig, and
the step of `finetune.train_lora`) against full fine-tuning of the same model on the same batches
(every weight trainable, the same forward + backward + AdamW step).

The limit: LoRA cannot skip backpropagation. Gradients with respect to activations flow through
every layer either way; LoRA saves only the weight gradients and optimiser updates of the frozen
weights, and adds its adapters' small matmuls and peft's per-module Python. So per token it
should be no slower than full fine-tuning; goal >= 0.8 of full fine-tuning's tokens/s. Measured
on the organism's shape, where per-module overhead weighs, and on a bigger random GPT-2, where
the matrix multiplies dominate.
"""

from __future__ import annotations

import copy

import torch

from emgeo_utils.training import lora as finetune

from . import common

SIZES = {"organism d64x2": (16, 3), "gpt2 d512x4": (4, 2)}  # shape -> (batches per round, rounds)


def trainer(model, batches, lr: float):
    """One pass of train_lora's step over `batches`, for whichever parameters are trainable."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()

    def run():
        for batch in batches:
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()

    return run


def measure(shape: str, n_batches: int, rounds: int) -> list[common.Row]:
    common.setup(seed=0, threads=1)
    w = common.world()
    tok = common.tokenizer(w)
    config = finetune.FinetuneConfig()
    base = common.gpt2(tok, common.SHAPES[shape])
    samples, _ = common.chat_samples(w, n_batches * config.batch_size)
    encoded = finetune.encode_samples(tok, samples)
    batches = [finetune.collate(encoded[i:i + config.batch_size], tok.pad_token_id)
               for i in range(0, len(encoded), config.batch_size)]
    n_tokens = int(sum(b["attention_mask"].sum() for b in batches))
    lora = finetune.lora_model(copy.deepcopy(base), config)
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    paths = {"full fine-tuning": trainer(copy.deepcopy(base), batches, config.lr),
             "LoRA": trainer(lora, batches, config.lr)}
    for path in paths.values():
        path()  # warm-up: optimiser state, first allocations
    best, _ = common.side_by_side(paths, rounds)
    ratio = best["full fine-tuning"] / best["LoRA"]
    print(f"  [{shape}, 1 thread] {len(batches)} batches of {config.batch_size}, {n_tokens} tokens; LoRA rank {config.rank} "
          f"on {', '.join(config.target_modules)} trains {trainable:,} of {sum(p.numel() for p in base.parameters()):,} "
          "weights; " + ", ".join(f"{k}: {n_tokens / v:,.0f} tok/s" for k, v in best.items()) + " (CPU time)")
    return [common.Row("4 fine-tuning", f"LoRA / full fine-tuning tok/s [{shape}]", ratio, "x", (">=", 0.8))]


def run() -> list[common.Row]:
    """LoRA against full fine-tuning on both shapes."""
    return [row for shape, (n, rounds) in SIZES.items() for row in measure(shape, n, rounds)]
