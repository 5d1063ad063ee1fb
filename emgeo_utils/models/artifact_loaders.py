"""Who loads a cached artifact of each kind: its producer registers the functions here, and
`models.loading` looks them up. A leaf, so a producer registers without importing the loading code."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ArtifactLoaders:
    model: Callable | None = None    # artifact -> (model, tokenizer)
    sae: Callable | None = None      # artifact -> SAE
    decoder: Callable | None = None  # artifact -> (W_dec [d_sae, d_in], hook name)


LOADERS: dict[str, ArtifactLoaders] = {}


def register_artifact_loaders(kind: str, **loaders: Callable) -> None:
    LOADERS[kind] = ArtifactLoaders(**loaders)
