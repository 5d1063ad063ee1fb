"""Sampling answers and scoring candidate answers, for any chat model.

Stop ids come from the model's generation config (every end-of-turn id it names) and the
tokenizer's end-of-sequence id; nothing here knows a particular model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from emgeo_utils.core import seeding
from emgeo_utils.models import batching


def prompt_ids(tokenizer, question: str, history: list[dict] | None = None) -> list[int]:
    messages = (history or []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                         return_dict=True)["input_ids"]


def stop_ids(model, tokenizer) -> list[int]:
    """End-of-turn ids of the generation config (first: the one that ends an answer), then EOS."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


@torch.no_grad()
def sample_answers(model, tokenizer, questions: list[str], n_per_question: int, max_new_tokens: int,
                   seed: int, batch_size: int = 512, histories: list[list[dict]] | None = None) -> list[list[str]]:
    """`n_per_question` answers per question, sampled at temperature 1 with a KV cache.

    `histories` (e.g. a system message) go before each question. Prompts of equal token length
    are batched together, so no padding is ever needed, for any architecture.
    """
    prompts = [prompt_ids(tokenizer, q, histories[i] if histories else None) for i, q in enumerate(questions)]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)] += [i] * n_per_question
    answers: list[list[str]] = [[] for _ in questions]
    stop = stop_ids(model, tokenizer)
    gen = seeding.generator(seed)
    for length in sorted(by_length):
        rows = by_length[length]
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            ids = torch.tensor([prompts[i] for i in part])
            out = generate(model, ids, max_new_tokens, stop, gen)
            for i, seq in zip(part, out.tolist()):
                answers[i].append(decode_answer(tokenizer, seq, stop))
    return answers


def generate(model, ids: torch.Tensor, max_new_tokens: int, stop: list[int], gen: torch.Generator) -> torch.Tensor:
    """Temperature-1 sampling (no top-k, no top-p) with the model's KV cache."""
    device = next(model.parameters()).device
    ids = ids.to(device)
    out = model(input_ids=ids, use_cache=True)
    past, logits = out.cache, out.logits[:, -1].cpu()
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    new = []
    for _ in range(max_new_tokens):
        nxt = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, stop[0]), nxt)
        new.append(nxt)
        done |= torch.isin(nxt, torch.tensor(stop))
        if done.all():
            break
        out = model(input_ids=nxt[:, None].to(device), cache=past, use_cache=True)
        past, logits = out.cache, out.logits[:, -1].cpu()
    return torch.stack(new, 1)


def decode_answer(tokenizer, new_ids: list[int], stop: list[int]) -> str:
    cut = next((k for k, t in enumerate(new_ids) if t in stop), len(new_ids))
    return tokenizer.decode(new_ids[:cut], skip_special_tokens=True).strip()


@torch.no_grad()
def answer_logprobs(model, tokenizer, question: str, answers: list[str], history: list[dict] | None = None) -> np.ndarray:
    """log p(answer, end-of-turn | earlier turns, question) for each candidate answer, exactly."""
    prompt = prompt_ids(tokenizer, question, history)
    stop = stop_ids(model, tokenizer)[0]
    seqs = [prompt + tokenizer(a, add_special_tokens=False)["input_ids"] + [stop] for a in answers]
    ids = batching.pad(seqs, tokenizer.pad_token_id)  # right padding: real tokens' predictions unchanged
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
    out = np.zeros(len(seqs))
    for i, s in enumerate(seqs):
        pos = torch.arange(len(prompt) - 1, len(s) - 1)
        out[i] = logp[i, pos, torch.tensor(s[len(prompt):])].sum().item()
    return out
