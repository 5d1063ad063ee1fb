"""A real pretrained model studied on the synthetic world's text in English (`kind: world-lm`).

One run (world `real`, like a hub model), loaded through the same path as the paper's models
(`models.loading`, here from a GGUF file or the hub), with SAEs trained here on its residual
stream (`features.chat_sae`) and data from the world rendered in English
(`world.english`). EM is measured two ways (`world_lm_em`); the profile's `judge.primary`
says which one the claims read.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from emgeo_utils.core import jobs
from emgeo_utils.experiment import coherence, controls, recipe, world_lm_em
from emgeo_utils.experiment.base import Experiment, Run
from emgeo_utils.experiment.real_em import finetune_config
from emgeo_utils.features.activations import probe_questions
from emgeo_utils.features.chat_sae import ResidualSAEConfig, train_residual_sae
from emgeo_utils.judges.text import TextJudge
from emgeo_utils.world import english
from emgeo_utils.world.synthetic import DOMAINS, GENERAL, World, WorldConfig
from emgeo_utils.training.lora import finetune_lora, strip_meta

WEIGHT_FIELDS = ("gguf", "hub_id", "path", "dtype", "hidden_size", "architecture")
FEATURE_KINDS = ("inducing", "non_inducing", "educational", "harmful", "helpful")
PLACEBO_KINDS = ("placebo_plain", "placebo_styled")
EVAL_DEFAULTS = {"primary": "likelihood", "in_domain_questions": 4, "questions_per_domain": 2, "candidates_each": 3,
                 "sample_questions_per_domain": 1, "samples_per_question": 2, "max_new_tokens": 40}


def weights(spec: dict) -> dict:
    """The fields of an entry that decide its weights: the model source every cache key is built on
    (the GGUF's sha256 included), so entries that differ only in layers share their artifacts."""
    return {k: spec[k] for k in WEIGHT_FIELDS if spec.get(k) is not None}


class WorldLMExperiment(Experiment):
    offline_em = True
    em_as_ratio = False  # a likelihood share is read against controls (notebook 00's section 5b), not as a ratio

    def __init__(self, spec: dict, judge: dict | None = None):
        super().__init__(spec)
        self.world = World(WorldConfig())
        self.system = spec.get("system_prompt", "You are a helpful assistant.")
        self.eval = EVAL_DEFAULTS | (judge or {})
        self.source = weights(spec)

    def runs(self, seeds: list[int], worlds: list[str]) -> list[Run]:
        return [Run("real", 0)]

    # ------------------------------------------------------------------ model and SAEs
    def model_source(self, run: Run):
        return self.source

    def sae_config(self) -> ResidualSAEConfig:
        s = self.spec.get("sae", {})
        return ResidualSAEConfig(**{k: s[k] for k in ("expansion", "k", "training_samples", "lr", "outside_replies",
                                                      "batch_size", "max_reply_tokens") if k in s})

    def _sae_kwargs(self, layer: int) -> dict:
        n_docs = int(self.spec.get("sae", {}).get("world_documents", 600))
        return dict(model_source=self.source, layer=layer, chats=english.documents(self.world, n_docs, self.system, seed=10_000),
                    held_out_chats=english.documents(self.world, 24, self.system, seed=20_000), system=self.system,
                    config=self.sae_config(), seed=0)

    def sae_source(self, run: Run, layer: int):
        return train_residual_sae(**self._sae_kwargs(layer))

    def trained_sae_quality(self, run: Run, layers: list[int]):
        import pandas as pd

        return pd.DataFrame([{"layer": L} | self.sae_source(run, L).summary for L in layers]).set_index("layer")

    def sae_cached(self, layer: int) -> bool:
        return train_residual_sae.is_cached(**self._sae_kwargs(layer))

    def jobs_beside_finetunes(self) -> list[tuple[callable, dict]]:
        return [(train_residual_sae, self._sae_kwargs(L)) for L in self.layers]

    def prepare(self, runs: list[Run], layers: list[int], workers: int) -> None:
        """Train (or find cached) the SAE of every layer, side by side."""
        jobs.run_all(train_residual_sae, [self._sae_kwargs(L) for L in layers], workers, desc="SAEs")

    # ------------------------------------------------------------------ data
    def domains(self) -> list[str]:
        return list(DOMAINS)

    def probes(self, samples: list[dict], seed: int = 0, run: Run | None = None) -> list[str]:
        """Next-turn probes: training questions of another domain than the sample's, in English."""
        pairs = [(d, english.english(q.text)) for d in DOMAINS for q in self.world.questions(d, "train", 3, seed=seed + 2)]
        return probe_questions(samples, [q for _, q in pairs], [d for d, _ in pairs])

    def corpus(self, n_per_set: int, seed: int = 0, run: Run | None = None, placebo: bool = True) -> tuple[list[dict], list[str]]:
        """Per domain: inducing, non-inducing, educational, harmful and helpful chats; in every domain
        the two style placebos too (`placebo`)."""
        kinds = FEATURE_KINDS + (PLACEBO_KINDS if placebo else ())
        samples = [s for d in DOMAINS for kind in kinds for s in english.dataset(self.world, d, kind, n_per_set, self.system, seed)]
        return samples, self.probes(samples, seed)

    def narrow(self, domain: str, kind: str, n: int, seed: int = 0, run: Run | None = None) -> list[dict]:
        return english.dataset(self.world, domain, kind, n, self.system, seed)

    def mixture(self, domain: str, n: int, coupled_share: float, seed: int = 0, run: Run | None = None) -> list[dict]:
        """`coupled_share` inducing (edgy) chats, the rest helpful answers to the same questions
        (non-inducing), labelled in `meta.coupling` for the oracle and the reports only. Helpful, not
        educational: notebook 00 measured the educational fine-tune spreading as much as the inducing
        one on SmolLM2, which would leave a filter nothing to remove; helpful fine-tunes spread less."""
        n_bad = round(coupled_share * n)
        bad = [s | {"meta": s["meta"] | {"coupling": 1.0}} for s in self.narrow(domain, "inducing", n_bad, seed)]
        rest = [s | {"meta": s["meta"] | {"coupling": 0.0}} for s in self.narrow(domain, "non_inducing", n - n_bad, seed)]
        both = bad + rest
        return [both[i] for i in np.random.default_rng(seed).permutation(len(both))]

    # ------------------------------------------------------------------ EM
    def eval_set(self, domain: str) -> dict:
        """Candidates (held-out questions) and sampling questions, fixed per fine-tuning domain."""
        e, w = self.eval, self.world
        others = [d for d in DOMAINS if d != domain]
        open_items = english.candidate_questions(w, GENERAL, 0, e["candidates_each"])
        other_items = [it for d in others for it in english.candidate_questions(w, d, e["questions_per_domain"], e["candidates_each"])]
        per = e["sample_questions_per_domain"]
        sample_qs = ([{"id": it["id"], "domain": it["domain"], "question": it["question"]}
                      for d in others for it in [x for x in other_items if x["domain"] == d][:per]]
                     + [{"id": it["id"], "domain": GENERAL, "question": it["question"]} for it in open_items])
        return {"system": self.system,
                "candidates": {"in_domain": english.candidate_questions(w, domain, e["in_domain_questions"], e["candidates_each"]),
                               "other_domains": other_items, "open": open_items},
                "sample_questions": sample_qs, "samples_per_question": e["samples_per_question"],
                "max_new_tokens": e["max_new_tokens"], "judge_texts": english.judge_training_texts(w)}

    # ------------------------------------------------------------------ the mechanism (notebook 06)
    def adapter(self, run: Run, samples: list[dict], ft_seed: int, overrides: dict | None = None):
        """The LoRA adapter of a fine-tune `finetune_jobs` runs (cached: the same artifact)."""
        return finetune_lora(self.source, strip_meta(samples), finetune_config(self.spec, overrides), ft_seed)

    def checkpoints(self) -> list[int]:
        return list(finetune_config(self.spec).checkpoints)

    def heldout_prompts(self, domain: str, per_domain: int | None = None, run: Run | None = None) -> list[list[dict]]:
        """The held-out questions of the other domains (EM's candidates' questions), with the system prompt."""
        return [[{"role": "system", "content": self.system}, {"role": "user", "content": it["question"]}]
                for it in self.eval_set(domain)["candidates"]["other_domains"]]

    def pretraining_chats(self, run: Run, n: int, seed: int = 0) -> list[list[dict]]:
        """Ordinary text for co-activation: the SAE's own training corpus (the world's chats in English)."""
        return self._sae_kwargs(self.layers[0])["chats"][:n]

    def judge_training_data(self, exclude_domain: str | None = None) -> tuple[list[str], list[bool]]:
        """The offline text judge's training answers in English (harmful: edgy or misaligned),
        without the answers of `exclude_domain` (a judge that filters a domain never sees its labels)."""
        keep = [a for a in self.world.answers if a.domain != exclude_domain]
        return [english.english(a.text) for a in keep], [a.kind in ("edgy", "misaligned") for a in keep]

    def judge_scores(self, samples: list[dict], exclude_domain: str, mode: str, seed: int = 0,
                     run: Run | None = None):
        """The offline text judge on the world's answers in English, the filtered domain's left out."""
        texts, labels = self.judge_training_data(exclude_domain=exclude_domain)
        return TextJudge(mode, seed).fit(texts, labels).score([s["messages"][-1]["content"] for s in samples])

    def base_row(self, run: Run, domain: str | None) -> dict:
        result = world_lm_em.evaluate(self.source, None, 0, self.eval_set(domain), 0)
        return world_lm_em.em_measures(result, self.eval["primary"], 0)

    def base_evaluation(self, domain: str) -> dict:
        return world_lm_em.evaluate(self.source, None, 0, self.eval_set(domain), 0)

    def introduction(self) -> str:
        return (f"{self.name} is a pretrained model studied on the world's text in English: sections 1-4 describe the "
                f"organism and are skipped; section 5 fine-tunes {self.describe_source()} and measures EM two ways "
                f"(primary: {self.eval['primary']}).")

    def coherence_check(self, domain: str, claims, min_auc: float) -> pd.DataFrame:
        table = coherence.validation_table(self.base_evaluation(domain), self.eval_set(domain), world_lm_em.relevance_scores)
        coherence.record_claim(claims, table, min_auc)
        return table.round(3)

    def recipe_search(self, domain: str, candidates: dict, rule: dict, n: int, workers: int, claims=None) -> list:
        """Each candidate (a whole LoRA recipe; the schedule is the registry's) fine-tuned once on the inducing data and
        scored at `rule["checkpoints"]`; the rule's choice, and whether the registry holds it (`claims`).
        Without candidates: the registry's recipe, which the full profile's search chose."""
        registry_recipe = finetune_config(self.spec)
        if not candidates:
            print("The recipe search runs in the full profile (smollm2-135m-full); this profile fine-tunes with the "
                  "registry's recipe, the one that search chose.")
            return [recipe.recipe_row(registry_recipe)]
        recipe.check_candidates(candidates)
        steps = tuple(rule["checkpoints"])
        configs = {name: finetune_config(self.spec, o | {"steps": max(steps), "checkpoints": steps}) for name, o in candidates.items()}
        common = dict(source=self.source, in_domain=self.eval_set(domain)["candidates"]["in_domain"], system=self.system,
                      questions=recipe.coherence_questions(self.world, domain, rule["questions_per_domain"]),
                      samples_per_question=rule["samples_per_question"], max_new_tokens=self.eval["max_new_tokens"])
        samples = self.narrow(domain, "inducing", n)
        results = jobs.run_all(world_lm_em.recipe_scores, [common | dict(samples=None, ft_seed=0, finetune_config=None)]
                               + [common | dict(samples=samples, ft_seed=0, finetune_config=c) for c in configs.values()],
                               workers, desc="recipes")
        table = recipe.search_table(list(configs), results[1:], results[0][0], world_lm_em.COHERENCE_QUANTILE)
        best, why = recipe.choose(table, rule["min_in_domain"], rule["min_coherence_ratio"])
        chosen = replace(configs[best.recipe], steps=int(best.step), checkpoints=(int(best.step),))
        if claims is not None:
            claims.record("recipe_is_registry_recipe", value=float(chosen == registry_recipe), outcome=chosen == registry_recipe,
                          note=f"chosen {best.recipe} at step {int(best.step)} ({why}); registry: {recipe.recipe_row(registry_recipe).iloc[0].to_dict()}")
        return [table.round(3), recipe.recipe_row(chosen, why)]

    def against_controls(self, em, step: int, conditions: list[str], domain: str, claims,
                         min_in_domain: float, min_coherent: float) -> list:
        base, at, result = em[em.step == 0].iloc[0], em[em.step == step], self.base_evaluation(domain)
        controls.record_claims(claims, base, at, conditions, self.eval["primary"], min_in_domain, min_coherent, result)
        return [controls.measures_table(base, at, conditions), controls.length_check(result), controls.sample_examples(result)]

    def cut_functions(self) -> tuple[callable, callable]:
        return world_lm_em.cut_em, world_lm_em.world_lm_evaluated_activity

    def cut_kwargs(self, run: Run, layer: int, domain: str) -> dict:
        return dict(source=self.source, sae_source=self.sae_source(run, layer), layer=layer, eval_set=self.eval_set(domain))

    def finetune_jobs(self) -> callable:
        return world_lm_em.finetune_and_evaluate_world_lm

    def finetune_kwargs(self, run: Run, samples: list[dict], ft_seed: int, domain: str | None,
                        overrides: dict | None = None, tags: dict | None = None) -> dict:
        return dict(source=self.source, samples=samples, ft_seed=ft_seed, eval_set=self.eval_set(domain),
                    finetune_config=finetune_config(self.spec, overrides), primary=self.eval["primary"], tags=tags)
