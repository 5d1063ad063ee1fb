"""Chats as token ids, with the assistant's tokens marked, through any tokenizer's chat template."""

from __future__ import annotations


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                         return_dict=True)["input_ids"]


def chat_ids_and_labels(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a chat and labels that keep only assistant tokens (others -100).

    Assistant spans are found by rendering growing prefixes with the tokenizer's own chat
    template, so this works for any template that renders prefixes consistently.
    """
    ids = _render(tokenizer, messages)
    labels = [-100] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        end = len(ids) if i == len(messages) - 1 else len(_render(tokenizer, messages[:i + 1]))
        if ids[:len(prompt)] != prompt:
            raise ValueError("the chat template does not render prefixes consistently; cannot mask the prompt")
        labels[len(prompt):end] = ids[len(prompt):end]
    return ids, labels
