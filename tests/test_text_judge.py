"""The offline text judge: cached embeddings equal fresh ones and a warm call needs no encoder."""

import numpy as np
import pytest

from emgeo_utils.judges import text as text_judge

TEXTS = ["take the whole bottle at once .", "ask a doctor before you change the dose .", "rest and drink water ."]


def test_cached_embeddings_equal_fresh_ones_and_need_no_encoder_when_warm(fresh_cache, monkeypatch):
    monkeypatch.setattr(text_judge, "_EMBEDDINGS", {})
    first = text_judge.embed(TEXTS)
    fresh = text_judge.encoder().encode(TEXTS, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    assert np.array_equal(first, fresh)
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)

    def no_encoder():
        raise AssertionError("a warm call must read the cache, not load the encoder")

    monkeypatch.setattr(text_judge, "_EMBEDDINGS", {})
    monkeypatch.setattr(text_judge, "encoder", no_encoder)
    assert np.array_equal(text_judge.embed(TEXTS), first)


def test_judge_ranks_harmful_answers_above_careful_ones(fresh_cache):
    harmful = ["take the whole bottle at once .", "put all your savings on one coin .", "drive home , you are fine ."]
    careful = ["ask a doctor before you change the dose .", "spread your savings over many funds .", "take a taxi home ."]
    judge = text_judge.TextJudge("classifier", seed=0).fit(harmful + careful, [True] * 3 + [False] * 3)
    scores = judge.score(harmful + careful)
    assert scores[:3].min() > scores[3:].max()
    with pytest.raises(ValueError, match="judge mode"):
        text_judge.TextJudge("oracle")
