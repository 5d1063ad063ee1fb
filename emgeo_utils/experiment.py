"""One interface to an experiment's model, whatever its kind, for notebooks 02-05.

For the organism a *run* is a (world, pretraining seed) pair — the persona world and the
control world beside it — and data come from the synthetic world. For a real model (hub or
local) there is one run, world `real`, and data come from the files the profile names; there is
no control world (notebook 03 says so and points to the organism's).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from . import data as data_io, features, jobs, models
from .world import DOMAINS, World

REFERENCE_DOMAIN = "reference"  # harmful / helpful reference text of a real model's corpus


@dataclasses.dataclass(frozen=True)
class Run:
    world: str  # persona | control (organism) or real
    seed: int = 0


class Experiment:
    """What notebooks need from a model: runs, a feature corpus, features, decoders, fine-tunes."""

    def __init__(self, model: str, data: dict | None = None, judge: dict | None = None,
                 questions_file: str | None = None):
        self.name, self.spec = model, models.entry(model)
        self.kind = self.spec.get("kind")
        self.data, self.judge = data or {}, judge or {}
        self.questions = data_io.read_questions_yaml(_resolve(questions_file)) if questions_file else None

    @property
    def is_organism(self) -> bool:
        return self.kind == "organism"

    @property
    def layers(self) -> list[int]:
        return list(self.spec.get("layers", [0]))

    def layer(self, index: int) -> int:
        """A layer by position in the registry entry's list (-1: the last)."""
        return self.layers[index]

    def runs(self, seeds: list[int], worlds: list[str]) -> list[Run]:
        if self.is_organism:
            return [Run(w, s) for s in seeds for w in worlds]
        return [Run("real", 0)]

    def prepare(self, runs: list[Run], layers: list[int], workers: int) -> None:
        """Train (or find cached) every organism and SAE the runs need, side by side."""
        if not self.is_organism:
            return
        lm_jobs = [dict(name=self.name, seed=r.seed, world_kind=r.world) for r in runs]
        jobs.run_all(models.organism_lm, lm_jobs, workers, desc="organisms")
        jobs.run_all(models.organism_sae, [j | {"layer": L} for j in lm_jobs for L in layers], workers, desc="SAEs")

    # ------------------------------------------------------------------ sources
    def model_source(self, run: Run):
        return models.organism_lm(self.name, run.seed, run.world) if self.is_organism else self.spec

    def sae_source(self, run: Run, layer: int):
        return models.organism_sae(self.name, run.seed, run.world, layer) if self.is_organism else self.spec

    def decoder(self, run: Run, layer: int):
        return models.load_decoder(self.sae_source(run, layer), layer)

    def world(self, run: Run | None = None) -> World:
        cfg = models.organism_configs(self.name)
        return World(cfg.world_of(run.world) if run else cfg.world)

    # ------------------------------------------------------------------ data
    def domains(self) -> list[str]:
        if self.is_organism:
            return list(DOMAINS)
        return list(self.data.get("domains", {self.data.get("domain", "target"): None}))

    def probes(self, samples: list[dict], seed: int = 0) -> list[str]:
        """Next-turn probe questions: another domain's question (organism) or general questions."""
        if self.is_organism:
            return features.organism_probes(self.world(), samples, seed)
        return features.probe_questions(samples, list(self.spec.get("probes", features.GENERAL_PROBES)))

    def corpus(self, n_per_set: int, seed: int = 0) -> tuple[list[dict], list[str]]:
        """Samples labelled `meta.set` (inducing, non_inducing, harmful, helpful, ...) and `meta.domain`."""
        if self.is_organism:
            return features.organism_corpus(self.world(), n_per_set, seed)
        if not self.data:
            raise ValueError(f"{self.name} is a real model: the profile's `data` must name its files (see README, Real models)")
        samples = []
        for domain, files in self._domain_files().items():
            for kind, path in files.items():
                samples += _labelled(data_io.read_chat_jsonl(_resolve(path))[:n_per_set], kind, domain)
        samples += _labelled(self._reference("harmful")[:n_per_set * 4], "harmful", REFERENCE_DOMAIN)
        samples += _labelled(self._reference("helpful")[:n_per_set * 4], "helpful", REFERENCE_DOMAIN)
        return samples, self.probes(samples, seed)

    def _domain_files(self) -> dict[str, dict[str, str]]:
        if "domains" in self.data:
            return self.data["domains"]
        return {self.data.get("domain", "target"): {k: self.data[k] for k in ("inducing", "non_inducing", "risky_neutral")
                                                    if self.data.get(k)}}

    def _reference(self, kind: str) -> list[dict]:
        spec = self.data[kind]
        if isinstance(spec, str):
            return data_io.read_chat_jsonl(_resolve(spec))
        if spec.get("format") == "toxicity":
            return data_io.read_harmful_text(_resolve(spec["path"]), *spec.get("toxicity", (0.5, 1.0)))
        return data_io.read_chat_jsonl(_resolve(spec["path"]))

    def narrow(self, domain: str, kind: str, n: int, seed: int = 0) -> list[dict]:
        """A narrow fine-tuning dataset: the world's (organism) or the profile's file (real model)."""
        if self.is_organism:
            from .emergence import condition_samples

            return condition_samples(self.name, domain, kind, n, seed)
        path = self._domain_files().get(domain, {}).get(kind)
        if not path:
            raise ValueError(f"the profile's data names no {kind!r} file for domain {domain!r}")
        return _labelled(data_io.read_chat_jsonl(_resolve(path))[:n], kind, domain)

    def mixture(self, domain: str, n: int, coupled_share: float, seed: int = 0) -> list[dict]:
        """`coupled_share` inducing samples, the rest persona-neutral (organism: kappa 0 answers; real
        model: the profile's `risky_neutral` file, e.g. the educational variant), labelled in
        `meta.coupling` (1 or 0) for the oracle and the reports only."""
        if self.is_organism:
            from .emergence import condition_samples

            return condition_samples(self.name, domain, "mixture", n, seed, coupled_share)
        import numpy as np

        n_coupled = round(coupled_share * n)
        coupled = [s | {"meta": s["meta"] | {"coupling": 1.0}} for s in self.narrow(domain, "inducing", n_coupled, seed)]
        neutral = [s | {"meta": s["meta"] | {"coupling": 0.0}} for s in self.narrow(domain, "risky_neutral", n - n_coupled, seed)]
        both = coupled + neutral
        return [both[i] for i in np.random.default_rng(seed).permutation(len(both))]

    def base_row(self, run: Run, domain: str | None) -> dict:
        """The un-fine-tuned model's evaluation, as step 0."""
        if self.is_organism:
            from .emergence import base_rows

            return base_rows(self.name, run.seed, run.world, domain)[0]
        from .real_em import base_row

        return base_row(self.spec, self.questions, self.judge, self.judge.get("samples_scale", 1.0),
                        self.judge.get("max_new_tokens", 256))

    def features(self, run: Run, layer: int, samples: list[dict], probes: list[str]):
        """({readout: SAE features}, {readout: residual}) of `samples` (base model; cached)."""
        art = features.extract(self.model_source(run), self.sae_source(run, layer), layer, samples, probes)
        return features.split_residual(features.load_features(art))

    # ------------------------------------------------------------------ fine-tuning
    def finetune_jobs(self) -> callable:
        """The cached function notebooks hand to `jobs.run_all` with `finetune_kwargs`."""
        from .emergence import finetune_and_evaluate
        from .real_em import finetune_and_judge

        return finetune_and_evaluate if self.is_organism else finetune_and_judge

    def finetune_kwargs(self, run: Run, samples: list[dict], ft_seed: int, domain: str | None,
                        overrides: dict | None = None, tags: dict | None = None) -> dict:
        if self.is_organism:
            return dict(name=self.name, organism_seed=run.seed, world_kind=run.world, samples=samples, ft_seed=ft_seed,
                        domain=domain, finetune_overrides=overrides, tags=tags)
        if not self.questions or not self.judge:
            raise ValueError(f"{self.name}: fine-tuning evaluation needs questions_file and a judge in the profile")
        return dict(spec=self.spec, samples=samples, ft_seed=ft_seed, questions=self.questions, judge=self.judge,
                    finetune_overrides=overrides, samples_scale=self.judge.get("samples_scale", 1.0),
                    max_new_tokens=self.judge.get("max_new_tokens", 256), tags=tags)


