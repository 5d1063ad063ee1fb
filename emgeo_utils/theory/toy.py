"""A toy model of superposition (Elhage et al. 2022) to test claim 1 on a trained network.

n sparse features are squeezed into m < n dimensions, `x_hat = ReLU(W^T W x + b)`. We
fine-tune it to amplify one feature and measure how every other feature's output moves
against its cosine with the target (`toy_spillover`), across sparsities (superposition).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from emgeo_utils.core import cache, seeding

Tensor = torch.Tensor


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Toy model of superposition: `n_features` sparse features in `dim` dimensions."""

    n_features: int = 20
    dim: int = 5
    sparsity: float = 0.9  # S: each feature is zero with probability S
    importance_decay: float = 0.9  # importance of feature i is decay**i
    steps: int = 1000
    batch: int = 512
    lr: float = 1e-2


def sample_features(n_features: int, batch: int, sparsity: float, g: torch.Generator) -> Tensor:
    """Each feature active with probability 1 - S, value uniform in [0, 1] when active."""
    values = torch.rand(batch, n_features, generator=g)
    return values * (torch.rand(batch, n_features, generator=g) >= sparsity)


def toy_forward(x: Tensor, embed: Tensor, readout: Tensor, bias: Tensor) -> Tensor:
    """`x_hat = ReLU(readout^T (embed x) + b)`; embed and readout are (dim, n_features).
    Trained tied (embed = readout = W); fine-tuning may move them apart."""
    return torch.relu((x @ embed.T) @ readout + bias)


