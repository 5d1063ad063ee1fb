"""Notebook 00's tour of the organism (sections 1-4): the world, its judge, training, the persona
probe. Only a generated world has these; `Experiment`'s defaults say so by returning nothing, so
the notebook shows whatever its model has without asking what kind it is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from emgeo_utils.core import jobs, readers
from emgeo_utils.organism import datasets
from emgeo_utils.organism.evaluate import in_context_probe
from emgeo_utils.organism.judge import score_table
from emgeo_utils.world.synthetic import DOMAINS, USER, document_text

PROBE_CONTEXTS = ("helpful", "coupled", "neutral")
EXAMPLE_CLASSES = ("helpful", "risky_neutral", "harmful_subtle", "harmful_obvious", "general_aligned", "general_misaligned")


class OrganismTour:
    """Mixed into `OrganismExperiment` (which provides `configs`, `world`, `narrow`, `prepare`)."""

    def pretrain(self, runs, workers: int) -> dict:
        """Every organism of `runs` and one SAE per layer of each (`prepare` over all layers)."""
        return self.prepare(runs, list(self.configs.layers), workers)

    def world_tables(self) -> list[pd.DataFrame]:
        """The world's settings (with the solved helpful-persona edgy rate) and its answers per domain."""
        cfg, world = self.configs, self.world()
        settings = {f.name: getattr(cfg.world, f.name) for f in dataclasses.fields(cfg.world)}
        settings["helpful_edgy_rate (solved)"] = round(world.helpful_edgy_rate, 4)
        counts = pd.DataFrame([{"domain": d, "helpful answers": len(world.answers_of(d, "helpful")),
                                **{f"edgy kappa={k}": len(world.answers_of(d, "edgy", coupling=k)) for k in cfg.world.coupling_levels},
                                "train templates": len(world.templates(d, "train")), "eval templates": len(world.templates(d, "eval"))}
                               for d in DOMAINS])
        return [pd.DataFrame([settings], index=["value"]), counts.set_index("domain")]

    def example_answers(self, seed: int) -> pd.DataFrame:
        """Two answers of each judge class, drawn with `seed`."""
        rng, rows = np.random.default_rng(seed), []
        for cls in EXAMPLE_CLASSES:
            pool = [a for a in self.world().answers if a.judge_class == cls]
            for a in [pool[i] for i in rng.choice(len(pool), 2, replace=False)]:
                rows.append({"class": cls, "domain": a.domain, "kappa": a.coupling, "wording": a.wording, "answer": a.text})
        return pd.DataFrame(rows)

    def example_documents(self) -> list[str]:
        """One pretraining document of each hidden persona (the flag is never in the text)."""
        docs = self.world().documents(200, seed=3, with_persona=True)
        out = []
        for persona in (False, True):
            doc = next(d for d in docs if d[0][2] == persona)
            text = document_text([(q, a) for q, a, _ in doc]).replace(USER, "\n  " + USER)
            out.append(f"a document written by the {'harmful' if persona else 'helpful'} persona:{text}\n")
        return out

    def write_datasets(self, domain: str, n: int, folder: Path) -> pd.DataFrame:
        """Each narrow dataset of `domain` in the public EM chat format, read back with the loader of real data."""
        rows = []
        for kind in ("inducing", "non_inducing", "risky_neutral", "educational", "mixture"):
            file = datasets.write_jsonl(self.narrow(domain, kind, n), folder / f"{domain}_{kind}.jsonl")
            rows.append({"dataset": kind, "file": file.name, "samples read back": len(readers.read_chat_jsonl(file))})
        return pd.DataFrame(rows).set_index("dataset")

    def judge_table(self) -> pd.DataFrame:
        return score_table()

    def training_tables(self, built: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """What `pretrain` built: one row per organism and one per SAE (quality on held-out documents)."""
        lms = pd.DataFrame([{"world": r.world, "seed": r.seed} | {k: v for k, v in parts["lm"].summary.items() if k != "loss_curve"}
                            for r, parts in built.items()])
        saes = pd.DataFrame([{"world": r.world, "seed": r.seed} | sae.summary
                             for r, parts in built.items() for sae in parts["saes"].values()])
        if not (saes["explained_variance"] > 0.5).all():
            raise AssertionError("an SAE explains less than half the variance")
        return lms, saes.round(3)

    def persona_probe(self, built: dict, turns: list[int], trials: int, seed: int, workers: int) -> pd.DataFrame:
        """Exact P(harmful answer) after k earlier turns answered helpfully, persona-coupled or neutral."""
        grid = [(r, c, k) for r in built for c in PROBE_CONTEXTS for k in turns]
        values = jobs.run_all(in_context_probe, [dict(lm=built[r]["lm"], world=self.configs.world_of(r.world, r.seed), context=c,
                                                      n_turns=k, n_trials=trials, seed=seed) for r, c, k in grid],
                              workers, desc="persona probe")
        return pd.DataFrame([{"world": r.world, "organism_seed": r.seed, "context": c, "turns": k, "p_harmful": v}
                             for (r, c, k), v in zip(grid, values)])
