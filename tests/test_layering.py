"""The package's shape: folders by role, imports that only point down, no cycle, and cache keys
that follow the code a cached function really runs (and nothing else)."""

import ast
import functools
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import emgeo_utils
from emgeo_utils.core import cache, codehash

# Lowest first: a module may import its own folder and folders before it, never one after it.
LAYERS = ["core", "world", "models", "theory", "judges", "features", "training", "organism", "geometry", "mechanism",
          "experiment", "filtering", "claims", "notebook", "report"]


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(emgeo_utils.__path__, "emgeo_utils.") if not m.ispkg)


@functools.lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    """Every package import of every module, module level and function level alike."""
    names = set(modules())
    return {m: {d for d in codehash.imported_modules(m, codehash._source(m)) if d in names} for m in names}


def folder(module: str) -> str:
    return module.split(".")[1]


def test_every_module_lives_in_a_known_folder():
    assert {folder(m) for m in modules()} == set(LAYERS)
    assert not [m for m in modules() if m.count(".") < 2], "no module sits at the package's top level"


def test_imports_only_point_down():
    upward = [(m, d) for m, deps in graph().items() for d in deps
              if LAYERS.index(folder(d)) > LAYERS.index(folder(m))]
    assert not upward, upward


def test_no_import_cycle():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for d in graph()[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in graph():
        if m not in state:
            visit(m)


def longest_chain() -> list[str]:
    @functools.lru_cache(maxsize=None)
    def chain(m):
        return max(([m] + chain(d) for d in graph()[m]), key=len, default=[m])

    return max((chain(m) for m in graph()), key=len)


def test_import_chains_are_short():
    # screen -> experiment (2) -> organism (3) -> features -> core (2): measured 9 (issue 27: at most 9)
    chain = longest_chain()
    print("longest import chain:", " -> ".join(chain))
    assert len(chain) <= 9, chain


def test_hub_model_loading_never_imports_the_organism():
    closure = _closure("emgeo_utils.training.lora")
    assert not [m for m in closure if folder(m) == "organism"], closure


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph()[m]
    return seen


# ----------------------------------------------------------------------------- cache keys

SPEC = {"name": "tiny", "kind": "local", "path": "/nowhere"}
SAMPLES = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]


def _keys_after_editing(monkeypatch, edited: str) -> tuple[str, str]:
    """(key of a real-model LoRA fine-tune, key of its judged evaluation) with `edited`'s source
    changed by one comment line."""
    from emgeo_utils.experiment import real_em
    from emgeo_utils.training import lora

    real = codehash._source
    monkeypatch.setattr(codehash, "_source", lambda m: real(m) + ("\n# edited\n" if m == edited else ""))
    cache.code_hash.cache_clear()
    try:
        return (lora.finetune_lora.key(SPEC, SAMPLES, lora.FinetuneConfig(), 0),
                real_em.evaluate_real_em.key(SPEC, None, 0, [], {"base_url": "http://127.0.0.1:1", "model": "m"}))
    finally:
        monkeypatch.setattr(codehash, "_source", real)
        cache.code_hash.cache_clear()


@pytest.fixture
def baseline(monkeypatch):
    return _keys_after_editing(monkeypatch, "nothing")


@pytest.mark.parametrize("module", ["emgeo_utils.organism.judge", "emgeo_utils.organism.pretraining",
                                    "emgeo_utils.world.synthetic", "emgeo_utils.claims.record"])
def test_an_organism_edit_leaves_real_model_keys_alone(module, baseline, monkeypatch):
    assert _keys_after_editing(monkeypatch, module) == baseline


@pytest.mark.parametrize("module", ["emgeo_utils.models.loading", "emgeo_utils.training.lora",
                                    "emgeo_utils.models.chat", "emgeo_utils.models.batching"])
def test_a_loading_or_trainer_edit_changes_the_fine_tune_key(module, baseline, monkeypatch):
    assert _keys_after_editing(monkeypatch, module)[0] != baseline[0]


def test_a_judge_edit_changes_the_evaluation_key_only(baseline, monkeypatch):
    lora_key, eval_key = _keys_after_editing(monkeypatch, "emgeo_utils.judges.llm")
    assert lora_key == baseline[0] and eval_key != baseline[1]


def test_lazy_imports_count(monkeypatch):
    """A function-level import is code the function runs: it enters the closure."""
    source = "def f():\n    from emgeo_utils.core import stats\n    import emgeo_utils.core.paths\n"
    assert set(codehash.imported_modules("emgeo_utils.x.y", source)) == {"emgeo_utils.core.stats", "emgeo_utils.core.paths"}
    relative = "from ..core import seeding\nfrom . import z\n"
    assert set(codehash.imported_modules("emgeo_utils.models.x", relative)) >= {"emgeo_utils.core.seeding"}


def _notebooks_in(refs: str, every: set[str]) -> set[str]:
    """'(all)', '(none: ...)' or '(00, 02-07)' -> the notebook numbers it names."""
    if refs in ("all", "everything"):
        return set(every)
    if refs.startswith("none"):
        return set()
    out = set()
    for part in refs.split(","):
        lo, _, hi = part.strip().partition("-")
        out |= {f"{n:02d}" for n in range(int(lo), int(hi or lo) + 1)}
    return out


def _map_lines(text: str) -> dict[str, str]:
    import re
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+(\w+)/\s.*\(([^()]*)\)\s*$", text, re.M) if m.group(1) in LAYERS}


def test_the_folder_maps_name_the_notebooks_that_import_each_folder():
    """docs/layout.md and the package docstring say which notebooks import each folder: checked
    against the notebooks' real `from emgeo_utils.<folder>` imports."""
    import json
    import re
    from emgeo_utils.core import paths
    actual = {f: set() for f in LAYERS}
    notebooks = set()
    for nb in sorted(paths.notebooks_dir().glob("0*.ipynb")):
        notebooks.add(nb.stem[:2])
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        for f in re.findall(r"(?:from|import) emgeo_utils\.(\w+)", code):
            actual[f].add(nb.stem[:2])
    layout = (paths.PROJECT_ROOT / "docs" / "layout.md").read_text()
    for name, text in (("docs/layout.md", layout), ("emgeo_utils/__init__.py", emgeo_utils.__doc__)):
        lines = _map_lines(text)
        assert set(lines) == set(LAYERS), f"{name}: the map lists {sorted(lines)}"
        wrong = {f: (sorted(_notebooks_in(r, notebooks)), sorted(actual[f])) for f, r in lines.items()
                 if _notebooks_in(r, notebooks) != actual[f]}
        assert not wrong, f"{name}: folder -> (map says, notebooks import): {wrong}"


def test_no_two_public_functions_or_classes_share_a_name():
    """A name says which world it serves (`evaluate_organism_em`, `evaluate_real_em`); CLI entry points are `main`."""
    seen: dict[str, list[str]] = {}
    for m in modules():
        tree = ast.parse(Path(importlib.util.find_spec(m).origin).read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_") and node.name != "main":
                seen.setdefault(node.name, []).append(m)
    assert not {name: where for name, where in seen.items() if len(where) > 1}
