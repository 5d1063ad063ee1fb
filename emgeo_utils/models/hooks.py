"""Reading the residual stream: SAE hook names <-> each architecture's module path.

SAEs name their input in TransformerLens style (`blocks.{L}.hook_resid_post`, as Gemma Scope
and Llama Scope do). In transformers the same activation is the output of decoder layer L;
where that layer lives depends on the architecture.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

LAYER_PATHS = {  # model_type -> attribute path of the decoder layers
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "gpt_oss": "model.layers",
    "qwen2": "model.layers",
    "mistral": "model.layers",
}
RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
MODULE_OUTPUT = re.compile(r"^(?:model\.layers|transformer\.h|model\.model\.layers)\.(\d+)$")  # HF-style names


def resid_post_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def layer_of_hook(hook_name: str) -> int:
    """The decoder layer whose output an SAE reads, from its TransformerLens or HF module name."""
    match = RESID_POST.match(hook_name) or MODULE_OUTPUT.match(hook_name)
    if not match:
        raise ValueError(f"unsupported SAE hook {hook_name!r}: only residual-stream SAEs "
                         "('blocks.<L>.hook_resid_post' or a decoder layer's output) are supported")
    return int(match.group(1))


def decoder_layers(model) -> torch.nn.ModuleList:
    if hasattr(model, "get_base_model"):  # a peft wrapper: its `model` attribute is not the architecture's (Llama's layers)
        model = model.get_base_model()
    model_type = model.config.model_type
    if model_type not in LAYER_PATHS:
        raise ValueError(f"no layer path known for model type {model_type!r}; add it to hooks.LAYER_PATHS")
    module = model
    for part in LAYER_PATHS[model_type].split("."):
        module = getattr(module, part)
    return module


def layer_device(model, layer: int) -> torch.device:
    """Where decoder layer `layer` runs (and so where its output, an SAE's input, lives)."""
    return next(decoder_layers(model)[layer].parameters()).device


def n_layers(model) -> int:
    return len(decoder_layers(model))


def check_layer_index(layer: int, n: int, what: str) -> None:
    """The one layer check: `layer` must index one of `what`'s `n` decoder layers."""
    if not 0 <= layer < n:
        raise ValueError(f"layer {layer} is out of range: {what} has {n} layers (0..{n - 1})")


def check_layer(model, layer: int) -> None:
    check_layer_index(layer, n_layers(model), model.config.model_type)


def check_sae_hook(hook_name: str, layer: int) -> None:
    """Refuse an SAE that reads another layer than the one asked for."""
    if layer_of_hook(hook_name) != layer:
        raise ValueError(f"SAE hook {hook_name!r} does not read layer {layer}")


@contextlib.contextmanager
def capture_resid_post(model, layers: list[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, `captured[L]` holds the output of decoder layer L of the last forward."""
    captured: dict[int, torch.Tensor] = {}
    handles = []
    blocks = decoder_layers(model)
    for layer in layers:
        check_layer(model, layer)

        def hook(_module, _inputs, output, layer=layer):
            # transformers 5 decoder layers return a tensor; older ones a tuple
            captured[layer] = (output[0] if isinstance(output, tuple) else output).detach()

        handles.append(blocks[layer].register_forward_hook(hook))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


class StopForward(Exception):
    """Raised by a hook to skip the layers after the last one needed."""


@contextlib.contextmanager
def stop_after(model, layer: int) -> Iterator[None]:
    """Abort the forward pass once decoder layer `layer` has run (catch StopForward)."""
    handle = decoder_layers(model)[layer].register_forward_hook(lambda *_: (_ for _ in ()).throw(StopForward()))
    try:
        yield
    finally:
        handle.remove()


def final_norm_weight(model) -> torch.Tensor | None:
    """The scale of the final norm before the unembedding (for the logit lens), if any."""
    for path in ("transformer.ln_f", "model.norm"):
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None and getattr(module, "weight", None) is not None:
            if model.config.model_type.startswith("gemma"):  # Gemma's RMSNorm scales by (1 + weight)
                return 1 + module.weight.detach()
            return module.weight.detach()
    return None
