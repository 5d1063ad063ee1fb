"""Is the coherence measure about the question? Checked before it decides anything.

A sampled answer is coherent when its MiniLM cosine to its question reaches the base model's 10th
percentile (`world_lm_em`). Here the measure scores answers whose topicality is known, and the AUC
says how well it tells them apart:
- the base model's own answers to a question, against the same answers put to a question of
  another domain;
- the world's written answers of a question's own domain, against those of another domain.
An AUC near 0.5 means the measure does not see topicality, and nothing it decides can be trusted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emgeo_utils.core import stats


def _other_domain(domains: list[str], i: int) -> int:
    """The next item (cyclically) whose domain differs from item i's: a fixed mismatched pairing."""
    n = len(domains)
    return next((i + k) % n for k in range(1, n) if domains[(i + k) % n] != domains[i])


def _row(case: str, own: np.ndarray, other: np.ndarray, threshold: float) -> dict:
    scores = np.concatenate([own, other])
    labels = np.r_[np.ones(len(own), bool), np.zeros(len(other), bool)]
    return {"answers": case, "auc": stats.auc(scores, labels), "n_pairs": len(own),
            "own_called_coherent": float(np.mean(own >= threshold)),
            "mismatched_called_coherent": float(np.mean(other >= threshold))}


def validation_table(result: dict, eval_set: dict, relevance) -> pd.DataFrame:
    """AUC of `relevance(questions, answers)` on matched vs mismatched pairs of `result` (the base
    model's evaluation) and of the world's candidate answers; the threshold's two rates beside it."""
    threshold = result["coherence_threshold"]
    samples = [r for r in result["samples"] if r["answer"]]
    domains = [r["domain"] for r in samples]
    mismatch = [samples[_other_domain(domains, i)]["question"] for i in range(len(samples))]
    answers = [r["answer"] for r in samples]
    rows = [_row("the base model's own answers", relevance([r["question"] for r in samples], answers),
                 relevance(mismatch, answers), threshold)]
    items = [it for name in ("in_domain", "other_domains") for it in eval_set["candidates"][name]]
    item_domains = [it["domain"] for it in items]
    own_q, other_q, written = [], [], []
    for i, it in enumerate(items):
        other = items[_other_domain(item_domains, i)]
        for a in it["answers"]:
            own_q.append(it["question"])
            other_q.append(other["question"])
            written.append(a)
    rows.append(_row("the world's written answers (own domain)", relevance(own_q, written),
                     relevance(other_q, written), threshold))
    return pd.DataFrame(rows).set_index("answers")


def record_claim(claims, table: pd.DataFrame, min_auc: float) -> None:
    worst = float(table.auc.min())
    claims.record("coherence_measure_valid", value=worst, outcome=bool(worst >= min_auc),
                  note="; ".join(f"{case}: AUC {r.auc:.3f} over {int(r.n_pairs)} pairs" for case, r in table.iterrows()))
