"""A content-addressed artifact cache.

Each cached computation is keyed by a hash of everything that changes its result: its
inputs (configs, data, the keys of upstream artifacts) and the source code of the module
that computes it plus every `emgeo_utils` module that module imports. Upstream artifacts
enter by key, so a change anywhere up the chain changes every key below it.

Writes are atomic: an artifact is built in a temporary folder that is renamed into place
only when complete, with `meta.json` (what produced it) beside the files. A run killed
mid-write leaves a temporary folder that is never read and is swept away later. A file lock
stops two processes from building the same artifact at once.

    @artifact("lm")
    def pretrained_lm(world: dict, seed: int, *, out: Path) -> dict: ...
    lm = pretrained_lm(world=cfg, seed=0)        # -> Artifact(kind, key, path)

    @result("eval")
    def evaluate(model: Artifact, n: int) -> dict: ...   # JSON-able value, cached
"""

from __future__ import annotations

import fcntl
import functools
import importlib.metadata
import inspect
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from emgeo_utils.core import numerics, paths
from emgeo_utils.core.artifact import META, Artifact, canonical, hash_json  # noqa: F401  (callers say cache.Artifact)
from emgeo_utils.core.codehash import code_hash

RESULT = "result.json"
# Test-only: seconds to sleep after the temporary folder is complete, before the rename.
PAUSE_ENV = "EMGEO_TEST_PAUSE_BEFORE_RENAME"

stats: Counter = Counter()  # "hit:<kind>" / "build:<kind>" counts in this process


# Libraries whose versions change an artifact's numbers (trained weights, activations, statistics).
NUMERIC_LIBRARIES = ("torch", "transformers", "sae-lens", "peft", "numpy", "scipy")


@functools.lru_cache(maxsize=1)
def numerics_inputs() -> dict:
    """What every key holds besides the inputs and the code: the numerics mode (`numerics.mode_key`:
    a native run never reuses a pinned artifact) and the versions of the numeric libraries."""
    versions = {}
    for dist in NUMERIC_LIBRARIES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {"mode": numerics.mode_key(), "versions": versions}


def key_for(kind: str, fn: Callable, inputs: dict) -> str:
    return hash_json({"kind": kind, "fn": fn.__qualname__, "code": code_hash(fn.__module__),
                      "inputs": inputs, "numerics": numerics_inputs()})


# --------------------------------------------------------------------------- store

def _kind_dir(kind: str) -> Path:
    return paths.cache_dir() / kind


def lookup(kind: str, key: str) -> Artifact | None:
    path = _kind_dir(kind) / key[:20]
    if (path / META).is_file():
        return Artifact(kind, key, path)
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_partial(kind: str) -> list[Path]:
    """Remove temporary folders left by runs that died mid-write."""
    removed = []
    root = _kind_dir(kind)
    if not root.is_dir():
        return removed
    for tmp in root.glob(".tmp-*"):
        try:
            pid = int(tmp.name.split("-")[2])
        except (IndexError, ValueError):
            pid = -1
        if not pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


# flock and rename-into-place are atomic on local file systems; on these their guarantees
# depend on server and client versions, so two nodes may build one artifact at once or read half of one
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "glusterfs", "ceph",
                       "fuse.sshfs", "fuse.s3fs", "9p", "afs"}
NETWORK_OK_ENV = "EMGEO_CACHE_NETWORK_OK"


class CacheLocationError(RuntimeError):
    """The cache sits where its locks are not reliable."""


def filesystem_type(path: Path, mounts_text: str | None = None) -> str:
    """The file system type of the mount holding `path` (from /proc/mounts; "unknown" elsewhere)."""
    try:
        text = Path("/proc/mounts").read_text() if mounts_text is None else mounts_text
    except OSError:
        return "unknown"
    mounts = [line.split()[1:3] for line in text.splitlines() if len(line.split()) >= 3]
    resolved = str(Path(path).resolve())
    best = max((m for m in mounts if resolved == m[0] or resolved.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=("/", "unknown"))
    return best[1]


@functools.lru_cache(maxsize=None)
def check_location(root: str) -> None:
    fs = filesystem_type(Path(root))
    if fs in NETWORK_FILESYSTEMS and os.environ.get(NETWORK_OK_ENV) != "1":
        raise CacheLocationError(
            f"the cache {root} is on a {fs} file system, where its file locks and atomic renames are not "
            f"reliable: two nodes could build the same artifact at once. Give each node a local cache "
            f"(EMGEO_CACHE on local disk) and copy finished artifacts between them, or, if only one node ever "
            f"writes to it, set {NETWORK_OK_ENV}=1.")


def _build(kind: str, key: str, fn: Callable, inputs: dict, call: Callable[[Path], Any]) -> Artifact:
    root = _kind_dir(kind)
    check_location(str(paths.cache_dir()))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key[:20]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per key; others wait, then hit
        found = lookup(kind, key)
        if found:
            stats[f"hit:{kind}"] += 1
            return found
        sweep_partial(kind)
        tmp = root / f".tmp-{key[:20]}-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            start = time.perf_counter()
            summary = call(tmp)
            meta = {
                "kind": kind,
                "key": key,
                "function": f"{fn.__module__}.{fn.__qualname__}",
                "code_hash": code_hash(fn.__module__),
                "inputs": canonical(inputs),
                "numerics": numerics_inputs() | {"in_force": numerics.describe()},
                "summary": canonical(summary) if summary is not None else None,
                "seconds": round(time.perf_counter() - start, 3),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            (tmp / META).write_text(json.dumps(meta, indent=1))
            if os.environ.get(PAUSE_ENV):
                time.sleep(float(os.environ[PAUSE_ENV]))
            os.rename(tmp, root / key[:20])  # atomic: the artifact appears whole or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        stats[f"build:{kind}"] += 1
        return Artifact(kind, key, root / key[:20])


def _bind(fn: Callable, args: tuple, kwargs: dict, skip: tuple[str, ...]) -> dict:
    bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k not in skip}


def artifact(kind: str) -> Callable:
    """Decorate `fn(..., *, out: Path) -> summary | None` so calls return a cached Artifact."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def cached(*args, **kwargs) -> Artifact:
            inputs = _bind(fn, args, kwargs, skip=("out",))
            key = key_for(kind, fn, inputs)
            found = lookup(kind, key)
            if found:
                stats[f"hit:{kind}"] += 1
                return found
            return _build(kind, key, fn, inputs, lambda out: fn(**inputs, out=out))

        cached.key = lambda *a, **k: key_for(kind, fn, _bind(fn, a, k, skip=("out",)))
        cached.is_cached = lambda *a, **k: lookup(kind, cached.key(*a, **k)) is not None
        return cached

    return wrap


def result(kind: str) -> Callable:
    """Decorate `fn(...) -> JSON-able value` so its value is computed once and cached."""

    def wrap(fn: Callable) -> Callable:
        def build(inputs: dict, out: Path) -> None:
            (out / RESULT).write_text(json.dumps(canonical(fn(**inputs))))

        @functools.wraps(fn)
        def cached(*args, **kwargs):
            inputs = _bind(fn, args, kwargs, skip=())
            key = key_for(kind, fn, inputs)
            found = lookup(kind, key)
            if found:
                stats[f"hit:{kind}"] += 1
            else:
                found = _build(kind, key, fn, inputs, lambda out: build(inputs, out))
            return json.loads((found.path / RESULT).read_text())

        cached.key = lambda *a, **k: key_for(kind, fn, _bind(fn, a, k, skip=()))
        cached.is_cached = lambda *a, **k: lookup(kind, cached.key(*a, **k)) is not None
        return cached

    return wrap
