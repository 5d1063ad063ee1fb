"""The spillover identity (exact, float64) and the toy model of superposition."""

import dataclasses

import numpy as np
import pytest
import torch

from emgeo_utils.core import cache
from emgeo_utils.core import stats
from emgeo_utils.theory import identity as theory
from emgeo_utils.theory import toy as toy_model


@pytest.fixture(scope="module")
def problem() -> theory.ExactProblem:
    return theory.exact_problem(n_features=48, dim=12, d_in=6, batch=16, n_eval=20, seed=3)


def test_exact_identity_holds_to_float64_precision(problem):
    checks = theory.exact_identity_checks(problem, lr=0.3, target=5)
    for name, check in checks.items():
        assert check.max_abs_error < 1e-12, name
        assert check.scale > 1e-2, f"{name}: the step should change the readouts"


def test_dropped_norm_formula_fails(problem):
    wrong = theory.exact_identity_checks(problem, lr=0.3, target=5, predict=theory.dropped_norm_spillover)
    assert not any(c.holds() for c in wrong.values())

    def no_input_norm(readout, direction, x_train, x_eval, lr):  # drops <x_bar, x'>
        return lr * (readout @ direction).expand(len(x_eval), -1)

    check = theory.gradient_step_spillover(problem.weight, problem.readout, problem.readout[0],
                                           problem.x_train, problem.x_eval, 0.3, predict=no_input_norm)
    assert not check.holds()


def test_orthogonal_directions_get_zero_spillover(problem):
    orth = theory.random_dictionary(8, 8, seed=1, orthogonal=True)
    gram = orth @ orth.T
    assert torch.allclose(gram - torch.diag(gram.diag()), torch.zeros_like(gram), atol=1e-12)
    check = theory.gradient_step_spillover(theory.random_dictionary(8, 6, seed=2), orth, orth[2],
                                           problem.x_train, problem.x_eval, 0.5)
    others = torch.cat([check.measured[:, :2], check.measured[:, 3:]], dim=1)
    assert others.abs().max() < 1e-12
    assert check.measured[:, 2].abs().max() > 1e-2
    with pytest.raises(ValueError):
        theory.random_dictionary(9, 8, seed=0, orthogonal=True)


def test_single_input_form_has_the_stated_norms(problem):
    x = problem.x_train[:1]
    readout, t, lr = problem.readout, 4, 0.2
    check = theory.gradient_step_spillover(problem.weight, readout, readout[t], x, x, lr)
    norms = readout.norm(dim=1)
    cos = (readout @ readout[t]) / (norms * norms[t])
    expected = lr * (x.norm() ** 2) * norms * norms[t] * cos
    assert torch.allclose(check.measured[0], expected, atol=1e-12, rtol=0)


def test_sae_only_active_features_respond(problem):
    sae = theory.sae_spillover(problem.weight, problem.encoder, problem.decoder, problem.enc_bias, 0,
                               problem.x_train, problem.x_eval, 0.05, step="write", threshold=0.2)
    assert sae.pre.holds()
    assert sae.post_error_uncrossed < 1e-12
    pre = problem.x_eval @ problem.weight.T @ problem.encoder.T + problem.enc_bias
    inactive = (pre <= 0.2) & ~sae.crossed
    assert inactive.any() and (sae.post_measured[inactive] == 0).all()


SMALL = dataclasses.asdict(toy_model.ToyConfig(n_features=12, dim=4, sparsity=0.9, steps=600, batch=256))


def test_toy_training_is_deterministic(tmp_path, fresh_cache):
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        toy_model.train_toy.__wrapped__(config=dict(SMALL, steps=100), seed=7, out=tmp_path / name)
        runs.append(np.load(tmp_path / name / "toy.npz"))
    assert np.array_equal(runs[0]["weight"], runs[1]["weight"])
    assert np.array_equal(runs[0]["bias"], runs[1]["bias"])
    toy_model.train_toy.__wrapped__(config=dict(SMALL, steps=100), seed=8, out=tmp_path)
    assert not np.array_equal(np.load(tmp_path / "toy.npz")["weight"], runs[0]["weight"])
    first = toy_model.train_toy(config=dict(SMALL, steps=100), seed=7)
    assert toy_model.train_toy(config=dict(SMALL, steps=100), seed=7) == first
    assert cache.stats["build:toy-superposition"] == 1
    assert np.array_equal(toy_model.load_toy(first)[0].numpy(), runs[0]["weight"])


def test_toy_spillover_correlates_with_cosine(fresh_cache):
    toy = toy_model.train_toy(config=SMALL, seed=0)
    assert toy.summary["superposed"] >= 4, "a sparse toy should put features in superposition"
    for trainable in ("embedding", "all"):
        finetune = dataclasses.asdict(toy_model.ToyFinetuneConfig(eval_per_feature=16, trainable=trainable))
        result = toy_model.toy_spillover(toy, sparsity=0.9, finetune=finetune, seed=0)
        frame = toy_model.spillover_frame(result, sparsity=0.9, seed=0)
        corr = toy_model.per_model_correlation(frame).iloc[0]
        assert corr.pearson > 0.5 and corr.spearman > 0.5, (trainable, corr)
        assert all(run["gain"] > 0 for run in result["runs"]), "the fine-tune must amplify its target"
    weight, bias = toy_model.load_toy(toy)
    with pytest.raises(ValueError, match="trainable"):
        toy_model.finetune_target(weight, bias, 0, 0.9, toy_model.ToyFinetuneConfig(trainable="readout"),
                               torch.Generator().manual_seed(0))


def test_bootstrap_ci_brackets_the_mean():
    values = np.random.default_rng(0).normal(1.0, 0.1, 50)
    low, high = stats.bootstrap_ci(values, n_boot=500)
    assert low < values.mean() < high and low > 0.9 and high < 1.1
    rho_low, _ = stats.paired_bootstrap_ci(np.arange(20), np.arange(20) ** 2, stats.spearman, n_boot=200)
    assert rho_low == pytest.approx(1.0)