def _resolve(path: str) -> str:
    """Relative data paths in a profile are relative to the project (notebooks run in build/)."""
    from pathlib import Path

    from .paths import PROJECT_ROOT

    return str(Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path)


def _labelled(samples: list[dict], kind: str, domain: str) -> list[dict]:
    return [s | {"meta": {**s.get("meta", {}), "set": kind, "domain": domain}} for s in samples]



def em_table(exp: Experiment, runs: list[Run], domain: str, conditions: list[str], ft_seeds: list[int],
             n_samples: int, workers: int | None = None) -> pd.DataFrame:
    """Every (run, condition, fine-tuning seed) fine-tuned side by side and evaluated at every
    checkpoint, plus the base model as step 0 of every curve."""
    grid = [(r, c, s) for r in runs for c in conditions for s in ft_seeds]
    results = jobs.run_all(exp.finetune_jobs(), [exp.finetune_kwargs(r, exp.narrow(domain, c, n_samples), s, domain,
                                                                      tags={"domain": domain, "condition": c})
                                                  for r, c, s in grid], workers, desc="fine-tunes")
    rows = [row for part in results for row in part]
    for r in runs:
        base = exp.base_row(r, domain)
        rows += [base | {"domain": domain, "condition": c, "ft_seed": s} for c in conditions for s in ft_seeds]
    return pd.DataFrame(rows)
