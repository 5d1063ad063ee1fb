"""A profile's parameters: `params/<profile>/<NN_slug>.yaml` over a notebook's `parameters` cell.

One place merges and checks them, for the runner (what papermill injects), the report page (the
model a profile ran) and the estimates (the sample counts a profile runs). A missing file means the
notebook's defaults; the folder `params/<profile>/` must exist except for `default`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from emgeo_utils.core import paths
from emgeo_utils.notebook.session import check_parameters, parameter_defaults


def profile_notebooks(profile: str) -> list[str] | None:
    """The notebooks a profile runs (`params/<profile>/profile.yaml`, key `notebooks`), or None: all."""
    listed = profile_settings(profile).get("notebooks")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(n, str) for n in listed)):
        raise SystemExit(f"params/{profile}/profile.yaml: `notebooks` must be a list of prefixes such as [\"00\", \"03\"]")
    return listed


def profile_settings(profile: str) -> dict:
    """`params/<profile>/profile.yaml` as a mapping (empty when the file is absent)."""
    file = paths.params_dir() / profile / "profile.yaml"
    return (yaml.safe_load(file.read_text()) or {}) if file.is_file() else {}


def is_smoke(profile: str) -> bool:
    """A profile sized to check that every cell runs, not to test a claim (`smoke: true`): its pages say so."""
    return bool(profile_settings(profile).get("smoke", False))


def _profile_values(stem: str, profile: str) -> tuple[dict, str]:
    """(what the profile's file sets for a notebook, plus `profile` itself; the file's name for messages).
    A profile.yaml may name a `base` profile (its files apply first) and `every`: values for every notebook
    whose parameters cell has them (e.g. `workers: 1`)."""
    folder = paths.params_dir() / profile
    if not folder.is_dir() and profile != "default":  # default: the notebooks' own parameters
        known = sorted(p.name for p in paths.params_dir().iterdir() if p.is_dir())
        raise SystemExit(f"unknown profile {profile!r}: no folder params/{profile}/ (have {', '.join(known)})")
    settings = profile_settings(profile)
    if settings.get("base") == profile:
        raise SystemExit(f"params/{profile}/profile.yaml: a profile cannot be its own base")
    values = _profile_values(stem, settings["base"])[0] if settings.get("base") else {}
    every = settings.get("every") or {}
    if not isinstance(every, dict):
        raise SystemExit(f"params/{profile}/profile.yaml: `every` must be a mapping of parameter: value")
    values |= {k: v for k, v in every.items() if k in parameter_defaults(stem)}
    file = folder / f"{stem}.yaml"
    if file.is_file():
        own = yaml.safe_load(file.read_text()) or {}
        if not isinstance(own, dict):
            raise SystemExit(f"params/{profile}/{file.name}: expected a mapping of parameter: value")
        values |= own
    values["profile"] = profile
    return values, f"params/{profile}/{file.name}"


def profile_parameters(notebook: str | Path, profile: str) -> dict:
    """Every parameter of a notebook (a path or its stem, e.g. `00_model_organism`) under a profile,
    checked: the notebook's defaults, updated by the profile's file, plus `profile` itself. Fails
    naming the file and the parameter on an unknown name or a wrong type."""
    stem = Path(notebook).stem
    values, source = _profile_values(stem, profile)
    return check_parameters(stem, values, source=source)


def profile_overrides(notebook: str | Path, profile: str) -> dict:
    """The part of `profile_parameters` the profile sets (its file's values, in its order, and
    `profile`), checked like them: what the runner injects, so an executed notebook's injected cell
    shows only what differs from the notebook's own defaults."""
    values, _ = _profile_values(Path(notebook).stem, profile)
    merged = profile_parameters(notebook, profile)
    return {k: merged[k] for k in values}
