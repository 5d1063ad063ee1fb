"""The organism's sparse autoencoders, trained with sae-lens's own trainer on the residual stream.

Activations of one layer are collected over fresh pretraining documents, then a TopK SAE is
trained by `sae_lens.SAETrainer` (`features.sae_training`), saved in sae-lens's format and
reloaded with `SAE.load_from_disk`, exactly as a downloaded Gemma Scope SAE would be used. Its
quality is measured on held-out documents, the spliced loss on answer tokens (what the organism is
trained on), with the layer's whole output replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch

from emgeo_utils.core import cache, seeding
from emgeo_utils.features.sae_training import LossBatch, fit_topk_sae, load_saved_sae, sae_quality, saved_decoder
from emgeo_utils.models import batching, hooks
from emgeo_utils.models.artifact_loaders import register_artifact_loaders
from emgeo_utils.organism.pretraining import answer_mask, encode_documents, load_pretrained, pad_batch
from emgeo_utils.world.synthetic import ASSISTANT, END, World, WorldConfig


@dataclasses.dataclass(frozen=True)
class SAEConfig:
    expansion: int = 8               # d_sae = expansion * d_model
    k: int = 8                       # active features per token (TopK)
    n_documents: int = 3000          # fresh documents whose tokens train the SAE
    training_tokens: int = 1_000_000  # samples seen (several passes over the activations)
    batch_size: int = 1024
    lr: float = 3e-3


@torch.no_grad()
def collect_activations(model, tokenizer, docs: list[list[int]], layer: int, batch_size: int = 64) -> torch.Tensor:
    """Residual-stream activations at `layer` for every real (non-pad) token of `docs`."""
    out = []
    with hooks.capture_resid_post(model, [layer]) as captured:
        for start in range(0, len(docs), batch_size):
            batch = docs[start:start + batch_size]
            ids, labels = pad_batch(batch, tokenizer.pad_token_id)
            model(input_ids=batching.to_model(ids, model))
            out.append(captured[layer][(labels != -100).to(captured[layer].device)].cpu())
    return torch.cat(out)


def answer_batches(tokenizer, docs: list[list[int]], batch_size: int = 64) -> Iterator[LossBatch]:
    """Loss batches of `docs`: labels on answer tokens only (after an <assistant> marker, up to
    <end>), and no splice mask: the spliced SAE replaces the layer's whole output."""
    assistant_id, end_id = tokenizer.convert_tokens_to_ids([ASSISTANT, END])
    for start in range(0, len(docs), batch_size):
        ids, labels = pad_batch(docs[start:start + batch_size], tokenizer.pad_token_id)
        labels[~answer_mask(ids, assistant_id, end_id)] = -100
        yield {"input_ids": ids}, labels, None


@cache.artifact("organism-sae")
def train_sae(lm: cache.Artifact, world: WorldConfig, layer: int, config: SAEConfig = SAEConfig(),
              seed: int = 0, *, out: Path) -> dict:
    """Train a TopK SAE on layer `layer` of the organism `lm`; report its quality."""
    with seeding.job_context(seed):
        model, tokenizer = load_pretrained(lm)
        hooks.check_layer(model, layer)
        w = World(world)
        docs = encode_documents(tokenizer, w, config.n_documents, seed=10_000 + seed, max_len=model.config.n_positions)
        held_out = encode_documents(tokenizer, w, 300, seed=20_000 + seed, max_len=model.config.n_positions)
        acts = collect_activations(model, tokenizer, docs, layer)
        d_in = acts.shape[1]
        sae = fit_topk_sae(acts, expansion=config.expansion, k=config.k, training_samples=config.training_tokens,
                           batch_size=config.batch_size, lr=config.lr, hook_name=hooks.resid_post_hook(layer),
                           model_name="emgeo-organism", seed=seed, out=out)
        quality = sae_quality(model, layer, sae, collect_activations(model, tokenizer, held_out, layer),
                              lambda: answer_batches(tokenizer, held_out))
    return quality | {"layer": layer, "d_in": d_in, "d_sae": config.expansion * d_in, "n_activations": len(acts)}


register_artifact_loaders("organism-sae", sae=load_saved_sae, decoder=saved_decoder)
