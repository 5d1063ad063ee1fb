"""The competing explanation: features that fire together in ordinary text move together.

`token_activity` records, for every token of a text corpus (the organism's pretraining documents,
or a pretrained model's SAE training chats), which SAE features are active in the base model;
`coactivation` is then each feature's phi coefficient with "some target feature is active".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from emgeo_utils.core import cache, seeding
from emgeo_utils.features.activations import encode_with_probes, residual_batches
from emgeo_utils.models import hooks
from emgeo_utils.models.loading import load_sae, resident_model


@cache.artifact("token-activity")
def token_activity(base, sae_source, layer: int, chats: list[list[dict]], max_tokens: int = 20_000, *, out: Path) -> dict:
    """Which features are active at each token of `chats` (every token but each chat's first)."""
    with seeding.job_context(0), resident_model(base) as (model, tokenizer), torch.no_grad():
        sae = load_sae(sae_source, layer).to(hooks.layer_device(model, layer))
        limit = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        encoded = encode_with_probes(tokenizer, chats, None)
        for enc in encoded:  # a long document is cut at the model's context
            enc.ids, enc.assistant, enc.n_sample = enc.ids[:limit], enc.assistant[:limit], min(enc.n_sample, limit)
        active, n = [], 0
        for _, resid, attn, _ in residual_batches(model, tokenizer, layer, encoded, desc="token activity"):
            first = (attn.long().cumsum(1) == 1) & attn
            acts = sae.encode(resid[attn & ~first].to(sae.W_dec.dtype))
            active.append((acts > 0).cpu())
            n += len(acts)
            if n >= max_tokens:
                break
        matrix = torch.cat(active)[:max_tokens].to(torch.uint8)
        save_file({"active": matrix.contiguous()}, str(out / "active.safetensors"))
    return {"n_tokens": len(matrix), "d_sae": matrix.shape[1]}


def load_activity(artifact: cache.Artifact) -> np.ndarray:
    return load_file(str(artifact.path / "active.safetensors"))["active"].numpy().astype(bool)


def coactivation(active: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per feature, the phi coefficient between its activity and any target's, over tokens (0 where
    either side never varies)."""
    y = active[:, targets].any(1)
    p_x, p_y = active.mean(0), y.mean()
    joint = (active & y[:, None]).mean(0)
    denom = np.sqrt(p_x * (1 - p_x) * p_y * (1 - p_y))
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = (joint - p_x * p_y) / denom
    return np.where(denom > 0, phi, 0.0)
