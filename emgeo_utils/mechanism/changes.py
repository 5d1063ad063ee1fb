"""What a fine-tune does to every SAE feature, per checkpoint and layer (cached per fine-tune).

For held-out prompts (conversations ending in a question, read where the answer starts: the
last token of the assistant prefix) and for the fine-tune's own training chats (assistant tokens), with the *base* model's
SAEs:
- `observed`: each feature's mean activation change, fine-tune minus base (`observed_pre`: of its
  pre-activation, the encoder's linear read);
- `first_order_pre`: the derivation's prediction of `observed_pre`, the encoder applied to the
  first-order residual change J dθ of the actual update (`first_order`); `first_order`: the same
  where the feature is active in the base model (the TopK's derivative), zero elsewhere;
- `train`: the mean activation change on the training chats, whose top `n_targets` are the
  fine-tune's *targets*;
- `readout_only`: the change a near-linear encoder would show if the fine-tune only added the
  targets' observed mean shift along their decoder directions to the base residuals.
"""

from __future__ import annotations

import torch

from emgeo_utils.core import cache, seeding
from emgeo_utils.features.activations import sae_features
from emgeo_utils.mechanism.first_order import eager_attention, first_order_change, last_position_residuals, lora_update
from emgeo_utils.models import hooks
from emgeo_utils.models.chat import render
from emgeo_utils.models.loading import load_sae, resident_model
from emgeo_utils.training.lora import adapted


def pre_activation(sae, resid: torch.Tensor) -> torch.Tensor:
    """The encoder's linear read before its activation function (sae-lens: process_sae_in, W_enc, b_enc)."""
    pre = sae.process_sae_in(resid) @ sae.W_enc + sae.b_enc
    return pre * sae.W_dec.norm(dim=-1) if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False) else pre


def decoded_shift(sae, values: torch.Tensor) -> torch.Tensor:
    """The residual-space vector that feature activations `values` add through the decoder."""
    return sae.decode(values[None])[0] - sae.decode(torch.zeros_like(values)[None])[0]


@torch.no_grad()
def prompt_residuals(model, tokenizer, prompts: list[list[dict]], layers: list[int], batch_size: int = 32) -> dict:
    """{"base", "tuned", "first_order"}: [n_layers, n_prompts, d] residuals at the last token of each
    prompt (a conversation ending in a user turn, plus the assistant prefix), for the base model,
    the fine-tune, and the first-order change between them."""
    ids = render(tokenizer, prompts, generation_prompt=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    parts = {"base": [], "tuned": [], "first_order": []}
    params, update = lora_update(model)
    with eager_attention(model):
        for start in range(0, len(ids), batch_size):
            forward = last_position_residuals(model, ids[start:start + batch_size], layers, pad)
            parts["base"].append(forward(params))
            parts["tuned"].append(forward({k: params[k] + update[k] if k in update else v for k, v in params.items()}))
            parts["first_order"].append(first_order_change(forward, params, update))
    return {k: torch.cat(v, 1).float().cpu() for k, v in parts.items()}


def _changes(sae, resid: dict, train_base: torch.Tensor, train_tuned: torch.Tensor, n_targets: int) -> dict:
    """Every per-feature measure of one checkpoint and layer (see the module's docstring)."""
    r0, r1, dr = resid["base"], resid["tuned"], resid["first_order"]
    f0, f1 = sae.encode(r0), sae.encode(r1)
    p0 = pre_activation(sae, r0)
    first_pre = pre_activation(sae, r0 + dr) - p0  # the read is affine: this is the encoder applied to dr
    observed = (f1 - f0).mean(0)
    train = (train_tuned - train_base).mean(0)
    targets = torch.argsort(train, descending=True)[:n_targets]
    shift = torch.zeros_like(observed)
    shift[targets] = observed[targets]
    readout = (sae.encode(r0 + decoded_shift(sae, shift)) - f0).mean(0)
    rel = float((dr - (r1 - r0)).norm() / (r1 - r0).norm().clamp(min=1e-12))
    return {"observed": observed, "observed_pre": (pre_activation(sae, r1) - p0).mean(0),
            "first_order_pre": first_pre.mean(0), "first_order": ((f0 > 0) * first_pre).mean(0),
            "train": train, "readout_only": readout, "base_mean": f0.mean(0), "base_frequency": (f0 > 0).float().mean(0),
            "targets": targets, "first_order_relative_error": rel,
            "residual_change_norm": float((r1 - r0).norm(dim=-1).mean()), "residual_norm": float(r0.norm(dim=-1).mean())}


@cache.result("feature-changes")
def feature_changes(base, sae_sources: list, layers: list[int], adapter: cache.Artifact, steps: list[int],
                    prompts: list[list[dict]], train_chats: list[list[dict]], n_targets: int = 8, seed: int = 0) -> dict:
    """{step: {layer: measures}} of one fine-tune (lists of floats; see the module's docstring)."""
    samples = [{"messages": m} for m in train_chats]
    out = {}
    with seeding.job_context(seed), resident_model(base) as (base_model, tokenizer):
        saes = {L: load_sae(src, L).to(hooks.layer_device(base_model, L)) for L, src in zip(layers, sae_sources)}
        train_base = {L: sae_features(base_model, tokenizer, sae, L, samples, None, ("assistant_mean",),
                                      desc="training chats")["assistant_mean"] for L, sae in saes.items()}
        for step in steps:
            with adapted(base_model, adapter, step) as model:
                resid = prompt_residuals(model, tokenizer, prompts, layers)
                tuned = {L: sae_features(model, tokenizer, sae, L, samples, None, ("assistant_mean",),
                                         desc="training chats")["assistant_mean"] for L, sae in saes.items()}
            with torch.no_grad():
                out[str(step)] = {str(L): {k: v.tolist() if torch.is_tensor(v) else v for k, v in
                                           _changes(saes[L], {k: r[i] for k, r in resid.items()}, train_base[L],
                                                    tuned[L], n_targets).items()}
                                  for i, L in enumerate(layers)}
    return out
