"""SAEs for a pretrained model that has none: TopK, trained with sae-lens on its residual stream.

The corpus is given as chats (rendered through the model's own chat template) plus the model's
own replies to a varied prompt set (`sae_prompts.yaml`, sampled here), so the dictionary sees
more than one world's templates. The training and the quality measures are `features.sae_training`'s;
quality is measured as the field does, on held-out chats *and* held-out replies to other prompts:
explained variance, L0, dead and dense feature shares, and next-token loss with the reconstruction
spliced in against clean and zero-ablated (loss recovered). The first token of every sequence (huge
norm in most LMs) is left out everywhere: from the activations, the loss and the splice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

from emgeo_utils.core import cache, seeding
from emgeo_utils.features.activations import encode_with_probes, residual_batches
from emgeo_utils.features.sae_training import LossBatch, fit_topk_sae, load_saved_sae, sae_quality, saved_decoder
from emgeo_utils.models import batching, hooks, registry
from emgeo_utils.models.chat import render
from emgeo_utils.models.generation import sample_padded
from emgeo_utils.models.artifact_loaders import register_artifact_loaders
from emgeo_utils.models.loading import resident_model

PROMPTS_FILE = Path(__file__).with_name("sae_prompts.yaml")


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


def _chat_batches(tokenizer, chats: list[list[dict]], batch_size: int = 16) -> Iterator[LossBatch]:
    """Loss batches of `chats`: labels on every token but each sequence's first, spliced there only."""
    ids_all = render(tokenizer, chats)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(ids_all), batch_size):
        batch = batching.token_batch(ids_all[start:start + batch_size], pad, side="right")
        mask = batch["attention_mask"].bool().clone()
        mask[:, 0] = False
        yield batch, batch["input_ids"].masked_fill(~mask, -100), mask


def _quality(model, tokenizer, sae, layer: int, chats: list[list[dict]]) -> dict:
    return sae_quality(model, layer, sae, _masked_residuals(model, tokenizer, layer, chats),
                       lambda: _chat_batches(tokenizer, chats))


@cache.artifact("residual-sae")
def train_residual_sae(model_source: dict, layer: int, chats: list[list[dict]], held_out_chats: list[list[dict]],
                       system: str, config: ResidualSAEConfig = ResidualSAEConfig(), seed: int = 0, *, out: Path) -> dict:
    """A TopK SAE on decoder layer `layer`'s output of `model_source` (a registry entry's weights)."""
    with seeding.job_context(seed), resident_model(model_source) as (model, tokenizer):
        hooks.check_layer(model, layer)
        replies = sample_replies(model, tokenizer, prompts()["train"], config.outside_replies, system,
                                 config.max_reply_tokens, seed)
        held_replies = sample_replies(model, tokenizer, prompts()["held_out"], 2, system, config.max_reply_tokens, seed + 1)
        (out / "replies.json").write_text(json.dumps({"train": replies, "held_out": held_replies}, indent=1))
        acts = _masked_residuals(model, tokenizer, layer, chats + replies)
        d_in = acts.shape[1]
        sae = fit_topk_sae(acts, expansion=config.expansion, k=config.k, training_samples=config.training_samples,
                           batch_size=config.batch_size, lr=config.lr, hook_name=hooks.resid_post_hook(layer),
                           model_name=registry.source_id(model_source),
                           seed=seed, out=out)
        quality = {f"{name}_{k}": v for name, texts in (("world", held_out_chats), ("outside", held_replies))
                   for k, v in _quality(model, tokenizer, sae, layer, texts).items()}
    return quality | {"layer": layer, "d_in": d_in, "d_sae": config.expansion * d_in, "n_activations": len(acts),
                      "n_world_chats": len(chats), "n_replies": len(replies)}


def replies(artifact: cache.Artifact) -> dict:
    """The sampled replies the SAE was trained on and evaluated with (for cards and the README)."""
    return json.loads((artifact.path / "replies.json").read_text())


register_artifact_loaders("residual-sae", sae=load_saved_sae, decoder=saved_decoder)
