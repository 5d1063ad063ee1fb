"""Spillover of a gradient step onto features in superposition (claim 1, "Theory").

Two halves:

* The exact identity. For a linear layer `h = W x` whose features are read linearly,
  `a_j(x) = <r_j, h>`, one SGD step of size `lr` on the loss `-mean_x <u, h(x)>` changes
  every readout by `Delta a_j(x') = lr <x_bar, x'> <r_j, u>` (x_bar: mean training input).
  `u = r_t` is "amplify feature t"; with an SAE, `u = e_t` (raise its encoder readout) or
  `u = d_t` (write more of its decoder direction). `gradient_step_spillover` measures the
  change after a real autograd step; `predicted_spillover` is the closed form, no autograd.

* A toy model of superposition (Elhage et al. 2022): n sparse features squeezed into m < n
  dimensions, `x_hat = ReLU(W^T W x + b)`. We fine-tune it to amplify one feature and
  measure how every other feature's output moves against its cosine with the target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from . import cache, seeding

Tensor = torch.Tensor

# --------------------------------------------------------------------------- exact identity


def random_dictionary(n_features: int, dim: int, seed: int, *, orthogonal: bool = False) -> Tensor:
    """`n_features` float64 directions (rows) in `dim` dimensions, norms uniform in [0.5, 2].

    Norms are deliberately not 1, so a formula that drops a norm factor is visibly wrong.
    `orthogonal=True` (needs n_features <= dim) gives mutually orthogonal rows.
    """
    g = seeding.generator(seed)
    if orthogonal:
        if n_features > dim:
            raise ValueError(f"{n_features} orthogonal directions do not fit in {dim} dimensions")
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        rows = q.T[:n_features]
    else:
        rows = torch.randn(n_features, dim, generator=g, dtype=torch.float64)
        rows = rows / rows.norm(dim=1, keepdim=True)
    norms = 0.5 + 1.5 * torch.rand(n_features, 1, generator=g, dtype=torch.float64)
    return rows * norms


def sgd_step(weight: Tensor, direction: Tensor, x_train: Tensor, lr: float) -> Tensor:
    """The weight after one autograd SGD step on `-mean_x <direction, W x>`."""
    w = weight.detach().clone().requires_grad_(True)
    loss = -((x_train @ w.T) @ direction).mean()
    loss.backward()
    return (w - lr * w.grad).detach()


def predicted_spillover(readout: Tensor, direction: Tensor, x_train: Tensor, x_eval: Tensor,
                        lr: float) -> Tensor:
    """Closed form (no autograd): `Delta a_j(x') = lr <x_bar, x'> <r_j, u>`, shape (eval, features).

    On one input x' = x this is `lr ||x||^2 ||r_j|| ||u|| cos(r_j, u)`.
    """
    return lr * torch.outer(x_eval @ x_train.mean(0), readout @ direction)


@dataclasses.dataclass
class SpilloverCheck:
    """Measured and predicted change of every feature's readout, on every evaluation input."""

    measured: Tensor
    predicted: Tensor

    @property
    def max_abs_error(self) -> float:
        return float((self.measured - self.predicted).abs().max())

    @property
    def scale(self) -> float:
        return float(self.measured.abs().max())

    def holds(self, tol: float = 1e-12) -> bool:
        return self.max_abs_error <= tol * max(1.0, self.scale)


def gradient_step_spillover(weight: Tensor, readout: Tensor, direction: Tensor, x_train: Tensor,
                            x_eval: Tensor, lr: float,
                            predict: Callable[..., Tensor] = predicted_spillover) -> SpilloverCheck:
    """Take one real SGD step that raises `<direction, h>` and compare each readout's change
    `<r_j, h_after(x') - h_before(x')>` with `predict(readout, direction, x_train, x_eval, lr)`."""
    stepped = sgd_step(weight, direction, x_train, lr)
    measured = (x_eval @ stepped.T) @ readout.T - (x_eval @ weight.T) @ readout.T
    return SpilloverCheck(measured, predict(readout, direction, x_train, x_eval, lr))


def dropped_norm_spillover(readout: Tensor, direction: Tensor, x_train: Tensor, x_eval: Tensor,
                           lr: float) -> Tensor:
    """A deliberately wrong closed form (cosine instead of inner product: the norms
    ||r_j|| ||u|| dropped), kept as a negative control the exact check must reject."""
    cos = (readout @ direction) / (readout.norm(dim=1) * direction.norm())
    return lr * torch.outer(x_eval @ x_train.mean(0), cos)


@dataclasses.dataclass
class SaeSpilloverCheck:
    """An SAE-read step: exact pre-activation identity, first-order post-activation prediction."""

    pre: SpilloverCheck
    post_measured: Tensor
    post_predicted: Tensor
    crossed: Tensor  # (eval, features): the step moved a pre-activation across the threshold

    @property
    def post_error_uncrossed(self) -> float:
        """Max error of the gated prediction where no pre-activation crossed its threshold."""
        return float((self.post_measured - self.post_predicted).abs()[~self.crossed].max())


def jump_relu(pre: Tensor, threshold: Tensor) -> Tensor:
    """JumpReLU; `threshold = 0` is ReLU."""
    return pre * (pre > threshold)


