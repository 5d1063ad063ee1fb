"""One plotting style and one way to save a figure (PNG + PDF) into the profile's figures/."""

from __future__ import annotations

import re
import matplotlib.pyplot as plt
import seaborn as sns

from emgeo_utils.core import paths
from emgeo_utils.core.stats import seed_summary

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


def save_figure(fig: plt.Figure, name: str, profile: str = "default") -> None:
    """Write `fig` as `<figures>/<name>.png` and `.pdf` (and say where, relative to the project)."""
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


def plot_em_curves(frame, value: str = "ood_misaligned", ylabel: str = "out-of-domain misaligned rate",
                   col: str = "world", hue: str = "condition"):
    """Mean and 95% t-CI over seeds of `value` against fine-tuning step, one panel per `col`."""
    summary = seed_summary(frame, value, [col, hue, "step"])
    panels = list(dict.fromkeys(summary[col]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for name, part in summary[summary[col] == panel].groupby(hue, sort=False):
            part = part.sort_values("step")
            color = PALETTE.get(name)
            ax.plot(part["step"], part["mean"], marker="o", label=name, color=color)
            ax.fill_between(part["step"], part["ci_low"].fillna(part["mean"]), part["ci_high"].fillna(part["mean"]),
                            alpha=0.2, color=color)
        ax.set_title(f"{col}: {panel}")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel(ylabel)
    axes[0][-1].legend(title=hue, fontsize="small")
    return fig
