"""One entry point to every model: `load(name, layers)` -> (model, tokenizer, {layer: SAE}).

Names come from the registry (`registry.yaml`, plus a user file named by `EMGEO_REGISTRY`).
The organism is trained (and cached) on first use; the paper's models come from the hub.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
from pathlib import Path

import yaml

from . import cache

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


# ----------------------------------------------------------------------------- organism

@dataclasses.dataclass(frozen=True)
class OrganismConfigs:
    """Everything that defines an organism entry, as the dataclasses the package uses."""

    name: str
    layers: tuple[int, ...]
    world: "WorldConfig"
    arch: "ArchConfig"
    pretrain: "PretrainConfig"
    sae: "SAEConfig"
    finetune: "FinetuneConfig"
    eval: "EvalConfig"

    def world_of(self, kind: str) -> "WorldConfig":
        return dataclasses.replace(self.world, kind=kind)


def _build(cls, values: dict, what: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"registry {what}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def organism_configs(name: str = "organism") -> OrganismConfigs:
    from .evaluate import EvalConfig
    from .finetune import FinetuneConfig
    from .organism import ArchConfig, PretrainConfig
    from .sae import SAEConfig
    from .world import WorldConfig

    spec = entry(name)
    if spec.get("kind") != "organism":
        raise ValueError(f"{name!r} is not an organism entry (kind: {spec.get('kind')})")
    return OrganismConfigs(name, tuple(spec.get("layers", [0])),
                           _build(WorldConfig, spec.get("world", {}), f"{name}.world"),
                           _build(ArchConfig, spec.get("arch", {}), f"{name}.arch"),
                           _build(PretrainConfig, spec.get("pretrain", {}), f"{name}.pretrain"),
                           _build(SAEConfig, spec.get("sae", {}), f"{name}.sae"),
                           _build(FinetuneConfig, spec.get("finetune", {}), f"{name}.finetune"),
                           _build(EvalConfig, spec.get("eval", {}), f"{name}.eval"))


def _lm_inputs(name: str, seed: int, world_kind: str) -> dict:
    cfg = organism_configs(name)
    return dict(world=cfg.world_of(world_kind), arch=cfg.arch, train=cfg.pretrain, seed=seed)


def organism_lm(name: str = "organism", seed: int = 0, world_kind: str = "persona") -> cache.Artifact:
    """The trained organism (cached): pretraining seed `seed` in the persona or control world."""
    from .organism import pretrain

    return pretrain(**_lm_inputs(name, seed, world_kind))


def _sae_inputs(name: str, seed: int, world_kind: str, layer: int) -> dict:
    cfg = organism_configs(name)
    return dict(lm=organism_lm(name, seed, world_kind), world=cfg.world_of(world_kind), layer=layer,
                config=cfg.sae, seed=seed)


def organism_sae(name: str = "organism", seed: int = 0, world_kind: str = "persona", layer: int = 0) -> cache.Artifact:
    """The organism's SAE at `layer` (cached; trains the organism first if needed)."""
    from .sae import train_sae

    return train_sae(**_sae_inputs(name, seed, world_kind, layer))


def _organism_lm_cached(name: str = "organism", seed: int = 0, world_kind: str = "persona") -> bool:
    from .organism import pretrain

    return pretrain.is_cached(**_lm_inputs(name, seed, world_kind))


def _organism_sae_cached(name: str = "organism", seed: int = 0, world_kind: str = "persona", layer: int = 0) -> bool:
    from .sae import train_sae

    return _organism_lm_cached(name, seed, world_kind) and train_sae.is_cached(**_sae_inputs(name, seed, world_kind, layer))


organism_lm.is_cached = _organism_lm_cached  # lets jobs.run_all skip finished work without a worker
organism_sae.is_cached = _organism_sae_cached


# ----------------------------------------------------------------------------- loading

def load_model(source: cache.Artifact | Path):
    """(model, tokenizer) in eval mode from an organism artifact; weights from safetensors only."""
    from .organism import load_pretrained

    if isinstance(source, cache.Artifact) and source.kind != "organism-lm":
        raise ValueError(f"don't know how to load a {source.kind!r} artifact as a model")
    return load_pretrained(source)


def load_sae(source: cache.Artifact, layer: int):
    from .hooks import layer_of_hook
    from .sae import load_sae as load_organism_sae

    sae = load_organism_sae(source)
    if layer_of_hook(sae.cfg.metadata.hook_name) != layer:
        raise ValueError(f"SAE hook {sae.cfg.metadata.hook_name!r} does not read layer {layer}")
    return sae


def load(name: str, layers: list[int] | None = None, seed: int = 0, world_kind: str = "persona"):
    """(model, tokenizer, {layer: SAE}) for a registry name; the organism is trained if needed."""
    spec = entry(name)
    if spec.get("kind") != "organism":
        raise NotImplementedError(f"{name!r}: loading {spec.get('kind')!r} models comes with the real-model path")
    layers = list(layers if layers is not None else spec.get("layers", [0]))
    model, tokenizer = load_model(organism_lm(name, seed, world_kind))
    saes = {layer: load_sae(organism_sae(name, seed, world_kind, layer), layer) for layer in layers}
    return model, tokenizer, saes
