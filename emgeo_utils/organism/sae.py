"""The organism's sparse autoencoders, trained with sae-lens's own trainer on the residual stream.

Activations of one layer are collected over fresh pretraining documents, then a TopK SAE is
trained by `sae_lens.SAETrainer`, saved in sae-lens's format and reloaded with
`SAE.load_from_disk`, exactly as a downloaded Gemma Scope SAE would be used.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from emgeo_utils.core import cache, seeding
from emgeo_utils.models import batching, hooks
from emgeo_utils.models.loading import register_artifact_loaders
from emgeo_utils.organism.pretraining import answer_mask, encode_documents, load_pretrained, pad_batch
from emgeo_utils.organism.world import ASSISTANT, END, World, WorldConfig

if TYPE_CHECKING:  # imported where used: a warm run only reads the cache, and sae-lens takes seconds to import
    from sae_lens import SAE


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



@cache.artifact("organism-sae")
def train_sae(lm: cache.Artifact, world: WorldConfig, layer: int, config: SAEConfig = SAEConfig(),
              seed: int = 0, *, out: Path) -> dict:
    """Train a TopK SAE on layer `layer` of the organism `lm`; report its quality."""
    from sae_lens import SAE, LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    with seeding.job_context(seed):
        model, tokenizer = load_pretrained(lm)
        hooks.check_layer(model, layer)
        w = World(world)
        docs = encode_documents(tokenizer, w, config.n_documents, seed=10_000 + seed, max_len=model.config.n_positions)
        held_out = encode_documents(tokenizer, w, 300, seed=20_000 + seed, max_len=model.config.n_positions)
        acts = collect_activations(model, tokenizer, docs, layer)
        d_in = acts.shape[1]
        sae_cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=config.expansion * d_in, k=config.k,
                                        normalize_activations="expected_average_only_in")
        sae_cfg.metadata.hook_name = hooks.resid_post_hook(layer)
        sae_cfg.metadata.model_name = "emgeo-organism"
        training = TopKTrainingSAE(sae_cfg)
        trainer_cfg = SAETrainerConfig(total_training_samples=config.training_tokens, train_batch_size_samples=config.batch_size,
                                       lr=config.lr, lr_end=config.lr / 10, lr_scheduler_name="cosineannealing",
                                       lr_warm_up_steps=50, device="cpu",
                                       n_batches_for_norm_estimate=50, logger=LoggingConfig(log_to_wandb=False))
        trainer = SAETrainer(trainer_cfg, training, batching.shuffled_batches(acts, config.batch_size, seeding.generator(seed)))
        trainer.fit()
        training.save_inference_model(str(out))
        quality = sae_quality(model, tokenizer, SAE.load_from_disk(str(out)), layer, held_out)
    return quality | {"layer": layer, "d_in": d_in, "d_sae": config.expansion * d_in, "n_activations": len(acts)}


@torch.no_grad()
def sae_quality(model, tokenizer, sae: SAE, layer: int, docs: list[list[int]]) -> dict:
    """Explained variance, L0, dead features, and next-token loss with the SAE spliced in."""
    acts = collect_activations(model, tokenizer, docs, layer)
    feats = sae.encode(acts)
    recon = sae.decode(feats)
    resid = ((acts - recon) ** 2).sum()
    total = ((acts - acts.mean(0)) ** 2).sum()
    fired = (feats > 0).any(0)
    losses = {name: next_token_loss(model, tokenizer, docs, layer, sae if name == "spliced" else None,
                                    zero=name == "zero_ablated")
              for name in ("clean", "spliced", "zero_ablated")}
    recovered = (losses["zero_ablated"] - losses["spliced"]) / max(losses["zero_ablated"] - losses["clean"], 1e-9)
    return {"explained_variance": float(1 - resid / total), "l0": float((feats > 0).sum(1).float().mean()),
            "dead_fraction": float(1 - fired.float().mean()), "loss_clean": losses["clean"],
            "loss_spliced": losses["spliced"], "loss_zero_ablated": losses["zero_ablated"],
            "loss_recovered": float(recovered)}


@torch.no_grad()
def next_token_loss(model, tokenizer, docs: list[list[int]], layer: int, sae: SAE | None = None,
                    zero: bool = False, batch_size: int = 64) -> float:
    """Mean next-token loss on answer tokens (what the organism is trained on); optionally with
    layer `layer`'s output replaced by the SAE's reconstruction (or by zeros, the reference
    for 'loss recovered')."""

    def replace(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = torch.zeros_like(hidden) if zero else sae.decode(sae.encode(hidden))
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = hooks.decoder_layers(model)[layer].register_forward_hook(replace) if (sae is not None or zero) else None
    total, count = 0.0, 0
    assistant_id, end_id = tokenizer.convert_tokens_to_ids([ASSISTANT, END])
    try:
        for start in range(0, len(docs), batch_size):
            ids, labels = pad_batch(docs[start:start + batch_size], tokenizer.pad_token_id)
            labels[~answer_mask(ids, assistant_id, end_id)] = -100
            logits = model(input_ids=batching.to_model(ids, model)).logits[:, :-1].cpu()
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((target != -100).sum())
    finally:
        if handle:
            handle.remove()
    return total / count


def load_sae(artifact: cache.Artifact) -> SAE:
    from sae_lens import SAE

    return SAE.load_from_disk(str(artifact.path))


def saved_config(artifact: cache.Artifact) -> dict:
    return json.loads((artifact.path / "cfg.json").read_text())


def load_decoder(artifact: cache.Artifact) -> torch.Tensor:
    """Decoder directions [d_sae, d_in] of a saved SAE, read from its sae-lens weights file: the
    same tensor as `load_sae(artifact).W_dec` (saving folds any input scaling into the weights),
    without importing sae-lens, so geometry on cached SAEs starts at once."""
    if saved_config(artifact).get("normalize_activations", "none") != "none":
        return load_sae(artifact).W_dec.detach()
    return load_file(str(artifact.path / "sae_weights.safetensors"))["W_dec"]


register_artifact_loaders("organism-sae", sae=load_sae,
                          decoder=lambda art: (load_decoder(art), saved_config(art)["metadata"]["hook_name"]))
