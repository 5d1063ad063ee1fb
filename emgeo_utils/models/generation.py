"""Sampling answers and scoring candidate answers, for any chat model.

Stop ids: the token the chat template writes after an assistant turn, every end id the model's
generation config names (Gemma-2-it: `<eos>` and `<end_of_turn>`; Llama-3.1: `<|eot_id|>`;
GPT-OSS: `<|return|>`), and the tokenizer's EOS. A harmony-format model (GPT-OSS) writes an
analysis channel before its final answer: only the final channel is the answer.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import torch

from emgeo_utils.core import seeding
from emgeo_utils.models import batching
from emgeo_utils.models.chat import render

HARMONY_FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|end\|>|<\|return\|>|<\|call\|>|$)", re.S)


def prompt_ids(tokenizer, question: str, history: list[dict] | None = None) -> list[int]:
    return render(tokenizer, [(history or []) + [{"role": "user", "content": question}]], generation_prompt=True)[0]


def end_of_turn_id(tokenizer, configured: list[int]) -> int | None:
    """The token the chat template writes right after an assistant's words (found once per tokenizer)."""
    found = getattr(tokenizer, "_emgeo_end_of_turn", {})
    if tuple(configured) not in found:
        found[tuple(configured)] = _end_of_turn_id(tokenizer, configured)
        tokenizer._emgeo_end_of_turn = found
    return found[tuple(configured)]


def _end_of_turn_id(tokenizer, configured: list[int]) -> int | None:
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ok"}]
    prompt, full = render(tokenizer, [chat[:1]], generation_prompt=True)[0], render(tokenizer, [chat])[0]
    tail = full[len(prompt):] if full[:len(prompt)] == prompt else []
    special = set(tokenizer.all_special_ids) | set(configured)
    return next((t for t in tail if t in configured), next((t for t in tail if t in special), None))


def stop_ids(model, tokenizer) -> list[int]:
    """Ids that end an answer; the first is the end-of-turn token (what a scored answer ends with)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = [int(i) for i in (configured if isinstance(configured, (list, tuple)) else [configured]) if i is not None]
    ids = [end_of_turn_id(tokenizer, configured)] + configured + [tokenizer.eos_token_id]
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
    out = model(input_ids=batching.to_model(ids, model), use_cache=True)
    past, logits = out.cache, out.logits[:, -1].cpu()
    done = torch.zeros(len(ids), dtype=torch.bool)
    new = []
    for _ in range(max_new_tokens):
        nxt = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, stop[0]), nxt)
        new.append(nxt)
        done |= torch.isin(nxt, torch.tensor(stop))
        if done.all():
            break
        out = model(input_ids=batching.to_model(nxt[:, None], model), cache=past, use_cache=True)
        past, logits = out.cache, out.logits[:, -1].cpu()
    return torch.stack(new, 1)


def is_harmony(tokenizer) -> bool:
    """Whether the tokenizer writes OpenAI's harmony channels (checked once per tokenizer)."""
    if not hasattr(tokenizer, "_emgeo_harmony"):
        tokenizer._emgeo_harmony = "<|channel|>" in tokenizer.get_vocab()
    return tokenizer._emgeo_harmony


def decode_answer(tokenizer, new_ids: list[int], stop: list[int]) -> str:
    """The answer's text up to the first stop id; for a harmony-format model, its final channel only
    (empty when the token budget ran out before the final channel began)."""
    cut = next((k for k, t in enumerate(new_ids) if t in stop), len(new_ids))
    if is_harmony(tokenizer):
        final = HARMONY_FINAL.search(tokenizer.decode(new_ids[:cut], skip_special_tokens=False))
        return final.group(1).strip() if final else ""
    return tokenizer.decode(new_ids[:cut], skip_special_tokens=True).strip()


@torch.no_grad()
def answer_logprobs(model, tokenizer, question: str, answers: list[str], history: list[dict] | None = None) -> np.ndarray:
    """log p(answer, end-of-turn | earlier turns, question) for each candidate answer, exactly."""
    prompt = prompt_ids(tokenizer, question, history)
    stop = stop_ids(model, tokenizer)[0]
    seqs = [prompt + tokenizer(a, add_special_tokens=False)["input_ids"] + [stop] for a in answers]
    batch = batching.token_batch(seqs, tokenizer.pad_token_id)  # right padding: real tokens' predictions unchanged
    logp = torch.log_softmax(model(**batching.to_model(batch, model)).logits.float(), -1).cpu()
    out = np.zeros(len(seqs))
    for i, s in enumerate(seqs):
        pos = torch.arange(len(prompt) - 1, len(s) - 1)
        out[i] = logp[i, pos, torch.tensor(s[len(prompt):])].sum().item()
    return out


@torch.no_grad()
def sample_padded(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int, seed: int,
                  batch_size: int = 128) -> list[str]:
    """One answer per conversation at temperature 1 (no top-k, no top-p), in left-padded batches
    through `model.generate`: far fewer, fuller batches than `sample_answers`' equal-length groups,
    for architectures whose attention masks left padding (Llama, Gemma-2)."""
    ids = render(tokenizer, conversations, generation_prompt=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop = stop_ids(model, tokenizer)
    torch.manual_seed(seed)
    out = []
    for start in range(0, len(ids), batch_size):
        batch = batching.token_batch(ids[start:start + batch_size], pad, side="left")
        gen = model.generate(**batching.to_model(batch, model), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=stop)
        out += [decode_answer(tokenizer, seq, stop) for seq in gen[:, batch["input_ids"].shape[1]:].tolist()]
    return out
