"""The code a cached function runs, as one hash: its module's source and every package module it
imports, transitively, at module level or inside functions (a lazy import is still code the
function runs). Layering keeps this closure small: hub-model work never reaches organism code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
from pathlib import Path

PACKAGE = __name__.split(".", 1)[0]  # emgeo_utils


def _source(module_name: str) -> str:
    return Path(importlib.import_module(module_name).__file__).read_text()


def imported_modules(module_name: str, source: str) -> list[str]:
    """The package modules a module's source imports, at module level or inside functions
    (a lazy import is still code the function runs): `from P.x import y` counts `P.x.y` when it
    is a module, else `P.x`; relative imports are resolved against `module_name`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module_name.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(sub if _is_package(base) and importlib.util.find_spec(sub) is not None else base)
    return out


@functools.lru_cache(maxsize=None)
def _is_package(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.submodule_search_locations is not None


@functools.lru_cache(maxsize=None)
def code_hash(module_name: str) -> str:
    """Hash of a module's source and of every package module it imports, transitively."""
    seen: dict[str, str] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = _source(name)
        todo += imported_modules(name, seen[name])
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return digest.hexdigest()
