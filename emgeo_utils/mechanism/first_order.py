"""How a fine-tune moves the residual stream, to first order in its parameter update.

Claim 1's derivation: a parameter update dθ changes any readout h by J dθ to first order, and an
SAE feature's pre-activation by its encoder row times that. A LoRA fine-tune's update of every
adapted weight is exactly scale * B A (B starts at zero), so scaling every B by t walks the
weights along the actual AdamW update, from the base model (t = 0) to the fine-tune (t = 1).
`first_order_change` is the derivative at t = 0 (forward-mode AD); the measured change is the
difference between t = 1 and t = 0, computed by the same function.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from emgeo_utils.models import batching, hooks


def first_order_change(forward: Callable[[dict], torch.Tensor], params: dict, update: dict) -> torch.Tensor:
    """d/dt forward(params + t * update) at t = 0: the first-order change of the output under `update`."""
    def at(t):
        return forward({k: v + t * update[k] if k in update else v for k, v in params.items()})

    t0 = torch.zeros((), dtype=next(iter(update.values())).dtype)
    return torch.func.jvp(at, (t0,), (torch.ones_like(t0),))[1]


def lora_update(peft_model) -> tuple[dict, dict]:
    """(the base model's parameters, the update to the fine-tune) of a model with a LoRA adapter
    attached: every LoRA B matrix zeroed, and the B matrices themselves."""
    params = {k: v.detach() for k, v in peft_model.named_parameters()}
    update = {k: v for k, v in params.items() if ".lora_B." in k}
    if not update:
        raise ValueError("no LoRA B matrices found: attach an adapter (training.lora.adapted) first")
    return params | {k: torch.zeros_like(v) for k, v in update.items()}, update


@contextlib.contextmanager
def eager_attention(model):
    """Forward-mode AD has no rule for the fused attention kernels: plain attention inside the block."""
    config = model.config
    before = config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def last_position_residuals(model, ids: list[list[int]], layers: list[int], pad_id: int) -> Callable[[dict], torch.Tensor]:
    """forward(params) -> [n_layers, batch, d]: each prompt's residual stream after every layer of
    `layers` at its last token (left-padded), the model run with `params` (functional_call); the
    captured outputs are not detached, so the function can be differentiated."""
    batch = batching.token_batch(ids, pad_id, side="left")
    attn = batch["attention_mask"]
    inputs = batching.to_model({"input_ids": batch["input_ids"], "attention_mask": attn,
                                "position_ids": (attn.cumsum(1) - 1).clamp(min=0)}, model)
    blocks = hooks.decoder_layers(model)

    def forward(params: dict) -> torch.Tensor:
        captured = {}

        def keep(_module, _inputs, output, layer):
            captured[layer] = (output[0] if isinstance(output, tuple) else output)[:, -1]
            if len(captured) == len(layers):
                raise hooks.StopForward

        handles = [blocks[L].register_forward_hook(lambda m, i, o, L=L: keep(m, i, o, L)) for L in layers]
        try:
            torch.func.functional_call(model, params, (), inputs)
        except hooks.StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return torch.stack([captured[L] for L in layers])

    return forward
