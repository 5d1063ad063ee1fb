"""SAEs for a pretrained model that has none: TopK, trained with sae-lens on its residual stream.

The corpus is given as chats (rendered through the model's own chat template) plus the model's
own replies to a varied prompt set (`sae_prompts.yaml`, sampled here), so the dictionary sees
more than one world's templates. Quality is measured as the field does, on held-out chats *and*
held-out replies to other prompts: explained variance, L0, dead and dense feature shares, and
next-token loss with the reconstruction spliced in against clean and zero-ablated (loss
recovered). The first token of every sequence (huge norm in most LMs) is left out everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from emgeo_utils.core import cache, seeding
from emgeo_utils.features.activations import encode_with_probes, residual_batches
from emgeo_utils.models import batching, hooks
from emgeo_utils.models.chat import render
from emgeo_utils.models.generation import sample_padded
from emgeo_utils.models.loading import register_artifact_loaders, resident_model

PROMPTS_FILE = Path(__file__).with_name("sae_prompts.yaml")
DENSE_ABOVE = 0.1  # a feature firing on more than 10% of tokens counts as dense


@dataclasses.dataclass(frozen=True)
class ResidualSAEConfig:
    expansion: int = 8
    k: int = 32
    training_samples: int = 600_000  # activations seen (several passes over the corpus)
    batch_size: int = 1024
    lr: float = 1e-3
    outside_replies: int = 3         # sampled replies per training prompt
    max_reply_tokens: int = 96

    def fingerprint(self) -> dict:
        """The config plus a hash of the prompt file the trainer samples replies to: the cache key sees it."""
        return dataclasses.asdict(self) | {"prompts_sha": hashlib.sha256(PROMPTS_FILE.read_bytes()).hexdigest()[:16]}


def prompts() -> dict:
    """{"train": [...], "held_out": [...]}: varied requests outside the world (read where the key hashed it)."""
    return yaml.safe_load(PROMPTS_FILE.read_text())


def sample_replies(model, tokenizer, questions: list[str], n: int, system: str, max_new_tokens: int,
                   seed: int) -> list[list[dict]]:
    """`n` chats per question ending with the model's own reply, sampled at temperature 1."""
    convs = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in questions for _ in range(n)]
    return [c + [{"role": "assistant", "content": r}] for c, r in zip(convs, sample_padded(model, tokenizer, convs, max_new_tokens, seed))]


def _masked_residuals(model, tokenizer, layer: int, chats: list[list[dict]], batch_size: int = 16) -> torch.Tensor:
    """Residual-stream activations at `layer` of every token of `chats` but each sequence's first."""
    encoded = encode_with_probes(tokenizer, chats, None)
    out = []
    for _, resid, attn, _ in residual_batches(model, tokenizer, layer, encoded, batch_size, desc="SAE activations"):
        first = (attn.long().cumsum(1) == 1) & attn
        out.append(resid[attn & ~first].float().cpu())
    return torch.cat(out)



@cache.artifact("residual-sae")
def train_residual_sae(model_source: dict, layer: int, chats: list[list[dict]], held_out_chats: list[list[dict]],
                       system: str, config: ResidualSAEConfig = ResidualSAEConfig(), seed: int = 0, *, out: Path) -> dict:
    """A TopK SAE on decoder layer `layer`'s output of `model_source` (a registry entry's weights)."""
    from sae_lens import SAE, LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    with seeding.job_context(seed), resident_model(model_source) as (model, tokenizer):
        hooks.check_layer(model, layer)
        replies = sample_replies(model, tokenizer, prompts()["train"], config.outside_replies, system,
                                 config.max_reply_tokens, seed)
        held_replies = sample_replies(model, tokenizer, prompts()["held_out"], 2, system, config.max_reply_tokens, seed + 1)
        (out / "replies.json").write_text(json.dumps({"train": replies, "held_out": held_replies}, indent=1))
        acts = _masked_residuals(model, tokenizer, layer, chats + replies)
        d_in = acts.shape[1]
        sae_cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=config.expansion * d_in, k=config.k,
                                        normalize_activations="expected_average_only_in")
        sae_cfg.metadata.hook_name = hooks.resid_post_hook(layer)
        sae_cfg.metadata.model_name = model_source.get("hub_id") or Path(model_source["gguf"]["file"]).name
        training = TopKTrainingSAE(sae_cfg)
        trainer_cfg = SAETrainerConfig(total_training_samples=config.training_samples,
                                       train_batch_size_samples=config.batch_size, lr=config.lr, lr_end=config.lr / 10,
                                       lr_scheduler_name="cosineannealing", lr_warm_up_steps=50, device="cpu",
                                       n_batches_for_norm_estimate=50, logger=LoggingConfig(log_to_wandb=False))
        SAETrainer(trainer_cfg, training, batching.shuffled_batches(acts, config.batch_size, seeding.generator(seed))).fit()
        training.save_inference_model(str(out))
        sae = SAE.load_from_disk(str(out))
        quality = {f"{name}_{k}": v for name, texts in (("world", held_out_chats), ("outside", held_replies))
                   for k, v in sae_quality(model, tokenizer, sae, layer, texts).items()}
    return quality | {"layer": layer, "d_in": d_in, "d_sae": config.expansion * d_in, "n_activations": len(acts),
                      "n_world_chats": len(chats), "n_replies": len(replies)}


