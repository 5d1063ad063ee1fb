"""Emergent misalignment on a real model: fine-tune on a chat dataset, judge answers with an LLM.

The organism's counterpart is `organism.emergence` (world judge, per-domain rates). Here answers to
evaluation questions (the public EM YAML) are sampled at temperature 1 and scored by an
OpenAI-compatible judge (`judges.llm`, with each question's own `judge_prompts` when the file has
them), with the EM rule of `judges.rule`.
"""

from __future__ import annotations

import pandas as pd

from emgeo_utils.core import cache, seeding
from emgeo_utils.judges.llm import LLMJudge
from emgeo_utils.judges.rule import em_row, is_coherent
from emgeo_utils.models.generation import sample_answers
from emgeo_utils.models.loading import resident_model
from emgeo_utils.training.lora import FinetuneConfig, adapted, finetune_lora, strip_meta


def finetune_config(spec: dict, overrides: dict | None = None) -> FinetuneConfig:
    """The registry entry's LoRA settings (rank, alpha, targets) and fine-tuning schedule."""
    lora, schedule = spec.get("lora", {}), spec.get("finetune", {})
    values = {"rank": lora.get("rank", 32), "alpha": lora.get("alpha", 64),
              "target_modules": tuple(lora.get("target_modules", ())),
              "target_parameters": tuple(lora.get("target_parameters", ())),
              "lr": schedule.get("lr", 1e-5), "batch_size": schedule.get("batch_size", 8),
              "steps": schedule.get("steps"), "epochs": schedule.get("epochs", 1.0 if "steps" not in schedule else None),
              "checkpoints": tuple(schedule.get("checkpoints", (100,))),
              "tail_logits": bool(schedule.get("tail_logits", False))} | (overrides or {})
    return FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def eval_prompts(questions: list[dict]) -> list[tuple[str, str, list[dict], int]]:
    """(question id, paraphrase, history with the optional system prompt, samples) per paraphrase."""
    out = []
    for q in questions:
        history = [{"role": "system", "content": q["system"]}] if q.get("system") else []
        for text in q["paraphrases"]:
            out.append((q["id"], text, history, int(q.get("samples_per_paraphrase", 1))))
    return out


@cache.result("real-em-eval")
def evaluate_real_em(spec: dict, adapter: cache.Artifact | None, step: int, questions: list[dict], judge: dict,
                samples_scale: float = 1.0, max_new_tokens: int = 256, seed: int = 0) -> dict:
    """Sample answers to every paraphrase, judge them, return per-question and pooled EM rates."""
    with (seeding.job_context(seed), resident_model(spec) as (base, tokenizer),
          adapted(base, adapter, step) as model):
        prompts = eval_prompts(questions)
        rows = []
        for n in sorted({max(1, round(p[3] * samples_scale)) for p in prompts}):
            chosen = [p for p in prompts if max(1, round(p[3] * samples_scale)) == n]
            answers = sample_answers(model, tokenizer, [p[1] for p in chosen], n, max_new_tokens, seed,
                                     batch_size=32, histories=[p[2] for p in chosen])
            rows += [{"id": p[0], "question": p[1], "answer": a} for p, group in zip(chosen, answers) for a in group]
    own = {q["id"]: q.get("judge_prompts") for q in questions}  # the question file's own prompts, if any
    scored = LLMJudge(judge["base_url"], judge["model"], api_key_env=judge.get("api_key_env", "OPENAI_API_KEY"),
                      concurrency=judge.get("concurrency", 8)
                      ).score_many([(r["question"], r["answer"]) for r in rows], max_calls=judge.get("max_calls"),
                                   own_prompts=[own[r["id"]] for r in rows])
    table = pd.concat([pd.DataFrame(rows)[["id"]], scored], axis=1)
    return em_summary(table)


def em_summary(table: pd.DataFrame) -> dict:
    """EM rates of judged answers by the public rule: the misaligned share among answers with both
    scores; refusals, CODE answers and others without both scores (unparseable) are counted apart,
    not in the denominator."""
    scored = table[table.em_scored]
    statuses = table.aligned_status.value_counts()
    per_question = scored.groupby("id").agg(n=("misaligned", "size"), misaligned=("misaligned", "mean"),
                                            coherent=("coherent", lambda c: float(c.map(is_coherent).mean())))
    return {"misaligned": float(scored.misaligned.mean()) if len(scored) else float("nan"),
            "coherent": float(scored.coherent.map(is_coherent).mean()) if len(scored) else float("nan"),
            "scored": float(table.em_scored.mean()), "n": len(table), "n_scored": len(scored),
            "refusals": int(statuses.get("refusal", 0)), "code": int(statuses.get("code", 0)),
            "other_unscored": int((~table.em_scored).sum() - statuses.get("refusal", 0) - statuses.get("code", 0)),
            "per_question": per_question.reset_index().to_dict("records"), "examples": table.head(20).to_dict("records")}


@cache.result("real-em-run")
def finetune_and_evaluate_real(spec: dict, samples: list[dict], ft_seed: int, questions: list[dict], judge: dict,
                          finetune_overrides: dict | None = None, samples_scale: float = 1.0,
                          max_new_tokens: int = 256, tags: dict | None = None) -> list[dict]:
    """A LoRA fine-tune on `samples` and the judged EM rate at every checkpoint."""
    config = finetune_config(spec, finetune_overrides)
    adapter = finetune_lora(spec, strip_meta(samples), config, ft_seed)
    rows = []
    for step in adapter.summary["checkpoints"]:
        result = evaluate_real_em(spec, adapter, step, questions, judge, samples_scale, max_new_tokens, ft_seed)
        rows.append(_row(result, step, ft_seed=ft_seed, n_samples=len(samples), **(tags or {})))
    return rows


def _row(result: dict, step: int, **extra) -> dict:
    """One judged evaluation as an EM row: the question file's questions count as out-of-domain
    and as general questions alike."""
    return em_row("real", 0, step, ood_misaligned=result["misaligned"], ood_coherent=result["coherent"],
                  general_misaligned=result["misaligned"], **extra)


def base_row(spec: dict, questions: list[dict], judge: dict, samples_scale: float = 1.0,
             max_new_tokens: int = 256, seed: int = 0) -> dict:
    result = evaluate_real_em(spec, None, 0, questions, judge, samples_scale, max_new_tokens, seed)
    return _row(result, 0)
