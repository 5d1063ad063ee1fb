"""One interface to an experiment's model, whatever its kind, for notebooks 00 and 02-05.

`loader.open_experiment(name)` resolves a registry name once into an `OrganismExperiment`
(runs are (world, pretraining seed) pairs; data come from the synthetic world) or a
`RealExperiment` (one run, world `real`; data come from the profile's files). Notebooks call
the methods below and never branch on the model's kind except to explain or plot.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from emgeo_utils.core import cache, jobs, paths
from emgeo_utils.features import activations
from emgeo_utils.models import hooks, registry
from emgeo_utils.models.loading import load_decoder, load_model, load_sae


@dataclasses.dataclass(frozen=True)
class Run:
    world: str  # persona | control (organism) or real
    seed: int = 0


class Experiment:
    """What notebooks need from a model: runs, a feature corpus, features, decoders, fine-tunes."""

    is_organism = False
    has_ground_truth = False  # a generated world knows who wrote what (notebook 07's families)
    unit = "ft_seed"  # the unit of replication: one run, so its fine-tuning seeds
    content_matched = "educational"  # non-inducing data with the inducing data's content (the same edgy answers)
    em_read = "harmful candidates' likelihood share on open questions"  # EM as notebook 07 reads it under cuts
    main_world = "real"  # the world a claim about the model reads (the organism: its persona world)
    offline_em = False  # EM measured without an LLM judge, so notebooks 06-07 can fine-tune and cut at will

    def __init__(self, spec: dict):
        self.spec = spec
        self.name, self.kind = spec["name"], spec.get("kind")

    @property
    def layers(self) -> list[int]:
        return list(self.spec.get("layers", [0]))

    def layer(self, index: int) -> int:
        """A layer by position in the registry entry's list (-1: the last)."""
        return self.layers[index]

    # ------------------------------------------------------------------ implemented per kind
    def runs(self, seeds: list[int], worlds: list[str]) -> list[Run]:
        raise NotImplementedError

    def prepare(self, runs: list[Run], layers: list[int], workers: int) -> dict:
        """Build (or find cached) whatever the runs need before features can be read; return what
        was built per run ({} when nothing is: a pretrained model with public SAEs)."""
        return {}

    def model_source(self, run: Run):
        raise NotImplementedError

    def sae_source(self, run: Run, layer: int):
        raise NotImplementedError

    def domains(self) -> list[str]:
        raise NotImplementedError

    # `run`: whose data (the organism draws each replication unit's from its own world; a model with
    # one data set ignores it)
    def probes(self, samples: list[dict], seed: int = 0, run: Run | None = None) -> list[str]:
        raise NotImplementedError

    def corpus(self, n_per_set: int, seed: int = 0, run: Run | None = None) -> tuple[list[dict], list[str]]:
        """Samples labelled `meta.set` (inducing, non_inducing, harmful, helpful, ...) and `meta.domain`,
        and one next-turn probe per sample."""
        raise NotImplementedError

    def narrow(self, domain: str, kind: str, n: int, seed: int = 0, run: Run | None = None) -> list[dict]:
        raise NotImplementedError

    def mixture(self, domain: str, n: int, coupled_share: float, seed: int = 0, run: Run | None = None) -> list[dict]:
        raise NotImplementedError

    def ground_truth_pairs(self, contrast: str, n: int, seed: int = 0, run: Run | None = None,
                       exclude: tuple[str, ...] = ()) -> tuple[list[dict], list[dict], list[str]]:
        """Ground-truth pairs (persona or wording contrast); only a generated world has them."""
        raise NotImplementedError(f"{self.name} has no ground truth of who wrote what: persona and wording "
                                  "pairs exist for the organism only (notebook 07)")

    def world_label(self, world: str) -> str:
        """How claims name a run's world (the organism has two kinds; a pretrained model is itself)."""
        return self.name

    def change_jobs(self, grid: list[tuple[Run, str, int]], train_data: dict, layers: list[int], steps: list[int],
                    domain: str, n_target_chats: int, n_targets: int) -> list[dict]:
        """Notebook 06's jobs for `mechanism.changes.feature_changes`, one per (run, condition, fine-tuning
        seed): the base model and its SAEs, the fine-tune's adapter, held-out prompts of the other
        domains, and the first training chats (where the target features are picked)."""
        return [dict(base=self.model_source(r), sae_sources=[self.sae_source(r, L) for L in layers], layers=layers,
                     adapter=self.adapter(r, train_data[(r, c)], s), steps=steps, prompts=self.heldout_prompts(domain, run=r),
                     train_chats=[x["messages"] for x in train_data[(r, c)][:n_target_chats]], n_targets=n_targets, seed=s)
                for r, c, s in grid]

    def activity_jobs(self, pairs: list[tuple[Run, int]], n_documents: int, seed: int) -> list[dict]:
        """Notebook 06's jobs for `mechanism.coactivation.token_activity`: each (run, layer) on ordinary text."""
        return [dict(base=self.model_source(r), sae_source=self.sae_source(r, L), layer=L,
                     chats=self.pretraining_chats(r, n_documents, seed)) for r, L in pairs]

    def cut_functions(self) -> tuple[callable, callable]:
        """(EM under cuts, activity where it is read): the cached functions notebook 07 runs."""
        raise NotImplementedError(f"{self.name}: EM under a cut is built for the organism and world-lm models")

    def cut_kwargs(self, run: Run, layer: int, domain: str) -> dict:
        """What both cut functions need besides the adapter, checkpoint and cuts."""
        raise NotImplementedError(f"{self.name}: EM under a cut is built for the organism and world-lm models")

    def base_row(self, run: Run, domain: str | None) -> dict:
        """The un-fine-tuned model's evaluation, as step 0 (`judges.rule.em_row`)."""
        raise NotImplementedError

    def finetune_jobs(self) -> callable:
        """The cached function notebooks hand to `jobs.run_all` with `finetune_kwargs`."""
        raise NotImplementedError

    def finetune_kwargs(self, run: Run, samples: list[dict], ft_seed: int, domain: str | None,
                        overrides: dict | None = None, tags: dict | None = None) -> dict:
        raise NotImplementedError

    def jobs_beside_finetunes(self) -> list[tuple[callable, dict]]:
        """Cached jobs a later notebook reads, built in notebook 00's fine-tuning pool while a worker
        would otherwise wait (a pretrained model's SAEs); the organism builds its own SAEs first."""
        return []

    def judge_scores(self, samples: list[dict], exclude_domain: str, mode: str, seed: int = 0,
                     run: Run | None = None):
        """Harmfulness of each sample's last answer from its text alone (the judge notebook 05 filters with),
        never trained on `exclude_domain`'s labels."""
        raise NotImplementedError

    # ------------------------------------------------------------------ what only some models have
    # Notebook 00's tour (sections 1-4), 02's SAE quality, 03's other dictionaries: a generated world, or
    # an SAE trained here, has them; the defaults say "nothing here" (None, [], {}) and notebooks show what is.
    def pretrain(self, runs: list[Run], workers: int) -> dict:
        """Pretrain (or find cached) the runs' organisms and SAEs; a pretrained model has nothing to build."""
        return {}

    def world_tables(self) -> list[pd.DataFrame]:
        return []

    def example_answers(self, seed: int) -> pd.DataFrame | None:
        return None

    def example_documents(self) -> list[str]:
        return []

    def write_datasets(self, domain: str, n: int, folder: Path) -> pd.DataFrame | None:
        return None  # a real model's data are the profile's files already

    def judge_table(self) -> pd.DataFrame | None:
        return None

    def training_tables(self, built: dict) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        return None, None

    def sae_variants(self, runs: list[Run], layer: int, sae_seeds: list[int], expansions: list[int], workers: int) -> dict:
        """Other dictionaries of each run (notebook 03, section 3); a real model's SAEs come from its release."""
        print(f"{self.name}: its SAEs come from a release or are trained once; the organism shows other dictionaries.")
        return {}

    def trained_sae_quality(self, run: Run, layers: list[int]) -> pd.DataFrame | None:
        """The quality of SAEs trained here for a pretrained model that has none (notebook 02)."""
        return None

    def persona_probe(self, built: dict, turns: list[int], trials: int, seed: int, workers: int) -> pd.DataFrame | None:
        return None

    def sample_answers(self, run: Run, domain: str, condition: str, ft_seed: int, n: int, step: int) -> pd.DataFrame | None:
        return None

    def coherence_check(self, domain: str, claims, min_auc: float) -> pd.DataFrame | None:
        """Whether the sampled answers' coherence measure sees topicality (a model judged by its own measure)."""
        return None

    def recipe_search(self, domain: str, candidates: dict, rule: dict, n: int, workers: int, claims=None) -> list:
        """The fine-tuning recipe chosen by the profile's rule (a pretrained model studied on the world's text)."""
        return []

    # ------------------------------------------------------------------ shared
    em_as_ratio = True  # EM read as a rate against the base and non-inducing rates (a likelihood share is not)
    figure_prefix = ""  # the organism's figures are named organism_*

    def introduction(self) -> str:
        """What notebook 00 does with this model."""
        return (f"{self.name} is a pretrained model: sections 1-4 describe the organism and are skipped; section 5 "
                f"fine-tunes {self.describe_source()} and judges it.")

    def describe_source(self) -> str:
        """Where the model's weights come from, in words."""
        return registry.describe_source(self.spec)

    def accepts_step(self, step: int) -> bool:
        """Whether `step` names a checkpoint (-1: the last); a model without fixed checkpoints takes any."""
        return True

    def against_controls(self, em: pd.DataFrame, step: int, conditions: list[str], domain: str, claims,
                         min_in_domain: float, min_coherent: float) -> list[pd.DataFrame]:
        """Notebook 00's section 5b: EM measures against every control, claims recorded on `claims`
        (a pretrained model studied on the world's text; others read EM as a ratio above)."""
        return []

    def target_domain(self, domain: str) -> str:
        """The domain the notebooks study: the parameter's (a model with data files: its file's)."""
        return domain

    def select_domains(self, domains: list[str]) -> list[str]:
        """The domains notebook 04 runs: a model's own (all of them, whatever the parameter lists)."""
        return self.domains()

    @property
    def finetune_batch_size(self) -> int:
        return int(self.spec.get("finetune", {}).get("batch_size", 8))

    def sae_identity(self, run: Run, layer: int) -> dict:
        """What names a run's SAE in `feature_sets.json`: its cache key, or its public release."""
        source = self.sae_source(run, layer)
        if isinstance(source, cache.Artifact):
            return {"key": source.key}
        return {k: source["sae"].get(k) for k in ("release", "id", "path")}

    def neuronpedia(self, layer: int) -> str | None:
        """The entry's Neuronpedia page for a layer's features, if it has one."""
        return self.spec.get("neuronpedia", "").format(layer=layer) or None

    def decoder(self, run: Run, layer: int, sae=None):
        return load_decoder(self.sae_source(run, layer) if sae is None else sae, layer)

    def features(self, run: Run, layer: int, samples: list[dict], probes: list[str], sae=None):
        """({readout: SAE features}, {readout: residual}) of `samples` (base model; cached), through
        the run's SAE at `layer` or another one (`sae`: a source as `sae_source` returns)."""
        art = activations.extract(self.model_source(run), self.sae_source(run, layer) if sae is None else sae, layer,
                                  samples, probes)
        return activations.split_residual(activations.load_features(art))

    def load(self, run: Run, layers: list[int]):
        """(model, tokenizer, {layer: SAE}) of a run, every layer checked against the model."""
        if "n_layers" in self.spec:  # fail before a download
            for layer in layers:
                hooks.check_layer_index(layer, self.spec["n_layers"], self.name)
        model, tokenizer = load_model(self.model_source(run))
        for layer in layers:
            hooks.check_layer(model, layer)
        return model, tokenizer, {layer: load_sae(self.sae_source(run, layer), layer) for layer in layers}


