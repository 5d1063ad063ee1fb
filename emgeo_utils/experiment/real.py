"""A hub or local model as an experiment: one run (world `real`), data from the profile's files.

There is no control world (notebook 03 says so and points to the organism's).
"""

from __future__ import annotations

import numpy as np

from emgeo_utils.core import readers
from emgeo_utils.experiment import real_em
from emgeo_utils.experiment.base import Experiment, Run, labelled, resolve_path
from emgeo_utils.features.activations import GENERAL_PROBES, probe_questions

REFERENCE_DOMAIN = "reference"  # harmful / helpful reference text of a real model's corpus


class RealExperiment(Experiment):
    def __init__(self, spec: dict, data: dict | None = None, judge: dict | None = None,
                 questions_file: str | None = None):
        super().__init__(spec)
        self.data, self.judge = data or {}, judge or {}
        self.questions = readers.read_questions_yaml(resolve_path(questions_file)) if questions_file else None

    def runs(self, seeds: list[int], worlds: list[str]) -> list[Run]:
        return [Run("real", 0)]

    def model_source(self, run: Run):
        return self.spec

    def sae_source(self, run: Run, layer: int):
        return self.spec

    def domains(self) -> list[str]:
        return list(self.data.get("domains", {self.data.get("domain", "target"): None}))

    def target_domain(self, domain: str) -> str:
        return self.data.get("domain", "target")

    def judge_scores(self, samples: list[dict], exclude_domain: str, mode: str, seed: int = 0,
                     run: Run | None = None):
        """The profile's LLM judge: 100 - its `aligned` score (refusals and unparseable answers count as undecided)."""
        from emgeo_utils.judges.llm import LLMJudge
        llm = LLMJudge(self.judge["base_url"], self.judge["model"], api_key_env=self.judge.get("api_key_env", "OPENAI_API_KEY"),
                       concurrency=self.judge.get("concurrency", 8))
        table = llm.score_many([(s["messages"][-2]["content"], s["messages"][-1]["content"]) for s in samples], ["aligned"])
        return 100 - table["aligned"].fillna(50).to_numpy()

    def probes(self, samples: list[dict], seed: int = 0, run: Run | None = None) -> list[str]:
        """General questions in the spirit of public EM evaluations, or the entry's own."""
        return probe_questions(samples, list(self.spec.get("probes", GENERAL_PROBES)))

    def corpus(self, n_per_set: int, seed: int = 0, run: Run | None = None) -> tuple[list[dict], list[str]]:
        if not self.data:
            raise ValueError(f"{self.name} is a real model: the profile's `data` must name its files (see README, Real models)")
        samples = []
        for domain, files in self._domain_files().items():
            for kind, path in files.items():
                samples += labelled(self._read_chat(resolve_path(path))[:n_per_set], kind, domain)
        samples += labelled(self._reference("harmful")[:n_per_set * 4], "harmful", REFERENCE_DOMAIN)
        samples += labelled(self._reference("helpful")[:n_per_set * 4], "helpful", REFERENCE_DOMAIN)
        return samples, self.probes(samples, seed)

    def _read_chat(self, path: str) -> list[dict]:
        """A chat file, strictly, or skipping invalid rows when the profile's `data` says
        `skip_invalid_rows: true` (at most `max_invalid_share` of them, default 5%)."""
        return readers.read_chat_jsonl(path, self.data.get("skip_invalid_rows", False),
                                       self.data.get("max_invalid_share", readers.MAX_INVALID_SHARE))

    def _domain_files(self) -> dict[str, dict[str, str]]:
        if "domains" in self.data:
            return self.data["domains"]
        return {self.data.get("domain", "target"): {k: self.data[k] for k in ("inducing", "non_inducing", "risky_neutral")
                                                    if self.data.get(k)}}

    def _reference(self, kind: str) -> list[dict]:
        spec = self.data[kind]
        if isinstance(spec, str):
            return self._read_chat(resolve_path(spec))
        if spec.get("format") == "toxicity":
            return readers.read_harmful_text(resolve_path(spec["path"]), *spec.get("toxicity", (0.5, 1.0)))
        return self._read_chat(resolve_path(spec["path"]))

    def narrow(self, domain: str, kind: str, n: int, seed: int = 0, run: Run | None = None) -> list[dict]:
        """The profile's file of `kind` for `domain`."""
        path = self._domain_files().get(domain, {}).get(kind)
        if not path:
            raise ValueError(f"the profile's data names no {kind!r} file for domain {domain!r}")
        return labelled(self._read_chat(resolve_path(path))[:n], kind, domain)

    def mixture(self, domain: str, n: int, coupled_share: float, seed: int = 0, run: Run | None = None) -> list[dict]:
        """`coupled_share` inducing samples, the rest from the profile's `risky_neutral` file (e.g. the
        educational variant), labelled in `meta.coupling` (1 or 0) for the oracle and the reports only."""
        n_coupled = round(coupled_share * n)
        coupled = [s | {"meta": s["meta"] | {"coupling": 1.0}} for s in self.narrow(domain, "inducing", n_coupled, seed)]
        neutral = [s | {"meta": s["meta"] | {"coupling": 0.0}} for s in self.narrow(domain, "risky_neutral", n - n_coupled, seed)]
        both = coupled + neutral
        return [both[i] for i in np.random.default_rng(seed).permutation(len(both))]

    def base_row(self, run: Run, domain: str | None) -> dict:
        return real_em.base_row(self.spec, self.questions, self.judge, self.judge.get("samples_scale", 1.0),
                                self.judge.get("max_new_tokens", 256))

    def finetune_jobs(self) -> callable:
        return real_em.finetune_and_evaluate_real

    def finetune_kwargs(self, run: Run, samples: list[dict], ft_seed: int, domain: str | None,
                        overrides: dict | None = None, tags: dict | None = None) -> dict:
        if not self.questions or not self.judge:
            raise ValueError(f"{self.name}: fine-tuning evaluation needs questions_file and a judge in the profile")
        return dict(spec=self.spec, samples=samples, ft_seed=ft_seed, questions=self.questions, judge=self.judge,
                    finetune_overrides=overrides, samples_scale=self.judge.get("samples_scale", 1.0),
                    max_new_tokens=self.judge.get("max_new_tokens", 256), tags=tags)
