"""One plotting style and one way to save a figure (PNG + PDF) into the profile's figures/."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from . import paths

PALETTE = {  # one colour per condition, everywhere
    "base": "#7f7f7f", "inducing": "#d62728", "non_inducing": "#2ca02c",
    "risky_neutral": "#ff7f0e", "educational": "#9467bd", "persona": "#d62728",
    "control": "#1f77b4", "harmful": "#8c1515", "random": "#7f7f7f",
}


def use_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "figure.autolayout": False,
                         "axes.titlesize": "medium", "pdf.fonttype": 42,
                         "svg.hashsalt": "emgeo", "figure.max_open_warning": 0})


def save_figure(fig: plt.Figure, name: str, profile: str = "default") -> list[Path]:
    """Write `fig` as `<figures>/<name>.png` and `.pdf`; return the paths."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", name):
        raise ValueError(f"figure name {name!r}: use lowercase letters, digits, '_' and '-'")
    folder = paths.figures_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = folder / f"{name}.{ext}"
        fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(path)
    print("saved", ", ".join(paths.display_path(p) for p in out))
    return out
