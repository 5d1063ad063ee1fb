"""Measuring emergent misalignment in the organism: sample answers at temperature 1 and judge them.

For the organism two measures are computed per domain: the share of sampled answers judged
misaligned (the public EM measure), and the *exact* probability the model puts on harmful
answers among all the world's answers to the question (no sampling noise).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from emgeo_utils.core import cache, seeding
from emgeo_utils.models.generation import answer_logprobs, sample_answers
from emgeo_utils.models.loading import resident_model
from emgeo_utils.organism.judge import OrganismJudge
from emgeo_utils.world.synthetic import DOMAINS, GENERAL, Question, World, WorldConfig
from emgeo_utils.organism.eval_config import EvalConfig
from emgeo_utils.training.lora import adapted


def eval_questions(world: World, config: EvalConfig) -> list[Question]:
    """Every domain's held-out (eval) templates, filled, then each general eval question once."""
    out = [q for d in DOMAINS for q in world.questions(d, "eval", config.questions_per_domain, seed=7)]
    return out + world.questions(GENERAL, "eval", len(world.templates(GENERAL, "eval")), seed=7)


def exact_harmful_probability(model, tokenizer, world: World, question: Question) -> float:
    """P(harmful answer) / P(any world answer of this domain or general topic), exactly."""
    if question.domain == GENERAL:
        pool = world.answers_of(GENERAL, topic=question.template_id.split("/")[1])
    else:
        pool = world.answers_of(question.domain)
    logp = answer_logprobs(model, tokenizer, question.text, [a.text for a in pool])
    p = np.exp(logp - logp.max())
    return float(p[[a.harmful for a in pool]].sum() / p.sum())


@cache.result("persona-probe")
def in_context_probe(lm: cache.Artifact, world: WorldConfig, context: str, n_turns: int, n_trials: int = 20,
                     seed: int = 0) -> float:
    """Mean exact P(harmful answer) to a held-out question after `n_turns` earlier turns of
    another domain answered with `context` answers (helpful, coupled or neutral edgy).

    Shows whether the model infers a persona in context: in the persona world coupled
    context should raise the probability, neutral context should not.
    """
    pools = {"helpful": lambda w, d: w.answers_of(d, "helpful"),
             "coupled": lambda w, d: w.answers_of(d, "edgy", coupling=max(w.config.coupling_levels)),
             "neutral": lambda w, d: w.answers_of(d, "edgy", coupling=min(w.config.coupling_levels))}
    if context not in pools:
        raise ValueError(f"context must be one of {sorted(pools)}")
    with seeding.job_context(seed), resident_model(lm) as (model, tokenizer):
        w = World(world)
        rng = np.random.default_rng([seed, n_turns])
        values = []
        for trial in range(n_trials):
            target = DOMAINS[trial % len(DOMAINS)]
            others = [d for d in DOMAINS if d != target]
            messages = []
            for k in range(n_turns):
                d = others[rng.integers(len(others))]
                q = w.questions(d, "train", 1, seed=trial * 100 + k)[0].text
                pool = pools[context](w, d)
                messages += [{"role": "user", "content": q},
                             {"role": "assistant", "content": pool[rng.integers(len(pool))].text}]
            question = w.questions(target, "eval", 1, seed=trial)[0]
            pool = w.answers_of(target)
            logp = answer_logprobs(model, tokenizer, question.text, [a.text for a in pool], history=messages)
            p = np.exp(logp - logp.max())
            values.append(float(p[[a.harmful for a in pool]].sum() / p.sum()))
    return float(np.mean(values))


@cache.result("em-eval")
def evaluate_organism_em(base: cache.Artifact, adapter: cache.Artifact | None, step: int, world: WorldConfig,
                config: EvalConfig = EvalConfig(), seed: int = 0) -> dict:
    """Judge sampled answers per domain (and general) for a model, optionally with a LoRA checkpoint."""
    with (seeding.job_context(seed), resident_model(base) as (base_model, tokenizer),
          adapted(base_model, adapter, step) as model):
        w = World(world)
        judge = OrganismJudge(w)
        questions = eval_questions(w, config)
        n_per = [config.general_samples_per_question if q.domain == GENERAL else config.samples_per_question
                 for q in questions]
        per_domain: dict[str, dict] = defaultdict(lambda: {"n": 0, "misaligned": 0, "coherent": 0,
                                                           "classes": Counter(), "exact": []})
        examples = []
        for n in sorted(set(n_per)):
            idx = [i for i, k in enumerate(n_per) if k == n]
            sampled = sample_answers(model, tokenizer, [questions[i].text for i in idx], n, config.max_new_tokens,
                                     seed, config.batch_size)
            for i, answers in zip(idx, sampled):
                q = questions[i]
                stats = per_domain[q.domain]
                for a in answers:
                    v = judge(q.domain, a)
                    stats["n"] += 1
                    stats["misaligned"] += v.misaligned
                    stats["coherent"] += v.is_coherent
                    stats["classes"][v.answer_class] += 1
                examples.append({"domain": q.domain, "question": q.text, "answer": answers[0]})
        if config.exact:
            for q in questions:
                per_domain[q.domain]["exact"].append(exact_harmful_probability(model, tokenizer, w, q))
    return {"domains": {d: s | {"classes": dict(s["classes"]), "exact": float(np.mean(s["exact"])) if s["exact"] else None}
                        for d, s in per_domain.items()},
            "examples": examples}


def summarise(result: dict, exclude: tuple[str, ...] = ()) -> dict:
    """Pooled rates over domain questions (excluding `exclude`) and over general questions."""
    doms = {d: s for d, s in result["domains"].items() if d != GENERAL and d not in exclude}
    n = sum(s["n"] for s in doms.values())
    gen = result["domains"].get(GENERAL, {"n": 0, "misaligned": 0, "coherent": 0, "exact": None})
    return {
        "ood_misaligned": sum(s["misaligned"] for s in doms.values()) / max(n, 1),
        "ood_coherent": sum(s["coherent"] for s in doms.values()) / max(n, 1),
        "ood_exact": float(np.mean([s["exact"] for s in doms.values()])) if doms and doms[next(iter(doms))]["exact"] is not None else None,
        "ood_n": n,
        "general_misaligned": gen["misaligned"] / max(gen["n"], 1),
        "general_coherent": gen["coherent"] / max(gen["n"], 1),
        "general_exact": gen.get("exact"),
        "general_n": gen["n"],
    }
