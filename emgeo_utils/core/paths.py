"""Where things live: project root, cache, figures, build outputs.

Everything is inside the project by default (git-ignored) and can be moved with an
environment variable, so nothing is written outside the checkout unless asked.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Artifact cache: `$EMGEO_CACHE`, default `<project>/.cache/emgeo`."""
    return Path(os.environ.get("EMGEO_CACHE", PROJECT_ROOT / ".cache" / "emgeo")).resolve()


def figures_dir(profile: str = "default") -> Path:
    """Figures of a profile: `figures/` for the default profile, `figures/<profile>/` otherwise."""
    root = Path(os.environ.get("EMGEO_FIGURES", PROJECT_ROOT / "figures")).resolve()
    return root if profile == "default" else root / profile


def build_dir() -> Path:
    """Executed notebooks and logs: `$EMGEO_BUILD`, default `<project>/build`."""
    return Path(os.environ.get("EMGEO_BUILD", PROJECT_ROOT / "build")).resolve()


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"


def params_dir() -> Path:
    """Profiles: `$EMGEO_PARAMS`, default `<project>/params` (tests point it at a copy)."""
    return Path(os.environ.get("EMGEO_PARAMS", PROJECT_ROOT / "params")).resolve()


def display_path(path: Path | str) -> str:
    """A path as printed in notebooks: relative to the project (or cache) root, never the
    absolute path of the machine that ran it."""
    path = Path(path).resolve()
    for base, label in ((cache_dir(), "$EMGEO_CACHE"), (PROJECT_ROOT, ".")):
        try:
            return str(Path(label) / path.relative_to(base))
        except ValueError:
            continue
    return path.name