def resolve_path(path: str) -> str:
    """Relative data paths in a profile are relative to the project (notebooks run in build/)."""
    return str(Path(path) if Path(path).is_absolute() else paths.PROJECT_ROOT / path)


def labelled(samples: list[dict], kind: str, domain: str) -> list[dict]:
    return [s | {"meta": {**s.get("meta", {}), "set": kind, "domain": domain}} for s in samples]


def em_table(exp: Experiment, runs: list[Run], domain: str, conditions: list[str], ft_seeds: list[int],
             n_samples: int, workers: int | None = None) -> pd.DataFrame:
    """Every (run, condition, fine-tuning seed) fine-tuned side by side and evaluated at every
    checkpoint, plus the base model as step 0 of every curve."""
    grid = [(r, c, s) for r in runs for c in conditions for s in ft_seeds]
    results = jobs.run_all(exp.finetune_jobs(), [exp.finetune_kwargs(r, exp.narrow(domain, c, n_samples, run=r), s, domain,
                                                                      tags={"domain": domain, "condition": c})
                                                  for r, c, s in grid], workers, desc="fine-tunes",
                           beside=exp.jobs_beside_finetunes())
    rows = [row for part in results for row in part]
    for r in runs:
        base = exp.base_row(r, domain)
        rows += [base | {"domain": domain, "condition": c, "ft_seed": s} for c in conditions for s in ft_seeds]
    return pd.DataFrame(rows)
