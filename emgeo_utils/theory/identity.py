"""The exact identity behind claim 1 ("Theory"): a gradient step's spillover onto other features.

For a linear layer `h = W x` whose features are read linearly, `a_j(x) = <r_j, h>`, one SGD
step of size `lr` on the loss `-mean_x <u, h(x)>` changes every readout by
`Delta a_j(x') = lr <x_bar, x'> <r_j, u>` (x_bar: mean training input). `u = r_t` is "amplify
feature t"; with an SAE, `u = e_t` (raise its encoder readout) or `u = d_t` (write more of its
decoder direction). `gradient_step_spillover` measures the change after a real autograd step;
`predicted_spillover` is the closed form, no autograd. The toy model of superposition, where
the identity is tested on a trained network, is in `toy_model.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from emgeo_utils.core import seeding

Tensor = torch.Tensor


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


