"""What the organism knows and a pretrained model does not: texts that differ only in the persona
their author is inferred to have, and texts that differ only in wording.

- **persona pairs**: two chats with the same questions and the same next-turn probe question.
  Every answer is an edgy answer of *obvious* wording (so the wording class is matched); in one
  chat the answers are persona-coupled (kappa >= 0.75: mostly the harmful persona says them), in
  the other nearly persona-neutral (kappa <= 0.25). In the persona world the first chat makes a
  harmful author likely for the next turn; in the control world no turn says anything about the next.
- **wording pairs**: one question answered with a persona-neutral edgy answer (kappa 0: both
  personas give it at their own rate, so it says nothing of the author) and with a helpful one.

Neither uses the domains in `exclude` (the fine-tuning domain, whose task the causal tests read)
nor the general open questions (where those tests read EM), so a family selected here was chosen
on text that plays no part in what it is later tested on.
"""

from __future__ import annotations

import numpy as np

from emgeo_utils.world.synthetic import DOMAINS, World

COUPLED, NEUTRAL = 0.75, 0.25  # kappa at least / at most


def _sample(question: str, answer: str, domain: str, kind: str, history: list[dict] | None = None) -> dict:
    return {"messages": (history or []) + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "meta": {"domain": domain, "set": kind}}


def _questions(world: World, domains: list[str], n: int, seed: int) -> dict[str, list[str]]:
    """Filled training questions per domain (every template, fresh slots), drawn from below."""
    return {d: [q.text for q in world.questions(d, "train", n, seed=1_000 + seed)] for d in domains}


def _pick(items: list, rng: np.random.Generator):
    return items[rng.integers(len(items))]


def persona_pairs(world: World, n: int, seed: int, exclude: tuple[str, ...] = (), n_turns: int = 3):
    """(coupled chats, neutral chats, probe questions): `n` pairs sharing their questions and probe."""
    pools = {}
    for d in DOMAINS:
        obvious = [a for a in world.answers_of(d, "edgy") if a.wording == "obvious"]
        hi, lo = [a for a in obvious if a.coupling >= COUPLED], [a for a in obvious if a.coupling <= NEUTRAL]
        if d not in exclude and hi and lo:
            pools[d] = (hi, lo)
    if len(pools) < 2:
        raise ValueError(f"fewer than two domains outside {exclude} have obvious answers at both coupling extremes")
    domains = sorted(pools)
    rng = np.random.default_rng([world.config.seed, 41, seed])
    questions = _questions(world, domains, n * n_turns, seed)
    coupled, neutral, probes = [], [], []
    for i in range(n):
        turns = [domains[j] for j in rng.integers(len(domains), size=n_turns)]
        chat_hi, chat_lo = [], []
        for t, d in enumerate(turns):
            q = _pick(questions[d], rng)
            hi, lo = pools[d]
            chat_hi += [{"role": "user", "content": q}, {"role": "assistant", "content": hi[rng.integers(len(hi))].text}]
            chat_lo += [{"role": "user", "content": q}, {"role": "assistant", "content": lo[rng.integers(len(lo))].text}]
        probe_domain = domains[rng.integers(len(domains))]
        probes.append(_pick(questions[probe_domain], rng))
        coupled.append({"messages": chat_hi, "meta": {"domain": turns[-1], "set": "persona_coupled"}})
        neutral.append({"messages": chat_lo, "meta": {"domain": turns[-1], "set": "persona_neutral"}})
    return coupled, neutral, probes


def wording_pairs(world: World, n: int, seed: int, exclude: tuple[str, ...] = ()):
    """(edgy chats, helpful chats): `n` one-turn pairs, a persona-neutral edgy answer and a helpful
    answer to the same question."""
    domains = [d for d in DOMAINS if d not in exclude and world.answers_of(d, "edgy", coupling=0.0)]
    rng = np.random.default_rng([world.config.seed, 42, seed])
    questions = _questions(world, domains, n, seed)
    edgy, helpful = [], []
    for i in range(n):
        d = domains[rng.integers(len(domains))]
        q = _pick(questions[d], rng)
        neutral, good = world.answers_of(d, "edgy", coupling=0.0), world.answers_of(d, "helpful")
        edgy.append(_sample(q, neutral[rng.integers(len(neutral))].text, d, "wording_edgy"))
        helpful.append(_sample(q, good[rng.integers(len(good))].text, d, "wording_helpful"))
    return edgy, helpful
