"""One entry point to every model: the organism and (see registry) the paper's models."""

from __future__ import annotations

from pathlib import Path

from . import cache


def load_model(source: cache.Artifact | Path):
    """(model, tokenizer) in eval mode, weights from safetensors only."""
    from .organism import load_pretrained

    if isinstance(source, cache.Artifact) and source.kind != "organism-lm":
        raise ValueError(f"don't know how to load a {source.kind!r} artifact as a model")
    return load_pretrained(source)