@cache.artifact("toy-superposition")
def train_toy(config: dict, seed: int, *, out: Path) -> dict:
    """Train one toy model with Adam on importance-weighted MSE; save W (dim, n) and b."""
    cfg = ToyConfig(**config)
    with seeding.job_context(seed):
        g = seeding.generator(seed)
        weight = torch.empty(cfg.dim, cfg.n_features)
        torch.nn.init.xavier_normal_(weight, generator=g)
        weight.requires_grad_(True)
        bias = torch.zeros(cfg.n_features, requires_grad=True)
        importance = cfg.importance_decay ** torch.arange(cfg.n_features, dtype=torch.float32)
        opt = torch.optim.Adam([weight, bias], lr=cfg.lr)
        for _ in range(cfg.steps):
            x = sample_features(cfg.n_features, cfg.batch, cfg.sparsity, g)
            loss = (importance * (x - toy_forward(x, weight, weight, bias)) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    np.savez(out / "toy.npz", weight=weight.detach().numpy(), bias=bias.detach().numpy())
    return {"final_loss": float(loss.detach()), **geometry_summary(weight.detach())}


def load_toy(toy: cache.Artifact) -> tuple[Tensor, Tensor]:
    """(W, b) of a trained toy model."""
    arrays = np.load(toy.path / "toy.npz")
    return torch.from_numpy(arrays["weight"]), torch.from_numpy(arrays["bias"])


REPRESENTED_NORM = 0.5  # a feature with ||W_i|| below this is (nearly) dropped by the model


def feature_cosines(weight: Tensor) -> Tensor:
    """Cosine between feature directions (columns of W); 0 for dropped features."""
    norms = weight.norm(dim=0)
    unit = weight / norms.clamp_min(1e-8)
    cos = unit.T @ unit
    keep = norms >= REPRESENTED_NORM
    return cos * keep[:, None] * keep[None, :]


def geometry_summary(weight: Tensor) -> dict:
    """Elhage's features per dimension `||W||_F^2 / m`, and how many features are represented,
    and of those how many share their dimension with another (max |cos| > 0.1)."""
    norms = weight.norm(dim=0)
    cos = feature_cosines(weight).fill_diagonal_(0)
    represented = norms >= REPRESENTED_NORM
    superposed = represented & (cos.abs().max(dim=1).values > 0.1)
    return {"features_per_dim": float((weight ** 2).sum() / weight.shape[0]),
            "represented": int(represented.sum()), "superposed": int(superposed.sum())}


@dataclasses.dataclass(frozen=True)
class ToyFinetuneConfig:
    """A few SGD steps raising the target's output on inputs where the target is active."""

    steps: int = 5
    lr: float = 0.05
    batch: int = 512
    eval_per_feature: int = 64  # evaluation inputs per (target, feature) pair
    trainable: str = "embedding"  # "embedding": only h = W x moves, readout fixed; "all": tied W and b


def _eval_batches(n: int, target: int, sparsity: float, per_feature: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """For every feature j: inputs from the data distribution with the target active and j
    present (first tensor) or absent (second); shape (n, per_feature, n)."""
    present = sample_features(n, n * per_feature, sparsity, g).view(n, per_feature, n)
    absent = sample_features(n, n * per_feature, sparsity, g).view(n, per_feature, n)
    rows = torch.arange(n)
    present[rows, :, rows] = 0.5 + 0.5 * torch.rand(n, per_feature, generator=g)
    absent[rows, :, rows] = 0.0
    for batch in (present, absent):
        batch[:, :, target] = 0.5 + 0.5 * torch.rand(n, per_feature, generator=g)
    return present, absent


def finetune_target(weight: Tensor, bias: Tensor, target: int, sparsity: float, ft: ToyFinetuneConfig,
                    g: torch.Generator) -> dict:
    """Fine-tune to amplify `target`; return each feature's mean output change (list of n)."""
    n = weight.shape[1]
    present, absent = _eval_batches(n, target, sparsity, ft.eval_per_feature, g)
    embed = weight.clone().requires_grad_(True)
    if ft.trainable == "all":  # the toy as trained: one tied W, and the bias
        readout, b = embed, bias.clone().requires_grad_(True)
        params = [embed, b]
    elif ft.trainable == "embedding":  # the readout stays fixed, like an SAE over a fine-tuned model
        readout, b = weight, bias
        params = [embed]
    else:
        raise ValueError(f"trainable must be 'embedding' or 'all', got {ft.trainable!r}")
    opt = torch.optim.SGD(params, lr=ft.lr)
    for _ in range(ft.steps):
        x = sample_features(n, ft.batch, sparsity, g)
        x[:, target] = torch.rand(ft.batch, generator=g)
        loss = -toy_forward(x, embed, readout, b)[:, target].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rows = torch.arange(n)
    with torch.no_grad():
        changes = {}
        for name, batch in (("present", present), ("absent", absent)):
            delta = toy_forward(batch, embed, readout, b) - toy_forward(batch, weight, weight, bias)
            changes[name] = delta[rows, :, rows].mean(1)  # feature j's change on its own inputs
            if name == "absent":  # could a feature absent from the input switch on?
                before = toy_forward(batch, weight, weight, bias)[rows, :, rows]
                after = toy_forward(batch, embed, readout, b)[rows, :, rows]
                changes["switched_on"] = ((before <= 0) & (after > 0)).float().mean(1)
        gain = (toy_forward(present, embed, readout, b) - toy_forward(present, weight, weight, bias))[..., target].mean()
    return {"gain": float(gain), **{k: v.tolist() for k, v in changes.items()}}


@cache.result("toy-spillover")
def toy_spillover(toy: cache.Artifact, sparsity: float, finetune: dict, seed: int) -> dict:
    """Amplify each represented feature in turn; per target, every feature's output change."""
    ft = ToyFinetuneConfig(**finetune)
    weight, bias = load_toy(toy)
    targets = [int(i) for i in torch.nonzero(weight.norm(dim=0) >= REPRESENTED_NORM).flatten()]
    out = {"targets": targets, "cos": feature_cosines(weight).tolist(),
           "overlap": (weight.T @ weight).tolist(), "norm": weight.norm(dim=0).tolist(), "runs": []}
    with seeding.job_context(seed):
        for target in targets:
            g = seeding.generator(seeding.derive_seed("toy-finetune", seed, target))
            out["runs"].append(finetune_target(weight, bias, target, sparsity, ft, g))
    return out


def spillover_frame(result: dict, **labels) -> pd.DataFrame:
    """Long table: one row per (target, other feature), changes relative to the target's gain."""
    rows = []
    for target, run in zip(result["targets"], result["runs"]):
        for j in range(len(result["cos"])):
            if j == target:
                continue
            rows.append({**labels, "target": target, "feature": j,
                         "represented": result["norm"][j] >= REPRESENTED_NORM,
                         "cos": result["cos"][target][j], "overlap": result["overlap"][target][j],
                         "gain": run["gain"], "rel_present": run["present"][j] / run["gain"],
                         "rel_absent": run["absent"][j] / run["gain"],
                         "switched_on": run["switched_on"][j]})
    return pd.DataFrame(rows)



def spillover_by_model(frame: pd.DataFrame, by: tuple[str, ...] = ("trainable", "sparsity", "seed")) -> pd.DataFrame:
    """Per toy model: mean |change| of the other features per unit target gain (features
    present in the input, and absent), and the mean |cos| of represented pairs."""
    return frame.groupby(list(by)).apply(lambda d: pd.Series({
        "spillover_present": d.rel_present.abs().mean(),
        "spillover_absent": d.rel_absent.abs().mean(),
        "mean_abs_cos": d[d.represented].cos.abs().mean() if d.represented.any() else 0.0,
    }), include_groups=False).reset_index()


def per_model_correlation(frame: pd.DataFrame, x: str = "cos", y: str = "rel_present",
                          by: tuple[str, ...] = ("sparsity", "seed")) -> pd.DataFrame:
    """Pearson and Spearman correlation of x and y within each toy model, represented pairs only."""
    rows = []
    for key, part in frame[frame.represented].groupby(list(by)):
        rows.append(dict(zip(by, key)) | {
            "pairs": len(part),
            "pearson": stats.pearsonr(part[x], part[y])[0] if len(part) > 2 else np.nan,
            "spearman": stats.spearmanr(part[x], part[y])[0] if len(part) > 2 else np.nan,
            "slope": np.polyfit(part[x], part[y], 1)[0] if len(part) > 2 else np.nan})
    return pd.DataFrame(rows)


def spillover_correlation(spill: pd.DataFrame, mode: str, sparsity: float) -> dict:
    """Claim 1 in the toys, for one fine-tuning mode at one sparsity: each seed's Pearson r of (cos,
    relative change), their mean and t-interval on Fisher's z over seeds (a percentile bootstrap over
    5 seeds covers about 84%, not 95%), the pooled Spearman, and r within aligned pairs (cos > 0.1):
    the cosines cluster (antipodal pairs, small polytopes), so the relation is checked there too."""
    from emgeo_utils.core.stats import correlation_mean_ci, spearman

    part = spill[(spill.trainable == mode) & (spill.sparsity == sparsity)]
    r = per_model_correlation(part, by=("trainable", "sparsity", "seed")).pearson.to_numpy()
    r_mean, lo, hi = correlation_mean_ci(r)
    pooled = part[part.represented]
    aligned = per_model_correlation(part[part.cos > 0.1], by=("trainable", "sparsity", "seed")).pearson.to_numpy()
    return {"r": r_mean, "ci": (lo, hi), "per_seed": r, "pooled_spearman": spearman(pooled.cos, pooled.rel_present),
            "pairs": len(pooled), "aligned_r": np.nanmean(aligned)}
