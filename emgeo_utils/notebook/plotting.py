"""One plotting style and one way to save a figure (PNG + PDF) into the profile's figures/."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
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


def plot_persona_probe(probe, worlds: list[str], turns: list[int]):
    """P(harmful answer) against earlier turns in context, per kind of earlier answer, one panel per world."""
    fig, axes = plt.subplots(1, len(worlds), figsize=(4.6 * len(worlds), 3.2), sharey=True, squeeze=False)
    for ax, w in zip(axes[0], worlds):
        for c, color in [("helpful", PALETTE["non_inducing"]), ("neutral", PALETTE["risky_neutral"]),
                         ("coupled", PALETTE["inducing"])]:
            mean = probe[(probe.world == w) & (probe.context == c)].groupby("turns")["p_harmful"].mean()
            ax.plot(mean.index, mean.values, marker="o", label=c, color=color)
        ax.set(title=f"{w} world", xlabel="earlier turns in context", ylabel="P(harmful answer)", xticks=turns)
    axes[0][-1].legend(title="earlier answers")
    return fig


COMPONENT_TITLES = {"overlap": "overlap (shared features, count)", "distinct": "distinct neighbours (cosine)",
                    "combined": "combined, paper-like (cosine)"}


def plot_components(frame, worlds: list[str], components: tuple[str, ...]):
    """Each component per world, one point per pretraining seed with its resampling CI."""
    fig, axes = plt.subplots(1, len(components), figsize=(13, 3.6))
    for ax, comp in zip(axes, components):
        for i, w in enumerate(worlds):
            part = frame[frame.world == w]
            x = i + np.linspace(-0.15, 0.15, len(part)) if len(part) > 1 else np.array([i])
            # a percentile CI of a count (overlap) need not contain the observed value: draw what it covers
            low = (part[comp] - part[f"ci_low_{comp}"]).clip(lower=0)
            high = (part[f"ci_high_{comp}"] - part[comp]).clip(lower=0)
            ax.errorbar(x, part[comp], yerr=[low, high], fmt="o", color=PALETTE.get(w, "#444444"), capsize=3, label=w)
            for xi, (_, r) in zip(x, part.iterrows()):
                ax.annotate(f"s{r.organism_seed}", (xi, r[comp]), fontsize="xx-small", xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(worlds)), worlds)
        ax.set(title=COMPONENT_TITLES[comp], ylabel="inducing minus non-inducing")
    return fig


def plot_dictionaries(by_dict, worlds: list[str]):
    """The combined difference (mean, t-CI over pretraining seeds) for every SAE seed and width."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for i, w in enumerate(worlds):
        part = by_dict[by_dict.world == w].reset_index(drop=True)
        x = np.arange(len(part)) + 0.25 * i
        ax.errorbar(x, part["mean"], yerr=[part["mean"] - part.ci_low, part.ci_high - part["mean"]], fmt="o",
                    color=PALETTE.get(w, "#444444"), capsize=3, label=f"{w} world")
    ax.set_xticks(np.arange(len(part)) + 0.125, [f"seed {s}\nx{e}" for s, e in zip(part.sae_seed, part.expansion)])
    ax.axhline(0, color="k", lw=0.6)
    ax.set(ylabel="combined difference (mean, t-CI over pretraining seeds)", title="every dictionary")
    ax.legend(fontsize="small")
    return fig


FILTER_COLOURS = {"geometry": "#d62728", "random": "#7f7f7f", "judge": "#9467bd", "persona_vector": "#ff7f0e",
                  "oracle": "#2ca02c"}
MEASURE_LABELS = {"ood_misaligned": "out-of-domain misaligned rate", "in_domain_edgy": "in-domain edgy answers (task kept)"}


def plot_filter_curves(steps_runs, filters: list[str], measures: list[str], seeds: list[int]):
    """Each measure against the fraction removed, per filter: mean and 95% CI over `seeds` (the same at every fraction)."""
    unfiltered = steps_runs[steps_runs["filter"] == "none"]
    fig, axes = plt.subplots(1, len(measures), figsize=(5 * len(measures), 3.6), squeeze=False)
    for ax, measure in zip(axes[0], measures):
        for f in filters:
            part = pd.concat([unfiltered.assign(fraction=0.0), steps_runs[steps_runs["filter"] == f]])
            summary = seed_summary(part[part.ft_seed.isin(seeds)], measure, ["fraction"]).sort_values("fraction")
            ax.plot(summary.fraction, summary["mean"], marker="o", label=f, color=FILTER_COLOURS[f])
            ax.fill_between(summary.fraction, summary.ci_low, summary.ci_high, alpha=0.12, color=FILTER_COLOURS[f])
        ax.set(xlabel="fraction removed", ylabel=MEASURE_LABELS[measure])
    axes[0][0].legend(fontsize="small")
    return fig


