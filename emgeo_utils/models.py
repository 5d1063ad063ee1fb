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

from typing import TYPE_CHECKING

import yaml

from . import cache

if TYPE_CHECKING:  # the configs import torch-heavy modules; keep `models` light to import
    from .evaluate import EvalConfig
    from .finetune import FinetuneConfig
    from .organism import ArchConfig, PretrainConfig
    from .sae import SAEConfig
    from .world import WorldConfig

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
    world: WorldConfig
    arch: ArchConfig
    pretrain: PretrainConfig
    sae: SAEConfig
    finetune: FinetuneConfig
    eval: EvalConfig

    def world_of(self, kind: str) -> WorldConfig:
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

class ModelUnavailable(RuntimeError):
    """Weights or SAEs that cannot be had here; the message says what to do."""


def _unavailable(what: str, source: str, err: Exception) -> ModelUnavailable:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    return ModelUnavailable(
        f"could not load {what} '{source}' ({type(err).__name__}). "
        + ("The hub is switched off here (HF_HUB_OFFLINE=1): run where it is reachable, or " if offline else "")
        + "log in (`huggingface-cli login` or HF_TOKEN), accept the licence on the model's hub page, "
        "or set HF_HOME to a cache that already holds it. The offline organism (model: organism) needs none of this.")


def hub_source(spec: dict) -> str:
    return str(spec.get("path") or spec["hub_id"])


def load_hub_model(spec: dict, device_map: str | None = None):
    """(model, tokenizer) of a hub or local entry: safetensors only, remote code off unless the
    entry sets `trust_remote_code: true`."""
    import torch
    from huggingface_hub.errors import HfHubHTTPError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = hub_source(spec)
    remote = bool(spec.get("trust_remote_code", False))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=remote)
        model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, trust_remote_code=remote, dtype=dtype,
                                                     device_map=device_map if device_map is not None else spec.get("device_map"))
    except (OSError, HfHubHTTPError) as err:
        raise _unavailable("model", source, err) from err
    if model.config.hidden_size != spec.get("hidden_size", model.config.hidden_size):
        raise ValueError(f"{spec['name']}: the registry says hidden_size {spec['hidden_size']}, "
                         f"the loaded model has {model.config.hidden_size}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def sae_id(spec: dict, layer: int) -> str:
    return spec["sae"]["id"].format(layer=layer)


def check_sae(sae, spec: dict, layer: int):
    """Refuse an SAE whose input width or hook does not match the model and layer; apply an
    input normalisation the SAE carries instead of ignoring it."""
    from .hooks import layer_of_hook

    d_in = spec.get("hidden_size") or spec.get("sae", {}).get("d_in")
    if d_in is not None and sae.cfg.d_in != d_in:
        raise ValueError(f"SAE width mismatch: the SAE reads {sae.cfg.d_in}-dim activations, "
                         f"{spec['name']} has hidden size {d_in}")
    hook = sae.cfg.metadata.hook_name
    if hook and layer_of_hook(hook) != layer:
        raise ValueError(f"SAE hook {hook!r} does not read layer {layer}")
    if sae.cfg.normalize_activations == "expected_average_only_in":
        apply_norm_scaling(sae, spec, layer)
    elif sae.cfg.normalize_activations not in ("none", None):
        raise ValueError(f"SAE input normalisation {sae.cfg.normalize_activations!r} is not supported here")
    return sae


def apply_norm_scaling(sae, spec: dict, layer: int, factor: float | None = None):
    """Fold the release's activation scaling factor into the SAE, so raw activations go in."""
    from sae_lens.loading.pretrained_saes_directory import get_norm_scaling_factor

    if factor is None and "release" in spec.get("sae", {}):
        factor = get_norm_scaling_factor(spec["sae"]["release"], sae_id(spec, layer))
    if factor is None:
        factor = spec.get("sae", {}).get("norm_scaling_factor")
    if factor is None:
        raise ValueError(f"the SAE for {spec['name']} layer {layer} expects normalised inputs but no scaling "
                         "factor is known; add sae.norm_scaling_factor to its registry entry")
    sae.fold_activation_norm_scaling_factor(float(factor))
    return sae


def load_registry_sae(spec: dict, layer: int):
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from sae_lens import SAE

    sae_spec = spec["sae"]
    try:
        if "path" in sae_spec:
            sae = SAE.load_from_disk(str(sae_spec["path"]).format(layer=layer))
        else:
            sae = SAE.from_pretrained(sae_spec["release"], sae_id(spec, layer))
    except (OSError, LocalEntryNotFoundError, HfHubHTTPError) as err:
        raise _unavailable("SAE", sae_spec.get("path") or f"{sae_spec['release']}/{sae_id(spec, layer)}", err) from err
    return check_sae(sae, spec, layer)


def load_model(source: cache.Artifact | dict | Path):
    """(model, tokenizer) in eval mode: an organism artifact, or a registry entry (dict)."""
    from .organism import load_pretrained

    if isinstance(source, dict):
        return load_hub_model(source)
    if isinstance(source, cache.Artifact) and source.kind != "organism-lm":
        raise ValueError(f"don't know how to load a {source.kind!r} artifact as a model")
    return load_pretrained(source)


def load_sae(source: cache.Artifact | dict, layer: int):
    from .hooks import layer_of_hook
    from .sae import load_sae as load_organism_sae

    if isinstance(source, dict):
        return load_registry_sae(source, layer)
    sae = load_organism_sae(source)
    if layer_of_hook(sae.cfg.metadata.hook_name) != layer:
        raise ValueError(f"SAE hook {sae.cfg.metadata.hook_name!r} does not read layer {layer}")
    return sae


def load_decoder(source: cache.Artifact | dict, layer: int):
    """The SAE's decoder directions [d_sae, d_in] (float32, CPU): all the geometry needs."""
    from .hooks import layer_of_hook
    from .sae import load_decoder as load_organism_decoder, saved_config

    if isinstance(source, dict):
        return load_registry_sae(source, layer).W_dec.detach().float().cpu()
    hook = saved_config(source)["metadata"]["hook_name"]
    if layer_of_hook(hook) != layer:
        raise ValueError(f"SAE hook {hook!r} does not read layer {layer}")
    return load_organism_decoder(source).float()


def load(name: str, layers: list[int] | None = None, seed: int = 0, world_kind: str = "persona"):
    """(model, tokenizer, {layer: SAE}) for a registry name; the organism is trained if needed."""
    from .hooks import check_layer

    spec = entry(name)
    layers = list(layers if layers is not None else spec.get("layers", [0]))
    if spec.get("kind") == "organism":
        model, tokenizer = load_model(organism_lm(name, seed, world_kind))
        sources = {layer: organism_sae(name, seed, world_kind, layer) for layer in layers}
    elif spec.get("kind") in ("hub", "local"):
        for layer in layers:
            if not 0 <= layer < spec.get("n_layers", layer + 1):
                raise ValueError(f"layer {layer} is out of range: {name} has {spec['n_layers']} layers (0..{spec['n_layers'] - 1})")
        model, tokenizer = load_model(spec)
        sources = {layer: spec for layer in layers}
    else:
        raise ValueError(f"{name}: unknown kind {spec.get('kind')!r} (organism, hub or local)")
    for layer in layers:
        check_layer(model, layer)
    return model, tokenizer, {layer: load_sae(src, layer) for layer, src in sources.items()}
