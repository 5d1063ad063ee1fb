"""Filters remove exactly what they say; the geometry score separates planted samples."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emgeo_utils.filtering import ranking as filtering
from emgeo_utils.core import stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n,fraction", [(10, 0.1), (10, 0.35), (7, 0.5), (256, 0.3), (5, 0.0), (3, 0.99)])
def test_each_filter_removes_exactly_floor_fraction(n, fraction):
    expected = n - int(np.floor(fraction * n))
    rng = np.random.default_rng(0)
    assert len(filtering.keep_lowest(rng.random(n), fraction)) == expected
    assert len(filtering.keep_lowest(np.zeros(n), fraction)) == expected  # ties
    assert len(filtering.keep_random(n, fraction, seed=1)) == expected
    assert len(filtering.keep_oracle(rng.random(n) < 0.5, fraction, seed=2)) == expected


def test_filters_remove_the_right_samples():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert filtering.keep_lowest(scores, 0.5).tolist() == [0, 2]
    coupled = np.array([False, True, False, True, True])
    kept = filtering.keep_oracle(coupled, 0.4, seed=0)
    assert coupled[np.setdiff1d(np.arange(5), kept)].all()  # the removed ones are coupled
    with pytest.raises(ValueError):
        filtering.n_to_remove(10, 1.0)


def planted(n_samples=400, d_sae=300, d_in=32, seed=0):
    """Samples whose active features are near the harmful set (label 1) or far from it (0)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_sae, d_in, generator=g)
    harmful = torch.arange(20)
    anchor = w[harmful].mean(0)
    near = torch.arange(20, 60)
    w[near] = 0.7 * anchor / anchor.norm() * w[near].norm(dim=1, keepdim=True) + 0.3 * w[near]
    far = torch.arange(60, d_sae)
    rng = np.random.default_rng(seed)
    labels = rng.random(n_samples) < 0.5
    acts = torch.zeros(n_samples, d_sae)
    for i, lab in enumerate(labels):
        pool = near if lab else far
        active = pool[torch.from_numpy(rng.choice(len(pool), 4, replace=False))]
        acts[i, active] = torch.from_numpy(rng.uniform(0.5, 2.0, 4)).float()
        acts[i, far[torch.from_numpy(rng.choice(len(far), 3, replace=False))]] = torch.from_numpy(rng.uniform(0.1, 1.0, 3)).float()
    return w, harmful, acts, labels


@pytest.mark.parametrize("variant,min_auc", [("weighted_mean", 0.95), ("weighted_sum", 0.8), ("max_active", 0.7)])
def test_geometry_score_separates_planted_samples(variant, min_auc):
    """The primary score (weighted_mean) must reach AUC 0.95; the variants are weaker by design:
    weighted_sum mixes in total activation, max_active sees only the single closest feature."""
    w, harmful, acts, labels = planted()
    scores = filtering.geometry_scores(acts, filtering.feature_proximity(w, harmful, block=64), variant)
    assert stats.auc(scores, labels) >= min_auc
    shuffled = np.random.default_rng(1).permutation(labels)
    assert abs(stats.auc(scores, shuffled) - 0.5) < 0.08


def test_proximity_blocks_match_dense_and_score_is_bounded():
    w, harmful, acts, _ = planted(n_samples=50)
    prox = filtering.feature_proximity(w, harmful, block=7)
    dense = (torch.nn.functional.normalize(w, dim=1) @ torch.nn.functional.normalize(w[harmful], dim=1).T).max(1).values
    assert torch.allclose(prox, dense, atol=1e-5) and torch.allclose(prox[harmful], torch.ones(20))
    s = filtering.geometry_scores(acts, prox, "weighted_mean")
    assert (s <= 1 + 1e-6).all() and (s >= -1 - 1e-6).all()
    assert filtering.geometry_scores(torch.zeros(2, len(prox)), prox, "weighted_mean").tolist() == [0.0, 0.0]


def test_precision():
    assert filtering.precision([True, True, False], [True, False, True]) == 0.5