@torch.no_grad()
def sae_quality(model, tokenizer, sae, layer: int, chats: list[list[dict]]) -> dict:
    """Explained variance, L0, dead and dense shares, and next-token loss with the SAE spliced in."""
    acts = _masked_residuals(model, tokenizer, layer, chats)
    feats = sae.encode(acts)
    recon = sae.decode(feats)
    fired = (feats > 0).float()
    losses = {name: _next_token_loss(model, tokenizer, chats, layer, sae, name) for name in ("clean", "spliced", "zero_ablated")}
    recovered = (losses["zero_ablated"] - losses["spliced"]) / max(losses["zero_ablated"] - losses["clean"], 1e-9)
    return {"explained_variance": float(1 - ((acts - recon) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum()),
            "l0": float(fired.sum(1).mean()), "dead_share": float((fired.sum(0) == 0).float().mean()),
            "dense_share": float((fired.mean(0) > DENSE_ABOVE).float().mean()), "n_tokens": len(acts),
            "loss_clean": losses["clean"], "loss_spliced": losses["spliced"], "loss_zero_ablated": losses["zero_ablated"],
            "loss_recovered": float(recovered)}


@torch.no_grad()
def _next_token_loss(model, tokenizer, chats: list[list[dict]], layer: int, sae, mode: str, batch_size: int = 16) -> float:
    """Mean next-token loss over every token but the first; `mode` spliced / zero_ablated replaces
    layer `layer`'s output at those positions by the SAE's reconstruction / by zeros."""
    ids_all = render(tokenizer, chats)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keep: dict[str, torch.Tensor] = {}

    def replace(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        at = keep["mask"].to(hidden.device)
        new = hidden.clone()
        new[at] = 0.0 if mode == "zero_ablated" else sae.decode(sae.encode(hidden[at])).to(hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = hooks.decoder_layers(model)[layer].register_forward_hook(replace) if mode != "clean" else None
    total, count = 0.0, 0
    try:
        for start in range(0, len(ids_all), batch_size):
            batch = batching.token_batch(ids_all[start:start + batch_size], pad, side="right")
            attn = batch["attention_mask"].bool()
            mask = attn.clone()
            mask[:, 0] = False
            keep["mask"] = mask
            logits = model(**batching.to_model(batch, model)).logits[:, :-1].float().cpu()
            target = batch["input_ids"][:, 1:].masked_fill(~mask[:, 1:], -100)
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                       ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
    finally:
        if handle:
            handle.remove()
    return total / count


def load_sae(artifact: cache.Artifact):
    from sae_lens import SAE

    return SAE.load_from_disk(str(artifact.path))


def load_decoder(artifact: cache.Artifact) -> tuple[torch.Tensor, str]:
    """Decoder directions [d_sae, d_in] from the saved weights (the input scaling is folded into
    them on saving only when the config says none; otherwise sae-lens loads and folds it)."""
    cfg = json.loads((artifact.path / "cfg.json").read_text())
    if cfg.get("normalize_activations", "none") != "none":
        w_dec = load_sae(artifact).W_dec.detach()
    else:
        w_dec = load_file(str(artifact.path / "sae_weights.safetensors"))["W_dec"]
    return w_dec, cfg["metadata"]["hook_name"]


def replies(artifact: cache.Artifact) -> dict:
    """The sampled replies the SAE was trained on and evaluated with (for cards and the README)."""
    return json.loads((artifact.path / "replies.json").read_text())


register_artifact_loaders("residual-sae", sae=load_sae, decoder=load_decoder)
