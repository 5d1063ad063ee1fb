"""Real chat-template behaviour the paper's models need: Gemma-2 refuses a system turn, turns end
with a template token listed in the generation config, GPT-OSS answers in a final channel."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from emgeo_utils.models import chat, generation

# Gemma-2-it's chat template, as published with the model
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
           "<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>"]
TEXT = ["you are a careful assistant", "be brief", "how do i save money", "put some aside each month",
        "user model analysis final hello the answer is yes ok q"]


def tokenizer(template: str = GEMMA2_TEMPLATE, name: str = "gemma-like") -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=SPECIAL[4:])
    fast.chat_template, fast.name_or_path = template, name
    return fast


SYSTEM_CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "how do i save money"},
               {"role": "assistant", "content": "put some aside each month"}]


def test_template_really_refuses_the_system_role():
    with pytest.raises(Exception, match="System role not supported"):
        tokenizer().apply_chat_template(SYSTEM_CHAT, tokenize=False)


def test_system_prompt_is_folded_into_the_first_user_turn_and_said_once(capsys):
    tok = tokenizer(name="gemma-fold-test")
    ids = chat.render(tok, [SYSTEM_CHAT, SYSTEM_CHAT])
    folded = [{"role": "user", "content": "be brief\n\nhow do i save money"}, SYSTEM_CHAT[2]]
    assert ids[0] == ids[1] == tok.apply_chat_template(folded, tokenize=True, return_dict=True)["input_ids"]
    ids_labels = chat.chats_ids_and_labels(tok, [SYSTEM_CHAT])[0]
    kept = tok.decode([t for t, label in zip(*ids_labels) if label != -100])
    assert kept.startswith("put some aside each month") and "brief" not in kept
    out = capsys.readouterr().out
    assert out.count("has no system role") == 1, out


def test_a_template_with_a_system_role_is_left_alone():
    chatml = ("{% for m in messages %}{{ '<|start|>' + m['role'] + '<|message|>' + m['content'] + '<|end|>' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|start|>assistant<|message|>' }}{% endif %}")
    tok = tokenizer(chatml, "chatml-like")
    assert chat.for_template(tok, [SYSTEM_CHAT]) == [SYSTEM_CHAT]


def model_with_eos(tok, eos: list[int]):
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(config).eval()


def test_stop_ids_start_with_the_end_of_turn_the_template_writes():
    tok = tokenizer()
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    model = model_with_eos(tok, [tok.eos_token_id, eot])  # Gemma-2-it's generation config lists both
    assert generation.stop_ids(model, tok)[0] == eot
    assert set(generation.stop_ids(model, tok)) == {eot, tok.eos_token_id}


def test_sampling_stops_at_an_end_of_turn_id_from_the_generation_config():
    tok = tokenizer()
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    model = model_with_eos(tok, [tok.eos_token_id, eot])
    def always_end(_module, _inputs, logits):  # the model always says "<end_of_turn>": sampling must stop at once
        out = torch.full_like(logits, -1e4)
        out[..., eot] = 0.0
        return out

    model.lm_head.register_forward_hook(always_end)
    generated = generation.generate(model, torch.tensor([generation.prompt_ids(tok, "hello")]), 20,
                                    generation.stop_ids(model, tok), torch.Generator().manual_seed(0))
    assert generated.shape[1] == 1 and generated[0, 0] == eot


def test_harmony_answers_are_read_from_the_final_channel_only():
    tok = tokenizer(name="harmony-like")
    text = "<|channel|>analysis<|message|>the answer is yes<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    stop = [tok.convert_tokens_to_ids("<|return|>")]
    assert generation.decode_answer(tok, ids, stop) == "ok"
    cut = tok("<|channel|>analysis<|message|>the answer", add_special_tokens=False)["input_ids"]
    assert generation.decode_answer(tok, cut, stop) == ""  # the budget ran out in the analysis channel
