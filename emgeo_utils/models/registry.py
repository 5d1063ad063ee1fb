"""The model registry: names -> entries (`registry.yaml`, plus a user file named by `EMGEO_REGISTRY`).

A name is resolved here once, at the entry point (an experiment, the screening command); the
entry (a dict) or the organism's configs built from it is what travels further down.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from pathlib import Path

import yaml

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")
USER_REGISTRY_ENV = "EMGEO_REGISTRY"


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return self.args[0]


Files = tuple[tuple[str, bytes], ...]  # (path, content) of the built-in registry and the user's file, if any


@functools.lru_cache(maxsize=16)
def _read(path: str, data: bytes) -> dict:
    """One registry file's entries, parsed once per content (a rewritten file is read again)."""
    entries = yaml.safe_load(data) or {}
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: a registry is a mapping of model name -> entry")
    return entries


def _files() -> Files:
    """The registry files in force now, with their bytes: the key of everything cached here."""
    files = [str(REGISTRY_FILE)]
    user = os.environ.get(USER_REGISTRY_ENV)
    if user:
        if not Path(user).is_file():
            raise FileNotFoundError(f"{USER_REGISTRY_ENV}={user}: no such file")
        files.append(user)
    return tuple((f, Path(f).read_bytes()) for f in files)


@functools.lru_cache(maxsize=16)
def _entries(files: Files) -> dict[str, dict]:
    entries = {}
    for path, data in files:
        entries |= _read(path, data)
    return entries


def registry() -> dict[str, dict]:
    """All entries (unresolved: `base:` kept), the user's file (if any) overriding the built-in one."""
    return copy.deepcopy(_entries(_files()))


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@functools.lru_cache(maxsize=256)
def _resolved(name: str, files: Files) -> dict:
    entries = _entries(files)
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownModel(f"unknown model {name!r}.{hint} Known: {', '.join(sorted(entries))}. "
                           f"Add your own in a YAML file named by {USER_REGISTRY_ENV}.")
    spec = entries[name]
    if "base" in spec:
        spec = _merge(_resolved(spec["base"], files), {k: v for k, v in spec.items() if k != "base"})
    return spec | {"name": name}


def entry(name: str) -> dict:
    """A registry entry with `base:` inheritance resolved: once per name and registry files' content
    (the user's file named by `EMGEO_REGISTRY` included), handed out as a copy the caller may change."""
    return copy.deepcopy(_resolved(name, _files()))


def source_id(spec: dict) -> str | None:
    """The short name of an entry's weights: its GGUF file's name, else its hub id, else its local path."""
    if spec.get("gguf"):
        return Path(spec["gguf"]["file"]).name
    return spec.get("hub_id") or spec.get("path")


def describe_source(spec: dict) -> str:
    """Where an entry's weights come from, in words: trained here (the organism), a GGUF file of an
    installed package with its sha256, or a hub id / local path, with the dtype the model runs in."""
    dtype = spec.get("dtype", "float32")
    if spec.get("kind") == "organism":
        return "trained here from the synthetic world"
    if spec.get("gguf"):
        g = spec["gguf"]
        return f"{g['file']} of the package {g['package']} (sha256 {g['sha256']}), 4-bit, dequantised to {dtype}"
    return f"{source_id(spec)} ({dtype})"
