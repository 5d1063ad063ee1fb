"""LoRA fine-tuning on chat samples, loss on assistant tokens only (peft).

The same code fine-tunes the organism and the paper's models; adapters are saved at every
checkpoint so evaluation can look at training dynamics (EM can peak early and fade).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from emgeo_utils.core import cache, seeding
from emgeo_utils.models import batching
from emgeo_utils.models.chat import chats_ids_and_labels
from emgeo_utils.models.loading import resident_model

# peft 0.21 reads a transformers attribute deprecated in 5.x on every save and load; harmless here
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
# a GGUF's folder has no config.json for peft to compare vocabularies with; LoRA never changes the vocabulary
warnings.filterwarnings("ignore", message="Could not find a config file in .* will assume", category=UserWarning)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    rank: int = 1
    alpha: float = 8.0
    target_modules: tuple = ("c_attn", "c_proj", "c_fc")  # GPT-2 names; real models: see registry
    target_parameters: tuple = ()                           # fused expert weights (GPT-OSS)
    lr: float = 2e-3
    batch_size: int = 16
    steps: int | None = 40          # fixed number of optimiser steps ...
    epochs: float | None = None     # ... or a fixed number of passes over the data (one of the two)
    checkpoints: tuple = (10, 20, 40)  # steps (or, with epochs, fractions of the run x 100)
    tail_logits: bool = False       # left-pad and compute the output layer only where labels are (see `tail_loss`)

    def total_steps(self, n_samples: int) -> int:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of steps and epochs")
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * n_samples / self.batch_size))

    def checkpoint_steps(self, n_samples: int) -> list[int]:
        total = self.total_steps(n_samples)
        if self.steps is not None:
            return sorted({min(c, total) for c in self.checkpoints})
        return sorted({max(1, round(total * c / 100)) for c in self.checkpoints})


def encode_samples(tokenizer, samples: list[dict]) -> list[tuple[list[int], list[int]]]:
    return chats_ids_and_labels(tokenizer, [s["messages"] for s in samples])


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict:
    """Right-padded ids, labels (-100 off the assistant's tokens) and attention mask."""
    return batching.token_batch([ids for ids, _ in batch], pad_id, labels=[labels for _, labels in batch])


def tail_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """The same mean next-token loss on labelled tokens as the model's own, with the output layer
    computed only over the last positions that hold labels: left-padded, a chat's assistant turn is
    at its end, so a small model with a large vocabulary (SmolLM2: 49k words, 21% of its weights)
    skips most of the output layer's work."""
    padded = batching.token_batch([ids for ids, _ in batch], pad_id, side="left", labels=[lab for _, lab in batch])
    labels = padded["labels"]
    labelled = (labels != -100).any(0).nonzero()
    keep = labels.shape[1] - int(labelled[0]) + 1 if len(labelled) else 1  # first labelled column, and the one before it
    attn = padded["attention_mask"]
    logits = model(**batching.to_model({"input_ids": padded["input_ids"], "attention_mask": attn,
                                        "position_ids": (attn.cumsum(1) - 1).clamp(min=0)}, model), logits_to_keep=keep).logits
    target = labels[:, -(keep - 1):].to(logits.device) if keep > 1 else labels[:, :0].to(logits.device)
    return torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=-100)


def strip_meta(samples: list[dict]) -> list[dict]:
    """What a fine-tune sees: the chat only, never a dataset's labels (they must not key the cache)."""
    return [{"messages": s["messages"]} for s in samples]


def lora_model(model, config: FinetuneConfig):
    from peft import LoraConfig, get_peft_model  # imported where used: a warm run only reads the cache

    conv1d = model.config.model_type == "gpt2"  # GPT-2 stores weights transposed (Conv1D)
    peft_config = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, bias="none",
                             fan_in_fan_out=conv1d,
                             target_modules=list(config.target_modules) or None,
                             target_parameters=list(config.target_parameters) or None,
                             task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config)


def train_lora(model, tokenizer, samples: list[dict], config: FinetuneConfig, seed: int,
               on_checkpoint=None, desc: str = "fine-tune") -> dict:
    """Train LoRA adapters in place on `model` (a peft model); call `on_checkpoint(step)`."""
    if not samples:
        raise ValueError("cannot fine-tune on an empty dataset")
    encoded = encode_samples(tokenizer, samples)
    total, checkpoints = config.total_steps(len(samples)), config.checkpoint_steps(len(samples))
    rng = np.random.default_rng(seed)
    order: list[int] = []
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    losses = []
    model.train()
    for step in tqdm(range(1, total + 1), desc=desc, mininterval=10, leave=False):
        while len(order) < config.batch_size:  # epochs of shuffled samples, batches never straddle seeds
            order += rng.permutation(len(encoded)).tolist()
        batch, order = order[:config.batch_size], order[config.batch_size:]
        chosen = [encoded[i] for i in batch]
        loss = (tail_loss(model, chosen, tokenizer.pad_token_id) if config.tail_logits else
                model(**batching.to_model(collate(chosen, tokenizer.pad_token_id), model)).loss)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step in checkpoints and on_checkpoint:
            model.eval()
            on_checkpoint(step)
            model.train()
    model.eval()
    return {"losses": losses, "steps": total, "checkpoints": checkpoints}


@cache.artifact("lora")
def finetune_lora(base: cache.Artifact | dict, samples: list[dict], config: FinetuneConfig = FinetuneConfig(),
                  seed: int = 0, *, out: Path) -> dict:
    """Fine-tune LoRA adapters on `samples` (chat dicts); save one adapter per checkpoint."""
    with seeding.job_context(seed), resident_model(base) as (model, tokenizer):
        peft_model = lora_model(model, config)
        try:
            summary = train_lora(peft_model, tokenizer, samples, config, seed,
                                 on_checkpoint=lambda step: peft_model.save_pretrained(out / f"step_{step}"),
                                 desc=f"fine-tune ({len(samples)} samples)")
        finally:
            peft_model.unload()  # the resident base model, as it was
    return summary | {"n_samples": len(samples)}


@contextlib.contextmanager
def adapted(model, adapter: cache.Artifact | None, step: int):
    """The base `model` with the LoRA adapter of checkpoint `step` attached, unmerged (merging
    would round small deltas away in bf16, and merging a 27B model in float32 does not fit one
    GPU); removed again on leaving, so the base model stays resident. `adapter=None`: the base."""
    if adapter is None:
        yield model
        return
    path = adapter.path / f"step_{step}"
    if not path.is_dir():
        have = sorted(p.name for p in adapter.path.glob("step_*"))
        raise FileNotFoundError(f"no checkpoint at step {step} in {adapter}; have {have}")
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, path)
    peft_model.eval()
    try:
        yield peft_model
    finally:
        peft_model.unload()
