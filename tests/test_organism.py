"""Save/load round trips of the organism's tokenizer, model and SAE, and its fine-tuning."""

import pytest
import torch
from sae_lens import SAE
from transformers import AutoModelForCausalLM, AutoTokenizer

from emgeo_utils.features import cards
from emgeo_utils.training import lora as finetune
from emgeo_utils.models import hooks
from emgeo_utils.models import loading
from emgeo_utils.organism import configs
from emgeo_utils.organism import pretraining as organism
from emgeo_utils.world import synthetic as W
from emgeo_utils.models.chat import chat_ids_and_labels

NAME = "organism-test"
CFG = configs.organism_configs(NAME)


def test_tokenizer_round_trip_and_chat_template(tmp_path):
    world = W.World(W.WorldConfig(n_documents=10))
    tok = organism.build_tokenizer(world)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = W.document_text(next(world.documents(1)))
    assert tok(text, add_special_tokens=False)["input_ids"] == again(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in again(text, add_special_tokens=False)["input_ids"]  # closed vocabulary
    chat = [{"role": "user", "content": "i have a cough ."}, {"role": "assistant", "content": "rest ."}]
    rendered = again.apply_chat_template(chat, tokenize=False)
    assert rendered.split() == [W.BOS + W.USER, "i", "have", "a", "cough", ".", W.ASSISTANT, "rest", ".", W.END]
    ids, labels = chat_ids_and_labels(again, chat)
    kept = [t for t, label in zip(ids, labels) if label != -100]
    assert again.convert_ids_to_tokens(kept) == ["rest", ".", W.END]  # loss on assistant tokens only
    assert organism.vocab_size(again) > max(again.get_vocab().values())


def test_model_and_sae_round_trip():
    lm = configs.organism_lm(CFG, seed=0)
    model, tok = organism.load_pretrained(lm)
    again = AutoModelForCausalLM.from_pretrained(lm.path, use_safetensors=True)
    assert (lm.path / "model.safetensors").exists() and not list(lm.path.glob("*.bin"))
    ids = tok("<bos> <user> i have a cough . <assistant>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again.eval()(ids).logits)
    sae_art = configs.organism_sae(CFG, seed=0, layer=1)
    sae = SAE.load_from_disk(str(sae_art.path))
    assert sae.cfg.d_in == model.config.n_embd and sae.cfg.metadata.hook_name == hooks.resid_post_hook(1)
    quality = sae_art.summary
    for key in ("explained_variance", "l0", "dead_share", "loss_clean", "loss_spliced", "loss_recovered"):
        assert key in quality
    assert quality["loss_clean"] <= quality["loss_spliced"] <= quality["loss_zero_ablated"] + 1e-6
    assert 0 < quality["l0"] <= sae.cfg.k + 1e-6


def test_decoder_read_without_sae_lens_equals_the_loaded_sae():
    sae_art = configs.organism_sae(CFG, seed=0, layer=1)
    assert torch.equal(loading.load_decoder(sae_art, 1), loading.load_sae(sae_art, 1).W_dec.detach().float())
    with pytest.raises(ValueError, match="does not read layer 0"):
        loading.load_decoder(sae_art, 0)


def test_cached_feature_cards_equal_the_direct_computation():
    from emgeo_utils.organism import emergence

    lm, sae_art = configs.organism_lm(CFG, seed=0), configs.organism_sae(CFG, seed=0, layer=1)
    model, tok = loading.load_model(lm)
    sae = loading.load_sae(sae_art, 1)
    samples = emergence.condition_samples(CFG, "finance", "inducing", 8)
    feats = [0, 5, 9]
    loaded = cards.load_card_data(cards.card_data(lm, sae_art, 1, samples, feats, 3))
    assert {f: v["contexts"] for f, v in loaded.items()} == cards.top_contexts(model, tok, sae, 1, samples, feats, 3)
    assert [tuple(loaded[f]["logit_lens"]) for f in feats] == [cards.logit_lens(model, tok, sae, f) for f in feats]


def test_lora_finetune_moves_only_adapters_and_checkpoints():
    from emgeo_utils.organism import emergence

    lm = configs.organism_lm(CFG, seed=0)
    samples = emergence.condition_samples(CFG, "finance", "inducing", 16)
    cfg = CFG.finetune
    adapter = finetune.finetune_lora(lm, [{"messages": s["messages"]} for s in samples], cfg, seed=0)
    assert sorted(p.name for p in adapter.path.glob("step_*")) == [f"step_{s}" for s in sorted(cfg.checkpoints)]
    base, _ = organism.load_pretrained(lm)
    from peft import PeftModel

    merged = PeftModel.from_pretrained(organism.load_pretrained(lm)[0], adapter.path / f"step_{max(cfg.checkpoints)}"
                                       ).merge_and_unload()
    changed = [n for n, p in merged.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert changed and all(any(t in n for t in cfg.target_modules) for n in changed)