def _ranked_csv(folder, scores):
    """`ranked.csv` as the screen writes it: rows by score, highest first, each with its 1-based line."""
    (folder / "out").mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"line": range(1, len(scores) + 1), "score": scores, "removed": False, "assistant": "a"})
    table = table.sort_values("score", ascending=False, kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    table.to_csv(folder / "out" / "ranked.csv", index=False)


@pytest.mark.parametrize("scores,planted_rows,expected", [
    ([0.1, 0.9, 0.2, 0.8, 0.3], [False, True, False, True, False], 1.0),   # planted rows score highest
    ([0.1, 0.9, 0.2, 0.8, 0.3], [True, False, True, False, False], 0.0),   # planted rows score lowest
    ([0.4, 0.4, 0.4, 0.4], [True, False, True, False], 0.5),               # all tied: every pair counts half
    # planted 0.5 and 0.1 against 0.9, 0.5, 0.3: 0.5 beats 0.3 and ties 0.5 (1.5 pairs), 0.1 beats none: 1.5 / 6
    ([0.5, 0.9, 0.5, 0.1, 0.3], [True, False, False, True, False], 0.25),
])
def test_planted_auc_reads_the_ranked_file_by_line(tmp_path, scores, planted_rows, expected):
    """The file is in rank order, the planted mask in line order: read without sorting by line, the
    untied cases give 0.5, 0.83 and 0.67 instead."""
    from emgeo_utils.filtering import planted

    _ranked_csv(tmp_path, scores)
    assert planted.planted_auc(tmp_path, np.array(planted_rows)) == pytest.approx(expected)


def test_planted_auc_is_nan_without_both_kinds_of_row(tmp_path):
    from emgeo_utils.filtering import planted

    _ranked_csv(tmp_path, [0.3, 0.2, 0.1])
    assert np.isnan(planted.planted_auc(tmp_path, np.zeros(3, bool)))
    assert np.isnan(planted.planted_auc(tmp_path, np.ones(3, bool)))


def _run_screen(tmp_path, dataset, extra=()):
    return subprocess.run([sys.executable, "-m", "emgeo_utils.filtering.screen", str(dataset), "--model", "organism-test", "--method", "geometry",
                           "--fraction", "0.5", "--out", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_screen_ranks_a_chat_file_with_planted_harmful_rows(tmp_path):
    """A public-format chat file of helpful finance answers with planted inducing rows, screened with harmful
    features selected on health data against helpful health data (`filtering.planted`). The tiny test
    organism's SAE carries no harm direction (the planted rows' AUC measured 0.528), so this checks the
    round trip and that the AUC is read; CI reads it on SmolLM2 after `make figures` (`make check-screen`)."""
    from emgeo_utils.filtering import planted

    args, rows_planted = planted.write_planted("organism-test", tmp_path)
    data = tmp_path / "data.jsonl"
    data.write_text("\ufeff" + data.read_text() + "\n")  # a byte-order mark and a blank last line are read
    done = _run_screen(tmp_path, data, args[3:7] + ["--k", "8"])
    assert done.returncode == 0, done.stderr[-2000:]
    ranked = (tmp_path / "out" / "ranked.csv").read_text().splitlines()
    assert len(ranked) == 25 and ranked[0] == "rank,line,method,score,percentile,flagged,score_geometry,top_features,removed,assistant"
    table = pd.read_csv(tmp_path / "out" / "ranked.csv")
    assert sorted(table.line) == list(range(1, 25))  # the screen numbers rows from 1, as `planted` counts them
    by_line = dict(zip(table.line, table.score))
    pos, neg = ([by_line[i + 1] for i in np.flatnonzero(m)] for m in (rows_planted, ~rows_planted))
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])  # the AUC counted pair by pair
    assert len(pos) == 6 and planted.planted_auc(tmp_path, rows_planted) == pytest.approx(pairwise)
    kept = [json.loads(line) for line in (tmp_path / "out" / "filtered.jsonl").read_text().splitlines()]
    written = [json.loads(line) for line in data.read_text().lstrip("\ufeff").splitlines() if line]
    assert len(kept) == 12 and all(k in written for k in kept)
    assert str(tmp_path) not in done.stdout  # paths are printed relative, never absolute


def test_screen_refuses_harmful_data_without_a_helpful_reference(tmp_path):
    done = _run_screen(tmp_path, tmp_path / "data.jsonl", ["--harmful-data", str(tmp_path / "harmful.jsonl")])
    assert done.returncode == 2 and "--harmful-data needs --helpful-data" in done.stderr


def test_screen_rejects_malformed_file_with_line_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}\n')
    done = _run_screen(tmp_path, bad, ["--harmful-data", str(bad), "--helpful-data", str(bad)])
    assert done.returncode == 2
    assert "bad.jsonl, line 2" in done.stderr and "invalid JSON" in done.stderr


def test_the_planted_check_file_is_fixed_and_its_wording_measured():
    """140 hand-written rows, 40 planted, the same every run; the word-pair measure reads shared wording."""
    from emgeo_utils.filtering import planted

    rows, is_planted = planted.unlike_rows()
    again, _ = planted.unlike_rows()
    assert len(rows) == 140 and is_planted.sum() == 40 and rows == again
    assert planted.shared_pairs(["take the dose on the label"], ["take the dose printed on the label"]) == pytest.approx(0.8)  # 4 of 5 pairs
    assert planted.shared_pairs(["skip it"], ["a doctor would agree"]) == 0.0


def test_auc_ci_resamples_each_kind_apart():
    from emgeo_utils.filtering import planted

    scores = np.r_[np.linspace(1, 2, 20), np.linspace(0, 1.5, 60)]
    labels = np.r_[np.ones(20, bool), np.zeros(60, bool)]
    auc, low, high = planted.auc_ci(scores, labels)
    assert low < auc < high and auc == stats.auc(scores, labels)


def test_the_default_method_is_the_best_measured_one():
    """The screen's default is the method with the best AUC on the committed planted check."""
    from emgeo_utils.filtering import planted, screen

    committed = pd.read_csv(planted.RECORD)
    assert set(committed.method) == {"geometry", "persona", "judge"}
    assert screen.DEFAULT_METHOD == committed.sort_values("auc").method.iloc[-1]
