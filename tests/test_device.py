"""Every batch reaches a model through the one device helper (`batching.to_model`).

A model loaded with `device_map: auto` on one GPU has no accelerate hooks: CPU tensors passed to
it fail at the embedding. The CPU build of torch cannot make CUDA tensors and a `meta` model
accepts CPU inputs silently, so this test marks what the helper hands on and a forward pre-hook
on the model refuses any tensor argument the helper did not hand on. It runs one LoRA step, one
sampling call and one feature extraction on a tiny Llama of the real-model path.
"""

import pytest
import torch

from emgeo_utils.features import activations
from emgeo_utils.models import batching, generation
from emgeo_utils.training import lora

from tiny_models import build

CHAT = [{"messages": [{"role": "user", "content": "i have a cough . what should i do ?"},
                      {"role": "assistant", "content": "rest and drink water ."}]}] * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from emgeo_utils.experiment import loader
    from emgeo_utils.models import registry

    path = build(tmp_path_factory.mktemp("device"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.USER_REGISTRY_ENV, str(path))
        registry._read.cache_clear()
        yield loader.load("tiny-llama", [1])
    registry._read.cache_clear()


@pytest.fixture
def guarded(tiny, monkeypatch):
    """The tiny model, with a pre-hook that fails on any tensor not handed on by `to_model`."""
    model, tokenizer, saes = tiny
    handed_on: set[int] = set()
    real = getattr(batching, "to_model", lambda batch, m: batch)  # (absent before the fix)

    def marking(batch, m):
        out = real(batch, m)
        for t in (out.values() if isinstance(out, dict) else [out]):
            if torch.is_tensor(t):
                handed_on.add(id(t))
        return out

    monkeypatch.setattr(batching, "to_model", marking, raising=False)

    def check(_module, args, kwargs):
        stray = [name for name, v in list(enumerate(args)) + list(kwargs.items())
                 if torch.is_tensor(v) and id(v) not in handed_on]
        assert not stray, f"tensor argument(s) {stray} reached the model without batching.to_model"

    handle = model.register_forward_pre_hook(check, with_kwargs=True)
    yield model, tokenizer, saes
    handle.remove()


def test_a_lora_step_moves_its_batch(guarded):
    model, tokenizer, _ = guarded
    config = lora.FinetuneConfig(rank=2, alpha=4, target_modules=("q_proj", "v_proj"), steps=1, checkpoints=(1,),
                                 batch_size=2)
    peft_model = lora.lora_model(model, config)
    try:
        lora.train_lora(peft_model, tokenizer, CHAT, config, seed=0)
    finally:
        peft_model.unload()


def test_sampling_moves_its_prompts(guarded):
    model, tokenizer, _ = guarded
    generation.sample_answers(model, tokenizer, ["i have a cough ."], 2, 3, seed=0)
    generation.answer_logprobs(model, tokenizer, "i have a cough .", ["rest .", "run ."])


def test_feature_extraction_moves_its_batches(guarded):
    model, tokenizer, saes = guarded
    activations.sae_features(model, tokenizer, saes[1], 1, CHAT, None, readouts=("assistant_mean",))


def test_the_resident_model_comes_back_unchanged_after_a_fine_tune_and_an_evaluation(tmp_path, monkeypatch):
    """One base model per worker: fine-tuning attaches LoRA and removes it; evaluation attaches a
    checkpoint unmerged and removes it; the weights and modules are what a fresh load gives."""
    from emgeo_utils.experiment import loader
    from emgeo_utils.models import loading, registry

    monkeypatch.setenv(registry.USER_REGISTRY_ENV, str(build(tmp_path)))
    monkeypatch.setenv("EMGEO_CACHE", str(tmp_path / "cache"))
    registry._read.cache_clear()
    spec = loader.open_experiment("tiny-llama").spec
    config = lora.FinetuneConfig(rank=2, alpha=4, target_modules=("q_proj", "v_proj"), steps=2, checkpoints=(2,),
                                 batch_size=2, lr=0.1)
    loading.release_resident()
    adapter = lora.finetune_lora(spec, CHAT, config, 0)
    with loading.resident_model(spec) as (model, tokenizer):
        fresh = dict(loading.load_model(spec)[0].named_parameters())  # a separate copy, from disk
        assert all(torch.equal(p, fresh[n]) for n, p in model.named_parameters()), "the fine-tune left it as it was"
        base_logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
        with lora.adapted(model, adapter, 2) as tuned:
            assert not torch.allclose(tuned(input_ids=torch.tensor([[1, 2, 3]])).logits, base_logits)
    with loading.resident_model(spec) as (again, _):
        assert again is model, "the same copy stays resident"
        assert not [n for n, _ in again.named_modules() if "lora" in n]
        assert all(torch.equal(p, fresh[n]) for n, p in again.named_parameters())
        assert torch.equal(again(input_ids=torch.tensor([[1, 2, 3]])).logits, base_logits)
    loading.release_resident()
    registry._read.cache_clear()


def test_loading_draws_nothing_from_the_rng(tiny):
    """Only the first job of a worker loads the resident model: if loading drew random numbers,
    a job's LoRA initialisation would depend on the jobs before it."""
    from emgeo_utils.models import loading, registry

    torch.manual_seed(0)
    before = torch.random.get_rng_state().clone()
    loading.load_model(registry.entry("tiny-llama"))
    assert torch.equal(before, torch.random.get_rng_state())
