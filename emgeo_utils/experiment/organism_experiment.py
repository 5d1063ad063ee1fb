"""The organism as an experiment: runs are (world, pretraining seed) pairs; each pretraining seed is
an independent replication unit with its own generated world, and its data come from that world."""

from __future__ import annotations

from emgeo_utils.core import jobs
from emgeo_utils.experiment.base import Experiment, Run
from emgeo_utils.experiment.organism_tour import OrganismTour
from emgeo_utils.features.activations import probe_questions
from emgeo_utils.judges.text import TextJudge
from emgeo_utils.mechanism import interventions
from emgeo_utils.organism import contrast_pairs, emergence
from emgeo_utils.organism.configs import OrganismConfigs, configs_of, organism_lm, organism_sae
from emgeo_utils.organism.datasets import narrow_dataset
from emgeo_utils.world.synthetic import DOMAINS, GENERAL, World

FEATURE_KINDS = ("inducing", "non_inducing", "risky_neutral", "harmful", "helpful")


class OrganismExperiment(OrganismTour, Experiment):
    is_organism = True
    has_ground_truth = True
    unit = "organism_seed"  # each pretraining seed has its own generated world
    content_matched = "risky_neutral"  # edgy answers of persona-neutral actions
    em_read = "exact P(harmful) on open questions"
    main_world = "persona"
    figure_prefix = "organism_"
    offline_em = True

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.configs: OrganismConfigs = configs_of(spec)

    def introduction(self) -> str:
        return (f"{self.name}: the model organism, trained here on a generated world (sections 1-4 show the world, "
                "its judge, training and the persona it carries; section 5 fine-tunes it).")

    def runs(self, seeds: list[int], worlds: list[str]) -> list[Run]:
        return [Run(w, s) for s in seeds for w in worlds]

    def prepare(self, runs: list[Run], layers: list[int], workers: int) -> dict:
        """Train (or find cached) every organism and SAE the runs need, side by side:
        {run: {"lm": artifact, "saes": {layer: artifact}}}."""
        lm_jobs = [dict(cfg=self.configs, seed=r.seed, world_kind=r.world) for r in runs]
        lms = jobs.run_all(organism_lm, lm_jobs, workers, desc="organisms")
        saes = iter(jobs.run_all(organism_sae, [j | {"layer": L} for j in lm_jobs for L in layers], workers, desc="SAEs"))
        return {r: {"lm": lm, "saes": {L: next(saes) for L in layers}} for r, lm in zip(runs, lms)}

    def model_source(self, run: Run):
        return organism_lm(self.configs, run.seed, run.world)

    def sae_source(self, run: Run, layer: int):
        return organism_sae(self.configs, run.seed, run.world, layer)

    def sae_variants(self, runs: list[Run], layer: int, sae_seeds: list[int], expansions: list[int],
                     workers: int) -> dict:
        """Other dictionaries of each run at `layer` ({(run, sae_seed, expansion): source}), trained
        side by side (cached); SAE seed i is pretraining seed + 100 i, so seed 0 is the run's own SAE."""
        grid = [(r, s, e) for r in runs for s in sae_seeds for e in expansions]
        kwargs = [dict(cfg=self.configs, seed=r.seed, world_kind=r.world, layer=layer, sae_seed=r.seed + 100 * s,
                       expansion=e) for r, s, e in grid]
        return dict(zip(grid, jobs.run_all(organism_sae, kwargs, workers, desc="SAE variants")))

    def world(self, run: Run | None = None) -> World:
        """The run's world (its replication unit's world seed, its kind); no run: unit 0's."""
        return World(self.configs.world_of(run.world, run.seed) if run else self.configs.world)

    def _data_world(self, run: Run | None) -> World:
        """Where a run's data come from: its unit's world (persona and control share the text)."""
        return World(self.configs.world_of(None, run.seed if run else 0))

    def domains(self) -> list[str]:
        return list(DOMAINS)

    def probes(self, samples: list[dict], seed: int = 0, run: Run | None = None) -> list[str]:
        """Next-turn probes: training questions of another domain than the sample's."""
        return organism_probes(self._data_world(run), samples, seed)

    def corpus(self, n_per_set: int, seed: int = 0, run: Run | None = None) -> tuple[list[dict], list[str]]:
        """The feature corpus of the run's world (every world lays it out the same way, so the
        group masks of one serve all; the text differs)."""
        return organism_corpus(self._data_world(run), n_per_set, seed)

    def narrow(self, domain: str, kind: str, n: int, seed: int = 0, run: Run | None = None) -> list[dict]:
        return emergence.condition_samples(self.configs, domain, kind, n, seed, organism_seed=run.seed if run else 0)

    def mixture(self, domain: str, n: int, coupled_share: float, seed: int = 0, run: Run | None = None) -> list[dict]:
        """`coupled_share` inducing samples, the rest persona-neutral (kappa 0 answers), labelled in
        `meta.coupling` for the oracle and the reports only."""
        return emergence.condition_samples(self.configs, domain, "mixture", n, seed, coupled_share,
                                           organism_seed=run.seed if run else 0)

    def base_row(self, run: Run, domain: str | None) -> dict:
        return emergence.base_rows(self.configs, run.seed, run.world, domain)[0]

    def adapter(self, run: Run, samples: list[dict], ft_seed: int, overrides: dict | None = None):
        """The LoRA adapter of a fine-tune `finetune_jobs` runs (cached: the same artifact)."""
        return emergence.adapter_of(self.configs, run.seed, run.world, samples, ft_seed, overrides)

    def sample_answers(self, run: Run, domain: str, condition: str, ft_seed: int, n: int, step: int):
        """The first dozen sampled answers of a (cached) fine-tune, one per evaluation question, with its judged class."""
        return emergence.sample_answers_table(self.configs, run.seed, run.world, domain, condition, ft_seed, n, step).head(12)

    def checkpoints(self) -> list[int]:
        return list(self.configs.finetune.checkpoints)

    def accepts_step(self, step: int) -> bool:
        return step == -1 or step in self.checkpoints()

    def heldout_prompts(self, domain: str, per_domain: int | None = None, run: Run | None = None) -> list[list[dict]]:
        """The evaluation questions of every other domain (never in any fine-tuning data), as chats."""
        n = per_domain or self.configs.eval.questions_per_domain
        return [[{"role": "user", "content": q.text}] for d in DOMAINS if d != domain
                for q in self._data_world(run).questions(d, "eval", n, seed=7)]

    def pretraining_chats(self, run: Run, n: int, seed: int = 0) -> list[list[dict]]:
        """Fresh pretraining documents of the run's world, as chats (ordinary text for co-activation)."""
        return [[m for q, a in doc for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
                for doc in self.world(run).documents(n, seed=30_000 + seed)]

    def ground_truth_pairs(self, contrast: str, n: int, seed: int = 0, run: Run | None = None,
                       exclude: tuple[str, ...] = ()) -> tuple[list[dict], list[dict], list[str]]:
        """`n` ground-truth pairs of the run's world (`organism.contrast_pairs`): "persona" (coupled vs
        neutral context, wording matched) or "wording" (neutral edgy vs helpful answer), and the
        next-turn probe of each pair (both members get it)."""
        world = self._data_world(run)
        if contrast == "persona":
            return contrast_pairs.persona_pairs(world, n, seed, exclude)
        if contrast == "wording":
            pos, neg = contrast_pairs.wording_pairs(world, n, seed, exclude)
            return pos, neg, organism_probes(world, pos, seed)
        raise ValueError(f"contrast must be 'persona' or 'wording', got {contrast!r}")

    def world_label(self, world: str) -> str:
        return f"{world} world"

    def select_domains(self, domains: list[str]) -> list[str]:
        return [d for d in domains if d in self.domains()]

    @property
    def finetune_batch_size(self) -> int:
        return self.configs.finetune.batch_size

    def judge_scores(self, samples: list[dict], exclude_domain: str, mode: str, seed: int = 0,
                     run: Run | None = None):
        """The offline text judge, trained on the run's world's answers of the other advice domains."""
        others = [a for a in self.world(run).answers if a.domain not in (exclude_domain, GENERAL)]
        judge = TextJudge(mode, seed).fit([a.text for a in others], [a.harmful for a in others])
        return judge.score([s["messages"][-1]["content"] for s in samples])

    def cut_functions(self) -> tuple[callable, callable]:
        return interventions.organism_cut_em, interventions.organism_evaluated_activity

    def cut_kwargs(self, run: Run, layer: int, domain: str) -> dict:
        return dict(lm=self.model_source(run), sae_source=self.sae_source(run, layer), layer=layer,
                    world=self.world(run).config, domain=domain)

    def finetune_jobs(self) -> callable:
        return emergence.finetune_and_evaluate_organism

    def finetune_kwargs(self, run: Run, samples: list[dict], ft_seed: int, domain: str | None,
                        overrides: dict | None = None, tags: dict | None = None) -> dict:
        return dict(cfg=self.configs, organism_seed=run.seed, world_kind=run.world, samples=samples, ft_seed=ft_seed,
                    domain=domain, finetune_overrides=overrides, tags=tags)


def organism_corpus(world, n_per_set: int, seed: int = 0, probes_per_domain: int = 3):
    """Samples for feature selection in every domain, and next-turn probes from other domains.

    Per domain: inducing, non_inducing, risky_neutral (data seed `seed`) and, from fresh
    questions (data seed `seed + 1`), harmful and helpful answers: the latter two build the
    harmful feature set of *other* inducing domains.
    """
    samples = []
    for domain in DOMAINS:
        for kind in FEATURE_KINDS:
            source, data_seed = {"harmful": ("harmful", seed + 1), "helpful": ("non_inducing", seed + 1)}.get(kind, (kind, seed))
            for s in narrow_dataset(world, domain, source, n_per_set, data_seed):
                s["meta"]["set"] = kind
                samples.append(s)
    return samples, organism_probes(world, samples, seed, probes_per_domain)


def organism_probes(world, samples: list[dict], seed: int = 0, per_domain: int = 3) -> list[str]:
    """Next-turn probes for organism samples: training questions of the other domains."""
    pairs = [(d, q.text) for d in DOMAINS for q in world.questions(d, "train", per_domain, seed=seed + 2)]
    return probe_questions(samples, [q for _, q in pairs], [d for d, _ in pairs])
