"""The geometry statistics can fail: they find planted effects and hold their size on noise."""

import numpy as np
import pytest
import torch

from emgeo_utils.geometry import similarity as geometry
from emgeo_utils.core import stats


def planted_dictionary(n: int = 2000, d: int = 64, k: int = 30, near: float = 0.6, seed: int = 0):
    """Random unit directions, except `near` features that lean toward the harmful set."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, d, generator=g)
    harmful = torch.arange(0, k)
    close = torch.arange(k, 2 * k)
    far = torch.arange(2 * k, 3 * k)
    anchor = w[harmful].mean(0)
    w[close] = near * anchor / anchor.norm() * w[close].norm(dim=1, keepdim=True) + (1 - near) * w[close]
    return w, harmful, close, far


def test_blockwise_max_cosine_equals_dense():
    w, harmful, _, _ = planted_dictionary(n=700)
    dense = geometry.unit_rows(w) @ geometry.unit_rows(w[harmful]).T
    dense[harmful, torch.arange(len(harmful))] = -float("inf")  # exclude self
    blocked = geometry.max_cosine_to_set(w, harmful, block=128)
    assert torch.allclose(blocked, dense.max(1).values, atol=1e-5)


def test_shared_feature_handling():
    w, harmful, close, _ = planted_dictionary(n=300)
    query = torch.cat([close[:5], harmful[:3]])
    include = geometry.set_similarity(w, query, harmful, shared="include")
    assert torch.allclose(include[-3:], torch.ones(3, dtype=torch.float64))
    assert len(geometry.set_similarity(w, query, harmful, shared="drop")) == 5
    others = geometry.set_similarity(w, query, harmful, shared="others")
    assert (others[-3:] < 0.999).all()


def test_rejection_rate_on_unstructured_dictionaries_is_nominal():
    """500 random dictionaries, random sets: rejections at alpha = 0.05 lie in the 99% binomial band."""
    alpha, draws, k = 0.05, 500, 20
    rng = np.random.default_rng(1)
    rejections = 0
    for i in range(draws):
        w = torch.from_numpy(rng.standard_normal((200, 16)))
        idx = torch.from_numpy(rng.permutation(200)[: 3 * k])
        a = geometry.set_similarity(w, idx[:k], idx[2 * k:]).numpy()
        b = geometry.set_similarity(w, idx[k:2 * k], idx[2 * k:]).numpy()
        _, p = stats.mean_difference_test(a, b, n_perm=400, seed=i)
        rejections += p < alpha
    half = 2.576 * np.sqrt(alpha * (1 - alpha) / draws)
    assert alpha - half <= rejections / draws <= alpha + half, rejections / draws


def test_frequency_matched_draws_follow_bins():
    freqs = np.concatenate([np.full(500, 1e-4), np.full(500, 1e-1)])
    query = np.arange(495, 505)  # five rare, five common
    draws = stats.frequency_matched_draws(freqs, query, n_draws=200, seed=0, exclude=query)
    assert (draws[:, :5] < 500).all() and (draws[:, 5:] >= 500).all()
    assert not np.isin(draws, query).any()


def test_auc_and_spearman():
    assert stats.auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert stats.auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    rho, lo, hi, p = stats.spearman_ci(np.arange(20), np.arange(20) + np.random.default_rng(0).normal(0, 2, 20))
    assert rho > 0.8 and lo > 0.5 and p < 0.01
    with pytest.raises(ValueError):
        geometry.set_similarity(torch.eye(3), torch.tensor([0]), torch.tensor([1]), shared="bogus")
