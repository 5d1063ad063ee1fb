"""What a cached artifact is (a finished folder and its metadata) and how inputs become a key: a
leaf, so code that only receives artifacts (loading a model, an SAE) does not import the cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

META = "meta.json"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A finished cached artifact: a folder of files plus its metadata."""

    kind: str
    key: str
    path: Path

    @property
    def meta(self) -> dict:
        return json.loads((self.path / META).read_text())

    @property
    def summary(self) -> dict:
        return self.meta.get("summary") or {}

    def __repr__(self) -> str:
        return f"Artifact({self.kind}:{self.key[:12]})"


# --------------------------------------------------------------------------- keys

def canonical(value: Any) -> Any:
    """Reduce inputs to plain JSON so equal inputs hash equally."""
    if isinstance(value, Artifact):
        return {"artifact": value.kind, "key": value.key}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # a config that reads files (the world's text) says so in its fingerprint
        fingerprint = getattr(value, "fingerprint", None)
        return canonical(fingerprint() if callable(fingerprint) else dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return "nan"
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        raise TypeError(
            "a file path cannot be a cache input (its content could change unseen); "
            "pass the content, or an Artifact"
        )
    raise TypeError(f"cannot use a {type(value).__name__} as a cache input")


def hash_json(value: Any) -> str:
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
