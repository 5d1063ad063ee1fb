"""SmolLM2-135M (the real pretrained model, offline): feature extraction and LoRA training tokens/s
against the bare forward pass on the same batch, one thread.

Feature extraction stops after the SAE's layer (15 of 30) and never computes the 49k-word output
layer, so it should run faster than a full forward: goal >= 1.5x its tokens/s. A LoRA step is a
forward, a backward through every layer (about twice a forward) and an AdamW step on the
adapters: goal >= 0.25x the forward's tokens/s.

The likelihood-share EM measure scores six candidate answers per question: from one prompt pass
and its KV cache (`world_lm_em.shared_prompt_logprobs`) against the scorer it replaced (every
answer with its own prompt, left-padded batches of 32, logits for the answers only, kept below as
the baseline): goal >= 1.4x. Loading the model reads the dequantised copy (`loading.dequantised_gguf`)
against dequantising the GGUF again: goal >= 10x.
"""

from __future__ import annotations

import torch

from emgeo_utils.experiment.real_em import finetune_config
from emgeo_utils.experiment import world_lm_em
from emgeo_utils.experiment.world_lm import WorldLMExperiment, weights
from emgeo_utils.features.activations import sae_features
from emgeo_utils.models import batching, hooks
from emgeo_utils.models import loading
from emgeo_utils.models.loading import load_model
from emgeo_utils.models.registry import entry
from emgeo_utils.world import english
from emgeo_utils.training import lora

from . import common


@torch.no_grad()
def per_answer_logprobs(model, tokenizer, system: str, prompts: list[str], answers: list[str], batch_size: int = 32) -> list[float]:
    """The scorer before the KV cache: each prompt + answer as its own row (the baseline)."""
    seqs, n_answer = world_lm_em.answer_sequences(model, tokenizer, system, prompts, answers)
    out = [0.0] * len(seqs)
    for start in range(0, len(seqs), batch_size):
        idx = list(range(start, min(start + batch_size, len(seqs))))
        batch = batching.token_batch([seqs[i] for i in idx], tokenizer.pad_token_id, side="left")
        attn = batch["attention_mask"]
        keep = max(n_answer[i] for i in idx) + 1
        logp = torch.log_softmax(model(input_ids=batch["input_ids"], attention_mask=attn,
                                       position_ids=(attn.cumsum(1) - 1).clamp(min=0), logits_to_keep=keep).logits, -1)
        for row, i in enumerate(idx):
            n = n_answer[i]
            out[i] = logp[row, keep - n - 1:keep - 1].gather(1, torch.tensor(seqs[i][-n:])[:, None]).sum().item()
    return out


def scoring_rows(model, tokenizer, spec: dict) -> list[common.Row]:
    items = WorldLMExperiment(spec).eval_set("health")["candidates"]["other_domains"][:6]
    system = spec["system_prompt"]
    prompts, answers = [it["question"] for it in items for _ in it["answers"]], [a for it in items for a in it["answers"]]
    paths = {"one pass per answer": lambda: per_answer_logprobs(model, tokenizer, system, prompts, answers),
             "KV-cached prompt": lambda: [world_lm_em.shared_prompt_logprobs(model, tokenizer, system, it["question"], it["answers"])
                                          for it in items]}
    best, _ = common.side_by_side(paths, 3)
    gguf = loading.gguf_file(spec["gguf"])
    load = {"dequantise the GGUF": lambda: loading._from_pretrained(str(gguf.parent), spec, None,
                                                                     {"gguf_file": gguf.name, "local_files_only": True}),
            "read the dequantised copy": lambda: load_model(weights(spec))}
    load_best, _ = common.side_by_side(load, 1)
    print(f"  [SmolLM2-135M, 1 thread] candidate scoring of {len(answers)} answers: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items())
          + "; load: " + ", ".join(f"{k} {v:.2f} s" for k, v in load_best.items()) + " (CPU time)")
    return [common.Row("6 smollm2", "candidate scoring: per answer / KV-cached time", best["one pass per answer"] / best["KV-cached prompt"], "x", (">=", 1.4)),
            common.Row("6 smollm2", "model load: dequantise / cached copy time", load_best["dequantise the GGUF"] / load_best["read the dequantised copy"], "x", (">=", 10.0))]


def run() -> list[common.Row]:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    common.setup(seed=0, threads=1)
    spec = entry("smollm2-135m")
    model, tokenizer = load_model(weights(spec))
    layer = spec["layers"][0]
    samples = english.dataset(common.world(), "health", "inducing", 8, spec["system_prompt"])
    encoded = lora.encode_samples(tokenizer, samples)
    batch = lora.collate(encoded, tokenizer.pad_token_id)
    n_tokens = int(batch["attention_mask"].sum())
    cfg = TopKTrainingSAEConfig(d_in=spec["hidden_size"], d_sae=8 * spec["hidden_size"], k=32)
    cfg.metadata.hook_name = hooks.resid_post_hook(layer)
    sae = TopKTrainingSAE(cfg).eval()
    probes = ["What should I do next?"] * len(samples)
    n_probe_tokens = n_tokens + len(samples) * 14  # the probe question and assistant prefix add about 14 tokens each
    peft_model = lora.lora_model(model, finetune_config(spec))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)

    def forward():
        with torch.no_grad(), peft_model.disable_adapter():
            peft_model(**{k: v for k, v in batch.items() if k != "labels"})

    def extract():
        with peft_model.disable_adapter():
            sae_features(peft_model, tokenizer, sae, layer, samples, probes, ("assistant_mean", "next_turn"), batch_size=8)

    def train_step():
        peft_model.train()
        peft_model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        peft_model.eval()

    paths = {"forward": forward, "extraction": extract, "LoRA step": train_step}
    for path in paths.values():
        path()  # warm-up
    best, _ = common.side_by_side(paths, 3)
    rate = {"forward": n_tokens / best["forward"], "extraction": n_probe_tokens / best["extraction"],
            "LoRA step": n_tokens / best["LoRA step"]}
    print(f"  [SmolLM2-135M, 1 thread] batch of {len(samples)} chats, {n_tokens} tokens: "
          + ", ".join(f"{k}: {v:,.0f} tok/s" for k, v in rate.items()) + " (CPU time)")
    rows = scoring_rows(model, tokenizer, spec)
    return rows + [common.Row("6 smollm2", "feature extraction / forward tok/s", rate["extraction"] / rate["forward"], "x", (">=", 1.5)),
            common.Row("6 smollm2", "LoRA step / forward tok/s", rate["LoRA step"] / rate["forward"], "x", (">=", 0.25))]