def sae_spillover(weight: Tensor, encoder: Tensor, decoder: Tensor, enc_bias: Tensor, target: int,
                  x_train: Tensor, x_eval: Tensor, lr: float, *, step: str = "write",
                  threshold: Tensor | float = 0.0,
                  predict: Callable[..., Tensor] = predicted_spillover) -> SaeSpilloverCheck:
    """Features read by SAE encoder rows `e_j`, written by decoder rows `d_j` (both (n, m)).

    `step="write"` raises `<d_t, h>` (the model writes more of feature t): spillover `<e_j, d_t>`.
    `step="read"` raises `<e_t, h>` (the encoder readout of t): spillover `<e_j, e_t>`.
    Post-activation: to first order only active features respond (`1[pre_j > theta_j]`).
    """
    direction = {"write": decoder[target], "read": encoder[target]}[step]
    threshold = torch.as_tensor(threshold, dtype=encoder.dtype)
    pre_check = gradient_step_spillover(weight, encoder, direction, x_train, x_eval, lr, predict)
    stepped = sgd_step(weight, direction, x_train, lr)
    pre_before = (x_eval @ weight.T) @ encoder.T + enc_bias
    pre_after = (x_eval @ stepped.T) @ encoder.T + enc_bias
    post_measured = jump_relu(pre_after, threshold) - jump_relu(pre_before, threshold)
    post_predicted = (pre_before > threshold) * pre_check.predicted
    crossed = (pre_before > threshold) != (pre_after > threshold)
    return SaeSpilloverCheck(pre_check, post_measured, post_predicted, crossed)


@dataclasses.dataclass
class ExactProblem:
    """A linear layer `h = W x` (float64), inputs, and overcomplete feature directions."""

    weight: Tensor  # (dim, d_in)
    x_train: Tensor
    x_eval: Tensor
    readout: Tensor  # (n_features, dim), n_features > dim: cannot all be orthogonal
    orthogonal: Tensor  # (dim, dim), mutually orthogonal rows
    encoder: Tensor  # SAE encoder rows e_j, close to the decoder rows as in a trained SAE
    decoder: Tensor  # SAE decoder rows d_j
    enc_bias: Tensor


def exact_problem(n_features: int = 64, dim: int = 16, d_in: int = 8, batch: int = 32,
                  n_eval: int = 48, seed: int = 0, encoder_noise: float = 0.1) -> ExactProblem:
    """A random instance: nonnegative training inputs (so <x_bar, x'> is not ~0), Gaussian
    evaluation inputs, and an SAE whose encoder rows are its decoder rows plus a little noise."""
    g = seeding.generator(seed)
    decoder = random_dictionary(n_features, dim, seed + 3)
    return ExactProblem(
        weight=torch.randn(dim, d_in, generator=g, dtype=torch.float64) / d_in ** 0.5,
        x_train=torch.rand(batch, d_in, generator=g, dtype=torch.float64),
        x_eval=torch.randn(n_eval, d_in, generator=g, dtype=torch.float64),
        readout=random_dictionary(n_features, dim, seed + 1),
        orthogonal=random_dictionary(dim, dim, seed + 2, orthogonal=True),
        encoder=decoder + encoder_noise * random_dictionary(n_features, dim, seed + 4),
        decoder=decoder,
        enc_bias=torch.full((n_features,), -0.1, dtype=torch.float64))


def exact_identity_checks(problem: ExactProblem, lr: float = 0.1, target: int = 0,
                          predict: Callable[..., Tensor] = predicted_spillover) -> dict[str, SpilloverCheck]:
    """The identity in four settings: a plain linear readout, orthogonal readouts (spillover
    must be 0), and SAE encoder readouts after a step that raises `<e_t, h>` or `<d_t, h>`."""
    p = problem
    args = (p.x_train, p.x_eval, lr)
    sae = dict(encoder=p.encoder, decoder=p.decoder, enc_bias=p.enc_bias, target=target)
    return {
        "linear readout": gradient_step_spillover(p.weight, p.readout, p.readout[target], *args, predict=predict),
        "orthogonal readouts": gradient_step_spillover(p.weight, p.orthogonal, p.orthogonal[target], *args,
                                                       predict=predict),
        "SAE, step raises e_t readout": sae_spillover(p.weight, **sae, x_train=p.x_train, x_eval=p.x_eval,
                                                      lr=lr, step="read", predict=predict).pre,
        "SAE, step writes d_t": sae_spillover(p.weight, **sae, x_train=p.x_train, x_eval=p.x_eval,
                                              lr=lr, step="write", predict=predict).pre,
    }


# --------------------------------------------------------------------------- toy model


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
class FinetuneConfig:
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


def finetune_target(weight: Tensor, bias: Tensor, target: int, sparsity: float, ft: FinetuneConfig,
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
    ft = FinetuneConfig(**finetune)
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


# --------------------------------------------------------------------------- statistics


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                 stat: Callable = np.mean) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` over the values (one value per independent unit)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n_boot)]
    return tuple(float(q) for q in np.quantile(draws, [(1 - level) / 2, (1 + level) / 2]))


def paired_bootstrap_ci(x, y, stat: Callable, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat(x, y)`, resampling (x, y) pairs together."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        draws.append(stat(x[idx], y[idx]))
    return tuple(float(q) for q in np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2]))


def spearman(x, y) -> float:
    return float(stats.spearmanr(x, y)[0])


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
