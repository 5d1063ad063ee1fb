"""Batched chat encoding gives exactly the ids and masks of encoding each chat alone."""

import pytest

from emgeo_utils.features import activations as features
from emgeo_utils.organism import pretraining as organism
from emgeo_utils.world import synthetic as W
from emgeo_utils.models.chat import chat_ids_and_labels, chats_ids_and_labels

# A Gemma-style template (no system role, turns closed by a marker), to check a second template.
GEMMA_STYLE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
               "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")

CHATS = [
    [{"role": "user", "content": "i have a cough ."}, {"role": "assistant", "content": "rest ."}],
    [{"role": "user", "content": "my back hurts ."}, {"role": "assistant", "content": "see a doctor ."},
     {"role": "user", "content": "and my knee ?"}, {"role": "assistant", "content": "rest and ice ."}],
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "bye"}],
]


def one_at_a_time(tok, messages):
    """The reference: every prefix rendered alone, as a reader would write it."""
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    labels = [-100] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(tok.apply_chat_template(messages[:i], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
            end = len(ids) if i == len(messages) - 1 else len(
                tok.apply_chat_template(messages[:i + 1], tokenize=True, return_dict=True)["input_ids"])
            labels[start:end] = ids[start:end]
    return ids, labels


@pytest.mark.parametrize("template", ["organism", "gemma-style"])
def test_batched_encoding_equals_one_at_a_time(template):
    tok = organism.build_tokenizer(W.World(W.WorldConfig(n_documents=10)))
    if template == "gemma-style":
        tok.chat_template = GEMMA_STYLE
    batched = chats_ids_and_labels(tok, CHATS)
    assert batched == [one_at_a_time(tok, c) for c in CHATS] == [chat_ids_and_labels(tok, c) for c in CHATS]
    assert any(label != -100 for label in batched[1][1][:len(batched[1][1]) // 2])  # the inner answer is kept
    probes = ["what now ?"] * len(CHATS)
    encoded = features.encode_with_probes(tok, CHATS, probes)
    for chat, probe, enc in zip(CHATS, probes, encoded):
        alone = features.encode_with_probes(tok, [chat], [probe])[0]
        assert (enc.ids, enc.assistant) == (alone.ids, alone.assistant)
        extended = tok.apply_chat_template(chat + [{"role": "user", "content": probe}], tokenize=True,
                                           add_generation_prompt=True, return_dict=True)["input_ids"]
        assert enc.ids == extended and len(enc.assistant) == len(enc.ids)


def test_probe_count_must_match():
    tok = organism.build_tokenizer(W.World(W.WorldConfig(n_documents=10)))
    with pytest.raises(ValueError, match="one per chat"):
        features.encode_with_probes(tok, CHATS, ["x"])
