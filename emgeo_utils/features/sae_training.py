"""TopK SAEs trained here with sae-lens's own trainer, measured, saved and read back: one recipe for
the organism's SAEs (`organism.sae`) and for a pretrained model that has none (`features.chat_sae`).

    fit_topk_sae(acts, ...) -> SAE          sae_lens.SAETrainer on an activation tensor, saved in
                                           sae-lens's format and reloaded with `SAE.load_from_disk`
    sae_quality(model, layer, sae, acts, batches)
                                           reconstruction (explained variance, L0, dead and dense
                                           shares) and next-token loss clean / spliced / zero-ablated
    load_saved_sae(artifact), saved_decoder(artifact)
                                           an SAE artifact's loaders (registered by each producer)

Each caller owns its corpus: which activations, which tokens the loss is taken on, and which
positions the reconstruction is spliced into (`batches`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from emgeo_utils.core import cache, seeding
from emgeo_utils.models import batching, hooks

if TYPE_CHECKING:  # imported where used: a warm run only reads the cache, and sae-lens takes seconds to import
    from sae_lens import SAE

DENSE_ABOVE = 0.1  # a feature firing on more than 10% of tokens counts as dense

# One loss batch: (model inputs, labels aligned with the inputs (-100: no loss), splice positions
# [batch, seq] bool, or None to replace the layer's whole output).
LossBatch = tuple[dict, torch.Tensor, "torch.Tensor | None"]


def fit_topk_sae(acts: torch.Tensor, *, expansion: int, k: int, training_samples: int, batch_size: int, lr: float,
                 hook_name: str, model_name: str, seed: int, out: Path) -> SAE:
    """Train a TopK SAE (d_sae = expansion * d_in) on the rows of `acts` with `sae_lens.SAETrainer`
    (cosine-annealed lr to lr/10, 50 warm-up steps, inputs scaled to expected norm, on the CPU), save
    it to `out` in sae-lens's format and return it reloaded from there."""
    from sae_lens import SAE, LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    d_in = acts.shape[1]
    sae_cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=expansion * d_in, k=k,
                                    normalize_activations="expected_average_only_in")
    sae_cfg.metadata.hook_name = hook_name
    sae_cfg.metadata.model_name = model_name
    training = TopKTrainingSAE(sae_cfg)
    trainer_cfg = SAETrainerConfig(total_training_samples=training_samples, train_batch_size_samples=batch_size,
                                   lr=lr, lr_end=lr / 10, lr_scheduler_name="cosineannealing",
                                   lr_warm_up_steps=50, device="cpu",
                                   n_batches_for_norm_estimate=50, logger=LoggingConfig(log_to_wandb=False))
    SAETrainer(trainer_cfg, training, batching.shuffled_batches(acts, batch_size, seeding.generator(seed))).fit()
    training.save_inference_model(str(out))
    return SAE.load_from_disk(str(out))


@torch.no_grad()
def reconstruction_quality(sae: SAE, acts: torch.Tensor) -> dict:
    """Explained variance, L0, dead share (features that never fire), dense share (firing on more
    than DENSE_ABOVE of the tokens) and the token count of `acts` [n_tokens, d_in]."""
    feats = sae.encode(acts)
    recon = sae.decode(feats)
    fired = (feats > 0).float()
    return {"explained_variance": float(1 - ((acts - recon) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum()),
            "l0": float(fired.sum(1).mean()), "dead_share": float((fired.sum(0) == 0).float().mean()),
            "dense_share": float((fired.mean(0) > DENSE_ABOVE).float().mean()), "n_tokens": len(acts)}


@torch.no_grad()
def spliced_next_token_loss(model, layer: int, batches: Callable[[], Iterable[LossBatch]], mode: str = "clean",
                            sae: SAE | None = None) -> float:
    """Mean next-token loss over the labelled tokens of `batches()`. `mode` "spliced" / "zero_ablated"
    replaces decoder layer `layer`'s output by the SAE's reconstruction / by zeros: at a batch's
    splice positions, or (splice None) the whole output."""
    current: dict = {}

    def replace(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        at = current["splice"]
        if at is None:
            new = torch.zeros_like(hidden) if mode == "zero_ablated" else sae.decode(sae.encode(hidden))
        else:
            at = at.to(hidden.device)
            new = hidden.clone()
            new[at] = 0.0 if mode == "zero_ablated" else sae.decode(sae.encode(hidden[at])).to(hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    if mode not in ("clean", "spliced", "zero_ablated"):
        raise ValueError(f"mode must be clean, spliced or zero_ablated, got {mode!r}")
    handle = hooks.decoder_layers(model)[layer].register_forward_hook(replace) if mode != "clean" else None
    total, count = 0.0, 0
    try:
        for inputs, labels, splice in batches():
            current["splice"] = splice
            logits = model(**batching.to_model(inputs, model)).logits[:, :-1].float().cpu()
            target = labels[:, 1:]
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                       ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
    finally:
        if handle:
            handle.remove()
    return total / count


def splice_losses(model, layer: int, sae: SAE, batches: Callable[[], Iterable[LossBatch]]) -> dict:
    """Next-token loss clean, with the SAE spliced in and zero-ablated, and the loss recovered."""
    losses = {mode: spliced_next_token_loss(model, layer, batches, mode, sae)
              for mode in ("clean", "spliced", "zero_ablated")}
    recovered = (losses["zero_ablated"] - losses["spliced"]) / max(losses["zero_ablated"] - losses["clean"], 1e-9)
    return {"loss_clean": losses["clean"], "loss_spliced": losses["spliced"],
            "loss_zero_ablated": losses["zero_ablated"], "loss_recovered": float(recovered)}


def sae_quality(model, layer: int, sae: SAE, acts: torch.Tensor, batches: Callable[[], Iterable[LossBatch]]) -> dict:
    """`reconstruction_quality` on held-out activations and `splice_losses` on held-out batches."""
    return reconstruction_quality(sae, acts) | splice_losses(model, layer, sae, batches)


def load_saved_sae(artifact: cache.Artifact) -> SAE:
    """A saved sae-lens SAE directory (an SAE artifact), loaded by sae-lens."""
    from sae_lens import SAE

    return SAE.load_from_disk(str(artifact.path))


def saved_config(artifact: cache.Artifact) -> dict:
    return json.loads((artifact.path / "cfg.json").read_text())


def saved_decoder(artifact: cache.Artifact) -> tuple[torch.Tensor, str]:
    """(decoder directions [d_sae, d_in], hook name) of a saved SAE, read from its sae-lens weights
    file: the same tensor as `load_saved_sae(artifact).W_dec` (saving folds the input scaling into
    the weights when the config then says none; otherwise sae-lens loads and folds it), without
    importing sae-lens, so geometry on cached SAEs starts at once."""
    cfg = saved_config(artifact)
    if cfg.get("normalize_activations", "none") != "none":
        w_dec = load_saved_sae(artifact).W_dec.detach()
    else:
        w_dec = load_file(str(artifact.path / "sae_weights.safetensors"))["W_dec"]
    return w_dec, cfg["metadata"]["hook_name"]
