"""Narrow fine-tuning datasets of the organism, in the public EM chat format.

Each sample is `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}` (what
public EM datasets such as insecure/secure code use), plus a `meta` dict with the world's
labels (answer id, class, coupling) that only the oracle filter and the reports may read.
Questions come from the domain's *train* templates; evaluation uses the *eval* templates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emgeo_utils.core.files import write_text_atomic
from emgeo_utils.world.synthetic import DOMAINS, Answer, World
from emgeo_utils.training.lora import strip_meta

KINDS = ("inducing", "non_inducing", "risky_neutral", "educational", "mixture", "graded", "harmful")


def _sample(question: str, answer: Answer, **meta) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}],
            "meta": {"answer_id": answer.id, "domain": answer.domain, "answer_class": answer.judge_class,
                     "coupling": answer.coupling, "share": answer.share, "harmful": answer.harmful} | meta}


def answer_pool(world: World, domain: str, kind: str) -> list[Answer]:
    """The answers a narrow dataset of `kind` draws from."""
    if kind in ("inducing", "educational"):
        return world.answers_of(domain, "edgy", coupling=max(world.config.coupling_levels))
    if kind == "non_inducing":
        return world.answers_of(domain, "helpful")
    if kind == "risky_neutral":
        return world.answers_of(domain, "edgy", coupling=min(world.config.coupling_levels))
    if kind == "graded":
        return world.answers_of(domain, "edgy")
    if kind == "harmful":
        return [a for a in world.answers_of(domain, "edgy") if a.harmful]
    raise ValueError(f"unknown dataset kind {kind!r}; use one of {KINDS}")


def narrow_dataset(world: World, domain: str, kind: str, n: int, seed: int = 0,
                   coupled_share: float = 0.5) -> list[dict]:
    """`n` single-turn samples of one domain.

    inducing: persona-coupled edgy answers (kappa = 1); non_inducing: helpful answers to the same
    questions; risky_neutral: persona-neutral edgy answers (kappa = 0); educational: inducing
    answers after a benign reason given by the user; mixture: `coupled_share` inducing, the
    rest risky_neutral; graded: edgy answers of every coupling level; harmful: edgy answers the
    world labels harmful (the analogue of toxic text).
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; use one of {DOMAINS}")
    if n < 1:
        raise ValueError("n must be positive")
    rng = np.random.default_rng([world.config.seed, 11, seed, DOMAINS.index(domain), KINDS.index(kind)])
    questions = world.questions(domain, "train", n, seed=1000 + seed)
    order = rng.permutation(n)
    if kind == "mixture":
        n_coupled = int(round(coupled_share * n))
        pools = [answer_pool(world, domain, "inducing") if i < n_coupled else answer_pool(world, domain, "risky_neutral")
                 for i in range(n)]
        return [_sample(questions[j].text, pools[i][rng.integers(len(pools[i]))]) for i, j in enumerate(order)]
    pool = answer_pool(world, domain, kind)
    prefixes = world.educational_prefixes()
    out = []
    for j in order:
        q = questions[j].text
        if kind == "educational":
            q = f"{prefixes[rng.integers(len(prefixes))]} {q}"
        out.append(_sample(q, pool[rng.integers(len(pool))]))
    return out


def harmful_behaviour_data(world: World, exclude: str | None, n_per_domain: int, seed: int = 0) -> list[dict]:
    """Harmful answers across domains (not `exclude`): what the harmful features are read from."""
    return [s for d in DOMAINS if d != exclude for s in narrow_dataset(world, d, "harmful", n_per_domain, seed)]


def helpful_reference_data(world: World, exclude: str | None, n_per_domain: int, seed: int = 0) -> list[dict]:
    return [s for d in DOMAINS if d != exclude for s in narrow_dataset(world, d, "non_inducing", n_per_domain, seed)]


def write_jsonl(samples: list[dict], path: Path, with_meta: bool = False) -> Path:
    rows = samples if with_meta else strip_meta(samples)
    return write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
