"""The model organism: a word-level tokenizer and a small GPT-2 trained from scratch on the world.

Both are plain transformers objects, saved with `save_pretrained` (safetensors) and reloaded
with `from_pretrained`, so every later step treats the organism like any hub model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tqdm.auto import tqdm

if TYPE_CHECKING:  # imported where used: a warm run only reads the cache, and these imports take seconds
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from emgeo_utils.core import cache, seeding
from emgeo_utils.models import batching
from emgeo_utils.models.artifact_loaders import register_artifact_loaders
from emgeo_utils.world import synthetic as world_mod
from emgeo_utils.world.synthetic import ASSISTANT, BOS, END, EOS, PAD, SPECIAL_TOKENS, UNK, USER, World, WorldConfig

# The organism's chat template: the same `apply_chat_template` call serves it and real models.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + " {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + " {{ m['content'] }} " + END + " "
    "{% else %}{{ raise_exception('the organism knows only user and assistant turns, got ' + m['role']) }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 256


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    batch_size: int = 32
    lr: float = 1e-2
    warmup_steps: int = 100
    weight_decay: float = 0.01
    epochs: int = 2
    answer_loss_only: bool = True  # the organism learns to answer, not to ask (half the compute)


def world_strings(world: World) -> list[str]:
    """Every string the world can produce, so the vocabulary is closed."""
    text = world.text
    out = [a.text for a in world.answers] + world.educational_prefixes()
    for domain in world_mod.DOMAINS:
        spec = text["domains"][domain]
        out += spec["train_questions"] + spec["eval_questions"]
        out += [str(v) for fillers in spec["slots"].values() for v in fillers]
    for spec in text["general"]["topics"].values():
        out += spec["train_questions"] + spec["eval_questions"]
    return [world_mod.normalise(s.replace("{", " ").replace("}", " ")) for s in out]


def build_tokenizer(world: World) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained with `tokenizers` on the world's strings."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    tok.train_from_iterator(world_strings(world), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, additional_special_tokens=[USER, ASSISTANT, END])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # generation pads on the left
    return fast


def vocab_size(tokenizer) -> int:
    # a word-level trainer's largest id can exceed its reported size: size from the largest id
    return max(tokenizer.get_vocab().values()) + 1


def make_model(tokenizer, arch: ArchConfig) -> GPT2LMHeadModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size(tokenizer), n_positions=arch.max_len, n_embd=arch.d_model,
                        n_layer=arch.n_layers, n_head=arch.n_heads, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


def encode_documents(tokenizer, world: World, n_documents: int, seed: int, max_len: int) -> list[list[int]]:
    texts = [world_mod.document_text(d) for d in world.documents(n_documents, seed=seed)]
    ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    return [x[:max_len] for x in ids]


def length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length (little padding), in random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels (-100 on padding). Right padding never changes the causal
    prediction of real tokens, so no attention mask is needed."""
    return batching.pad(seqs, pad_id), batching.pad(seqs, -100)


def answer_mask(ids: torch.Tensor, assistant_id: int, end_id: int) -> torch.Tensor:
    """True on assistant tokens (after an <assistant> marker, up to and including <end>)."""
    opened = torch.cumsum((ids == assistant_id).long(), 1)
    closed = torch.cumsum((ids == end_id).long(), 1) - (ids == end_id).long()
    return (opened > closed) & (ids != assistant_id)


def answer_loss(model: GPT2LMHeadModel, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token loss on masked target positions only; the LM head runs only where needed."""
    hidden = model.transformer(input_ids=ids).last_hidden_state[:, :-1]
    target_mask = mask[:, 1:] & (labels[:, 1:] != -100)
    logits = model.lm_head(hidden[target_mask])
    return torch.nn.functional.cross_entropy(logits, labels[:, 1:][target_mask])


def lr_at(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


@cache.artifact("organism-lm")
def pretrain(world: WorldConfig, arch: ArchConfig = ArchConfig(), train: PretrainConfig = PretrainConfig(),
             seed: int = 0, *, out: Path) -> dict:
    """Train the organism from scratch on the world's corpus; save model + tokenizer to `out`."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # right padding without a mask is deliberate (see pad_batch)
    with seeding.job_context(seed):
        w = World(world)
        tokenizer = build_tokenizer(w)
        docs = encode_documents(tokenizer, w, world.n_documents, seed, arch.max_len)
        model = make_model(tokenizer, arch)
        # an answer ends with <end>: generation stops there (and at EOS), as a real model's config says
        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids([END, EOS])
        rng = np.random.default_rng(seed)
        batches = [b for _ in range(train.epochs) for b in length_batches([len(d) for d in docs], train.batch_size, rng)]
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": train.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=train.lr, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, len(batches), train.warmup_steps))
        model.train()
        losses, start, tokens = [], time.perf_counter(), 0
        assistant_id, end_id = tokenizer.convert_tokens_to_ids([ASSISTANT, END])
        for batch in tqdm(batches, desc=f"pretrain {world.kind} seed {seed}", mininterval=10, leave=False):
            ids, labels = pad_batch([docs[i] for i in batch], tokenizer.pad_token_id)
            if train.answer_loss_only:
                loss = answer_loss(model, ids, labels, answer_mask(ids, assistant_id, end_id))
            else:
                loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += int((labels != -100).sum())
        model.eval()
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    seconds = time.perf_counter() - start
    return {"final_loss": float(np.mean(losses[-50:])), "loss_curve": losses[:: max(1, len(losses) // 200)],
            "tokens": tokens, "steps": len(batches), "tokens_per_s": tokens / seconds,
            "params": sum(p.numel() for p in model.parameters())}


def load_pretrained(lm: cache.Artifact | Path) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    """Reload a trained organism (safetensors only)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per tiny model load is noise in notebooks
    path = lm.path if isinstance(lm, cache.Artifact) else Path(lm)
    model = GPT2LMHeadModel.from_pretrained(path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer


register_artifact_loaders("organism-lm", model=load_pretrained)
