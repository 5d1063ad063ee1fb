"""A registry name becomes an experiment here, once; everything downstream receives the object."""

from __future__ import annotations

from emgeo_utils.experiment.base import Experiment
from emgeo_utils.experiment.organism_experiment import OrganismExperiment
from emgeo_utils.experiment.real import RealExperiment
from emgeo_utils.experiment.world_lm import WorldLMExperiment
from emgeo_utils.models.registry import entry


def open_experiment(model: str, data: dict | None = None, judge: dict | None = None,
                    questions_file: str | None = None) -> Experiment:
    """The organism (`kind: organism`), a hub / local model (`kind: hub | local`), or a pretrained
    model studied on the world's English text (`kind: world-lm`) of the registry."""
    spec = entry(model)
    kind = spec.get("kind")
    if kind == "organism":
        return OrganismExperiment(spec)
    if kind in ("hub", "local"):
        return RealExperiment(spec, data, judge, questions_file)
    if kind == "world-lm":
        return WorldLMExperiment(spec, judge)
    raise ValueError(f"{model}: unknown kind {kind!r} (organism, hub, local or world-lm)")


def load(model: str, layers: list[int], seed: int = 0, world_kind: str = "persona"):
    """(model, tokenizer, {layer: SAE}) of a registry name: its experiment's run for `seed` and
    `world_kind` (the organism's; a real model has one run)."""
    exp = open_experiment(model)
    return exp.load(exp.runs([seed], [world_kind])[0], layers)