def plot_potency(potency, by_level, single_title: str, level_title: str):
    """EM of single-answer fine-tunes against the answer's geometry score, and of whole coupling levels against κ."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sc = axes[0].scatter(potency.score, potency.EM, c=potency.kappa, cmap="Reds", edgecolor="k")
    fig.colorbar(sc, ax=axes[0], label="coupling κ")
    axes[0].set(xlabel="mean geometry score of the answer's samples", ylabel="EM of a fine-tune on it (exact)", title=single_title)
    level_mean = by_level.groupby("kappa").EM.agg(["mean", "std"])
    axes[1].errorbar(level_mean.index, level_mean["mean"], yerr=level_mean["std"], marker="o", color="#d62728", capsize=3)
    axes[1].set(xlabel="coupling κ of the level", ylabel="EM (exact), mean ± sd over seeds", title=level_title)
    return fig


def plot_change_vs_cosine(measured: dict, decoders: dict, harmful: dict, runs: list, worlds: list[str], layers: list[int],
                          ft_seeds: list[int], step: int, seed: int, cosine_to_targets):
    """Each feature's activation change after the inducing fine-tunes against its decoder cosine to the
    targets' direction (`cosine_to_targets`; harmful set in red), with the readout-only change binned
    (grey), per world and layer."""
    fig, axes = plt.subplots(len(worlds), len(layers), figsize=(4.4 * len(layers), 3.3 * len(worlds)), squeeze=False)
    for row, w in zip(axes, worlds):
        r = next(x for x in runs if x.world == w and x.seed == seed)
        for ax, L in zip(row, layers):
            for s in ft_seeds:
                ch = measured[(r, "inducing", s)][str(step)][str(L)]
                targets = np.asarray(ch["targets"])
                cos = cosine_to_targets(decoders[(r, L)], targets, np.asarray(ch["train"])[targets])
                keep = np.ones(len(cos), bool)
                keep[targets] = False
                is_harm = np.zeros(len(cos), bool)
                is_harm[harmful[(r, L)]] = True
                obs, ro = np.asarray(ch["observed"]), np.asarray(ch["readout_only"])
                first = s == ft_seeds[0]
                ax.scatter(cos[keep & ~is_harm], obs[keep & ~is_harm], s=5, color="#555555", alpha=0.4, label="features" if first else None)
                ax.scatter(cos[keep & is_harm], obs[keep & is_harm], s=12, color="#d62728", label="harmful set" if first else None)
                bins = np.array_split(np.argsort(cos[keep]), 12)
                ax.plot([cos[keep][b].mean() for b in bins], [ro[keep][b].mean() for b in bins], color="#999999", lw=2,
                        label="readout only" if first else None)
            ax.axhline(0, color="k", lw=0.5)
            ax.set(title=f"{w} world, layer {L}", xlabel="decoder cosine to the targets' direction", ylabel="mean activation change")
    axes[0][0].legend(fontsize="small")
    return fig


def plot_rho_over_checkpoints(table, at, worlds: list[str], conditions: list[str], steps: list[int], layer: int, step: int):
    """Left: Spearman ρ of the change with the cosine per checkpoint (observed; dashed: beyond the readout).
    Right: the partial correlations with geometry and with co-activation at `step` (mean, t-CI over seeds)."""
    from emgeo_utils.core.stats import mean_ci

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    colors = {c: PALETTE.get(c, "#444444") for c in conditions}
    for w, ls_world in zip(worlds, ["-", ":"]):
        for c in conditions:
            part = table[(table.world == w) & (table.condition == c) & (table.layer == layer)].groupby("step")
            axes[0].plot(steps, part.rho_geometry.mean().reindex(steps), marker="o", ls=ls_world, color=colors[c], label=f"{w}, {c}")
            axes[0].plot(steps, part.rho_beyond_readout.mean().reindex(steps), marker="x", ls="--", color=colors[c], alpha=0.6)
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set(xlabel="fine-tuning step", ylabel="Spearman ρ with the cosine", title="solid/dotted: observed; dashed: beyond readout")
    axes[0].legend(fontsize="x-small", ncol=2)
    bars = []
    for w in worlds:
        for c in conditions:
            per_seed = at[(at.world == w) & (at.condition == c)].groupby("organism_seed")[["partial_geometry", "partial_coactivation"]].mean()
            for col in per_seed:
                m, lo, hi = mean_ci(per_seed[col].to_numpy())
                bars.append({"group": f"{w}\n{c}", "predictor": col.removeprefix("partial_"), "mean": m, "lo": lo, "hi": hi})
    bars = pd.DataFrame(bars)
    x = np.arange(bars.group.nunique())
    for i, (pred, color) in enumerate([("geometry", "#1f77b4"), ("coactivation", "#ff7f0e")]):
        part = bars[bars.predictor == pred]
        axes[1].bar(x + 0.38 * i, part["mean"], 0.38, yerr=[part["mean"] - part.lo, part.hi - part["mean"]], color=color,
                    capsize=3, label=f"{pred} (the other held fixed)")
    axes[1].set_xticks(x + 0.19, bars.group.unique(), fontsize="x-small")
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set(ylabel="partial Spearman ρ with the change", title=f"step {step}, layer {layer}")
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_em_bars(summary, base, worlds: list[str], conditions: list[str], step: int):
    """Each condition's rate at `step` (mean, 95% t-CI over seeds) per world; dotted: the base model's."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    width = 0.8 / len(worlds)
    for i, w in enumerate(worlds):
        part = summary[summary.world == w].set_index("condition").reindex(conditions)
        x = np.arange(len(conditions)) + i * width
        ax.bar(x, part["mean"], width, yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
               color=PALETTE.get(w, "#444444"), label=f"{w} world", capsize=3)
        ax.axhline(base.loc[w, "ood_misaligned"].mean(), color=PALETTE.get(w, "#444444"), ls=":", lw=1)
    ax.set_xticks(np.arange(len(conditions)) + width * (len(worlds) - 1) / 2, conditions)
    ax.set(ylabel="out-of-domain misaligned rate", title=f"step {step} (dotted: base model)")
    ax.legend()
    return fig


