"""Chats as token ids, with the assistant's tokens marked, through any tokenizer's chat template.

Templates that refuse the system role (Gemma-2's raises) get the system prompt folded into the
first user turn, the way such models are prompted in practice; this is said once per tokenizer.
"""

from __future__ import annotations

_FOLD_REPORTED: set[str] = set()


def accepts_system(tokenizer) -> bool:
    """Whether the chat template renders a system turn (checked once per tokenizer)."""
    if not hasattr(tokenizer, "_emgeo_accepts_system"):
        try:
            tokenizer.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                                          tokenize=False)
            tokenizer._emgeo_accepts_system = True
        except Exception:  # jinja raises whatever the template raises
            tokenizer._emgeo_accepts_system = False
    return tokenizer._emgeo_accepts_system


def fold_system(messages: list[dict]) -> list[dict]:
    """A leading system turn prepended to the first user turn (blank line between)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], list(messages[1:])
    for i, m in enumerate(rest):
        if m["role"] == "user":
            rest[i] = {**m, "content": f"{system}\n\n{m['content']}"}
            return rest
    return [{"role": "user", "content": system}] + rest


def for_template(tokenizer, conversations: list[list[dict]]) -> list[list[dict]]:
    """Conversations as this tokenizer's template can render them."""
    if not any(c and c[0]["role"] == "system" for c in conversations) or accepts_system(tokenizer):
        return conversations
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if name not in _FOLD_REPORTED:
        _FOLD_REPORTED.add(name)
        print(f"note: the chat template of {name} has no system role; system prompts are folded into the first user turn")
    return [fold_system(c) for c in conversations]


def render(tokenizer, conversations: list[list[dict]], generation_prompt: bool = False) -> list[list[int]]:
    """Token ids of many chats through the chat template: one batched call (one tokenizer pass
    for all, instead of one per chat), the same ids as rendering each alone."""
    if not conversations:
        return []
    return tokenizer.apply_chat_template(for_template(tokenizer, list(conversations)), tokenize=True,
                                         add_generation_prompt=generation_prompt, return_dict=True)["input_ids"]


def chats_ids_and_labels(tokenizer, chats: list[list[dict]]) -> list[tuple[list[int], list[int]]]:
    """Per chat, its token ids and labels that keep only assistant tokens (others -100).

    Assistant spans are found by rendering growing prefixes with the tokenizer's own chat
    template, so this works for any template that renders prefixes consistently.
    """
    chats = for_template(tokenizer, list(chats))
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
