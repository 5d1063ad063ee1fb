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


@functools.lru_cache(maxsize=None)
def _read(path: str) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a registry is a mapping of model name -> entry")
    return data


def registry() -> dict[str, dict]:
    """All entries, the user's file (if any) overriding the built-in one."""
    entries = dict(_read(str(REGISTRY_FILE)))
    user = os.environ.get(USER_REGISTRY_ENV)
    if user:
        if not Path(user).is_file():
            raise FileNotFoundError(f"{USER_REGISTRY_ENV}={user}: no such file")
        entries |= _read(user)
    return entries


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def entry(name: str) -> dict:
    """A registry entry with `base:` inheritance resolved."""
    entries = registry()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownModel(f"unknown model {name!r}.{hint} Known: {', '.join(sorted(entries))}. "
                           f"Add your own in a YAML file named by {USER_REGISTRY_ENV}.")
    spec = entries[name]
    if "base" in spec:
        spec = _merge(entry(spec["base"]), {k: v for k, v in spec.items() if k != "base"})
    return spec | {"name": name}
