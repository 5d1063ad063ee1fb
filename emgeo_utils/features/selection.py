"""Which SAE features are tied to a dataset: top-k by a contrast against a reference.

`select` ranks features by how much more they fire on one set of samples than on a reference
set: the difference of mean activations (`mean_diff`, the paper-like choice) or that
difference divided by the pooled standard deviation (`standardized`, which favours
consistent features over rare large ones). Notebook 02 saves its sets to a JSON file that the
screening command reads; notebooks 03-05 select the same sets again from the cached features.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from emgeo_utils.core.files import write_text_atomic

CONTRASTS = ("mean_diff", "standardized")


def contrast_of(mean_a: torch.Tensor, var_a: torch.Tensor | None, mean_r: torch.Tensor, var_r: torch.Tensor | None,
                contrast: str = "mean_diff") -> torch.Tensor:
    """The contrast from group means and unbiased variances (the variances only for `standardized`);
    `contrast_scores` and the batched re-selection of `geometry.components` both rank by it."""
    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r}; use one of {CONTRASTS}")
    diff = mean_a - mean_r
    if contrast == "mean_diff":
        return diff
    return diff / ((var_a + var_r) / 2).sqrt().clamp(min=1e-6)


def contrast_scores(acts: torch.Tensor, reference: torch.Tensor, contrast: str = "mean_diff") -> torch.Tensor:
    """Per-feature score of `acts` [n, d_sae] against `reference` [m, d_sae]."""
    a, r = acts.double(), reference.double()
    spread = contrast == "standardized"
    return contrast_of(a.mean(0), a.var(0) if spread else None, r.mean(0), r.var(0) if spread else None, contrast)


def select(acts: torch.Tensor, reference: torch.Tensor, k: int, contrast: str = "mean_diff") -> torch.Tensor:
    """Indices of the top-`k` features by contrast, keeping only features with a positive score."""
    scores = contrast_scores(acts, reference, contrast)
    top = torch.topk(scores, min(k, len(scores))).indices
    return top[scores[top] > 0]


def activation_frequency(acts: torch.Tensor) -> torch.Tensor:
    """Share of samples on which each feature is active (for frequency-matched nulls)."""
    return (acts > 0).float().mean(0)


def save_sets(path: Path, entries: list[dict]) -> Path:
    """Write feature-set entries (each: model, sae, layer, readout, contrast, k, sets) to JSON."""
    payload = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "entries": entries}
    return write_text_atomic(path, json.dumps(payload, indent=1))


def load_sets(path: Path, **match) -> dict:
    """The one entry of a feature-set file whose fields equal `match` (e.g. layer=1, readout=...)."""
    try:
        entries = json.loads(Path(path).read_text())["entries"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a feature-set file written by notebook 02 ({err})") from err
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        options = sorted({tuple((k, e.get(k)) for k in match) for e in entries})
        raise ValueError(f"{path}: {len(found)} entries match {match}; available: {options}")
    return found[0]


def masks(samples: list[dict], domain: str) -> dict[str, torch.Tensor]:
    """Boolean sample masks of a feature corpus (see `experiment.organism_experiment.organism_corpus`) for one
    inducing domain: its inducing / non-inducing / risky-neutral samples, and harmful / helpful
    samples of every *other* domain (so harmful features are never read off the inducing domain).
    The helpful answers of other domains are also the common neutral `reference` that symmetric
    selection contrasts every set with."""
    sets = np.array([s["meta"]["set"] for s in samples])
    own = np.array([s["meta"]["domain"] for s in samples]) == domain
    masks = {name: (sets == name) & own for name in {"inducing", "non_inducing", "risky_neutral"} | set(sets.tolist())}
    masks |= {"harmful": (sets == "harmful") & ~own, "helpful": (sets == "helpful") & ~own}  # any other set: its own domain's
    masks["reference"] = masks["helpful"]
    return {name: torch.from_numpy(m) for name, m in masks.items()}


SELECTIONS = ("symmetric", "mirror")


def domain_sets(acts: torch.Tensor, samples: list[dict], domain: str, k: int, contrast: str = "mean_diff",
                selection: str = "symmetric") -> dict:
    """The feature sets the paper compares, for one inducing domain; harmful = harmful vs helpful
    answers of the other domains.

    `symmetric`: inducing, non-inducing and risky-neutral each against the common reference
    (helpful answers of other domains), so no set is the mirror image of another. `mirror`: the
    earlier choice, inducing vs non-inducing and non-inducing vs inducing; a generic "bad advice"
    feature can then enter the inducing and the harmful set but never the non-inducing one."""
    m = masks(samples, domain)
    out = {"harmful": select(acts[m["harmful"]], acts[m["helpful"]], k, contrast)}
    if selection == "mirror":
        return out | {"inducing": select(acts[m["inducing"]], acts[m["non_inducing"]], k, contrast),
                      "non_inducing": select(acts[m["non_inducing"]], acts[m["inducing"]], k, contrast)}
    if selection != "symmetric":
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    ref = acts[m["reference"]]
    return out | {name: select(acts[m[name]], ref, k, contrast) for name in ("inducing", "non_inducing", "risky_neutral")
                  if m[name].sum() > 1}