def plot_coefficients(inducing, worlds: list[str]):
    """Two-predictor rank regression of the change: geometry against co-activation coefficient, one point per fine-tune."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for w in worlds:
        part = inducing[inducing.world == w]
        ax.scatter(part.beta_coactivation, part.beta_geometry, color=PALETTE.get(w, "#444444"), label=f"{w} world")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="co-activation coefficient", ylabel="geometry coefficient",
           title="two-predictor rank regression (inducing, one point per fine-tune)")
    ax.legend(fontsize="small")
    return fig


def plot_similarities(scores_by_world: dict, reduce: str, where: str):
    """Each selected feature's cosine to the harmful set, inducing and comparison sets, shared features in red."""
    fig, axes = plt.subplots(1, len(scores_by_world), figsize=(4.6 * len(scores_by_world), 3.4), sharey=True, squeeze=False)
    for ax, (w, scores) in zip(axes[0], scores_by_world.items()):
        sns.stripplot(data=scores, x="set", y="similarity", hue="shared", ax=ax, palette={True: "#8c1515", False: "#7f7f7f"},
                      jitter=0.25, size=4)
        ax.set(title=f"{w} world ({where})", xlabel="", ylabel=f"{reduce} cosine to harmful set")
    return fig


def plot_pretraining_loss(built: dict, highlight_seed: int):
    """Each organism's pretraining loss curve (its first seed drawn solid)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for r, parts in built.items():
        curve = parts["lm"].summary["loss_curve"]
        ax.plot(np.linspace(0, parts["lm"].summary["steps"], len(curve)), curve, label=f"{r.world} seed {r.seed}",
                color=PALETTE[r.world], alpha=0.5 + 0.5 * (r.seed == highlight_seed))
    ax.set(xlabel="step", ylabel="next-token loss on answers", yscale="log", title="pretraining")
    ax.legend(fontsize="small")
    return fig


def plot_score_variants(variants):
    """The AUC (coupled vs neutral) of every score and readout, one column per score."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, (_, part) in enumerate(variants.groupby("score", sort=False)):
        ax.scatter(np.arange(len(part)) * 0 + i, part.AUC, label=None)
        for _, r in part.iterrows():
            ax.annotate(r.readout.replace("_", " "), (i, r.AUC), fontsize="xx-small", xytext=(4, 0), textcoords="offset points")
    ax.set_xticks(range(variants.score.nunique()), variants.score.unique(), rotation=20, ha="right", fontsize="small")
    ax.axhline(0.5, color="grey", ls=":")
    ax.set(ylabel="AUC coupled vs neutral", title="score variants on the 50/50 mixture")
    return fig
