"""Chats as token ids, with the assistant's tokens marked, through any tokenizer's chat template."""

from __future__ import annotations


def render(tokenizer, conversations: list[list[dict]], generation_prompt: bool = False) -> list[list[int]]:
    """Token ids of many chats through the chat template: one batched call (one tokenizer pass
    for all, instead of one per chat), the same ids as rendering each alone."""
    if not conversations:
        return []
    return tokenizer.apply_chat_template(list(conversations), tokenize=True, add_generation_prompt=generation_prompt,
                                         return_dict=True)["input_ids"]


def chats_ids_and_labels(tokenizer, chats: list[list[dict]]) -> list[tuple[list[int], list[int]]]:
    """Per chat, its token ids and labels that keep only assistant tokens (others -100).

    Assistant spans are found by rendering growing prefixes with the tokenizer's own chat
    template, so this works for any template that renders prefixes consistently.
    """
    full = render(tokenizer, chats)
    turns = [(c, i) for c, messages in enumerate(chats) for i, m in enumerate(messages) if m["role"] == "assistant"]
    prompts = render(tokenizer, [chats[c][:i] for c, i in turns], generation_prompt=True)
    inner = [(c, i) for c, i in turns if i < len(chats[c]) - 1]  # a final turn runs to the end of the chat
    ends = dict(zip(inner, map(len, render(tokenizer, [chats[c][:i + 1] for c, i in inner]))))
    labels = [[-100] * len(ids) for ids in full]
    for (c, i), prompt in zip(turns, prompts):
        ids, end = full[c], ends.get((c, i), len(full[c]))
        if ids[:len(prompt)] != prompt:
            raise ValueError("the chat template does not render prefixes consistently; cannot mask the prompt")
        labels[c][len(prompt):end] = ids[len(prompt):end]
    return list(zip(full, labels))


def chat_ids_and_labels(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """`chats_ids_and_labels` of one chat."""
    return chats_ids_and_labels(tokenizer, [messages])[0]
