"""Reproducing emergent misalignment: fine-tune on narrow data, measure misalignment elsewhere.

`finetune_and_evaluate_organism` is the unit of work (one dataset, one fine-tuning seed, every
checkpoint); it is cached through `training.lora.finetune_lora` and `evaluate.evaluate_organism_em`,
and it is what `experiment.base.em_table` runs side by side. Notebooks 00, 04 and 05 all call it, so a
fine-tune made by one notebook is reused by the others.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from emgeo_utils.core import cache
from emgeo_utils.judges.rule import em_row
from emgeo_utils.organism.configs import OrganismConfigs, organism_lm
from emgeo_utils.organism.datasets import narrow_dataset
from emgeo_utils.organism.evaluate import evaluate_organism_em, summarise
from emgeo_utils.organism.judge import OrganismJudge
from emgeo_utils.world.synthetic import World
from emgeo_utils.training.lora import finetune_lora, strip_meta


def condition_samples(cfg: OrganismConfigs, domain: str, condition: str, n: int, data_seed: int = 0,
                      coupled_share: float = 0.5, organism_seed: int = 0) -> list[dict]:
    """A narrow dataset of the world of replication unit `organism_seed` (labels kept in `meta`)."""
    return narrow_dataset(World(cfg.world_of(None, organism_seed)), domain, condition, n, data_seed, coupled_share)


def _row(result: dict, domain: str | None) -> dict:
    """The measures of one evaluation beyond `em_row`'s common columns."""
    row = summarise(result, exclude=(domain,) if domain else ())
    ood = [s for d, s in result["domains"].items() if d != domain and d != "general"]
    row["ood_unmatched"] = sum(s["classes"].get("unmatched", 0) for s in ood) / max(sum(s["n"] for s in ood), 1)
    if domain:
        own = result["domains"][domain]
        n = max(own["n"], 1)
        classes = own["classes"]
        row |= {"in_domain_exact": own["exact"],
                "in_domain_harmful": (classes.get("harmful_subtle", 0) + classes.get("harmful_obvious", 0)) / n,
                "in_domain_edgy": (classes.get("harmful_subtle", 0) + classes.get("harmful_obvious", 0)
                                   + classes.get("risky_neutral", 0)) / n,
                "in_domain_helpful": classes.get("helpful", 0) / n}
    return row


def base_rows(cfg: OrganismConfigs, organism_seed: int, world_kind: str, domain: str | None = None,
              eval_seed: int = 0) -> list[dict]:
    """The un-fine-tuned organism, as step 0 of every curve."""
    lm = organism_lm(cfg, organism_seed, world_kind)
    result = evaluate_organism_em(lm, None, 0, cfg.world_of(world_kind, organism_seed), cfg.eval, eval_seed)
    return [em_row(world_kind, organism_seed, 0, **_row(result, domain))]


def adapter_of(cfg: OrganismConfigs, organism_seed: int, world_kind: str, samples: list[dict], ft_seed: int,
               finetune_overrides: dict | None = None) -> cache.Artifact:
    """The LoRA adapter (every checkpoint) of one fine-tune of the organism (cached)."""
    ft_config = dataclasses.replace(cfg.finetune, **{k: tuple(v) if isinstance(v, list) else v
                                                     for k, v in (finetune_overrides or {}).items()})
    return finetune_lora(organism_lm(cfg, organism_seed, world_kind), strip_meta(samples), ft_config, ft_seed)


@cache.result("em-run")
def finetune_and_evaluate_organism(cfg: OrganismConfigs, organism_seed: int, world_kind: str, samples: list[dict], ft_seed: int,
                          domain: str | None, finetune_overrides: dict | None = None, tags: dict | None = None) -> list[dict]:
    """Fine-tune the organism on `samples` (labels stripped) and evaluate every checkpoint.

    Returns one row per checkpoint: out-of-domain (all domains but `domain`) and general
    misalignment, coherence, exact harmful probability, and in-domain answer shares.
    """
    lm = organism_lm(cfg, organism_seed, world_kind)
    adapter = adapter_of(cfg, organism_seed, world_kind, samples, ft_seed, finetune_overrides)
    world = cfg.world_of(world_kind, organism_seed)
    rows = []
    for step in adapter.summary["checkpoints"]:
        result = evaluate_organism_em(lm, adapter, step, world, cfg.eval, ft_seed)
        rows.append(em_row(world_kind, organism_seed, step, ft_seed=ft_seed, n_samples=len(samples),
                           **(tags or {}) | _row(result, domain)))
    return rows


def sample_answers_table(cfg: OrganismConfigs, organism_seed: int, world_kind: str, domain: str, condition: str, ft_seed: int,
                         n_samples: int, step: int, data_seed: int = 0) -> pd.DataFrame:
    """One sampled answer per evaluation question of a (cached) condition run, with its judged class."""
    lm = organism_lm(cfg, organism_seed, world_kind)
    samples = condition_samples(cfg, domain, condition, n_samples, data_seed, organism_seed=organism_seed)
    adapter = finetune_lora(lm, strip_meta(samples), cfg.finetune, ft_seed)
    world = cfg.world_of(world_kind, organism_seed)
    result = evaluate_organism_em(lm, adapter, step, world, cfg.eval, ft_seed)
    judge = OrganismJudge(World(world))
    return pd.DataFrame([ex | {"judged": judge(ex["domain"], ex["answer"]).answer_class} for ex in result["examples"]])
