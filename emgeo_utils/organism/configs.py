"""An organism registry entry as the dataclasses the package uses, and its cached artifacts.

`organism_configs(name)` looks a name up (scripts, tests); an experiment hands its resolved entry to `configs_of`. The resulting
`OrganismConfigs` travels from there (it is a cache input, so every setting it holds keys
the artifacts built from it).
"""

from __future__ import annotations

import dataclasses

from emgeo_utils.core import cache
from emgeo_utils.models.registry import entry
from emgeo_utils.organism.eval_config import EvalConfig
from emgeo_utils.organism.pretraining import ArchConfig, PretrainConfig, pretrain
from emgeo_utils.organism.sae import SAEConfig, train_sae
from emgeo_utils.world.synthetic import WorldConfig
from emgeo_utils.training.lora import FinetuneConfig


@dataclasses.dataclass(frozen=True)
class OrganismConfigs:
    """Everything that defines an organism entry."""

    name: str
    layers: tuple[int, ...]
    world: WorldConfig
    arch: ArchConfig
    pretrain: PretrainConfig
    sae: SAEConfig
    finetune: FinetuneConfig
    eval: EvalConfig

    def world_of(self, kind: str | None = None, unit: int = 0) -> WorldConfig:
        """The world of replication unit `unit` (the pretraining seed): its own world seed (the
        registry's plus `unit`), so every unit redraws the couplings, questions and documents; the
        persona and control worlds of one unit share them. Unit 0 is the registry's world."""
        return dataclasses.replace(self.world, kind=kind or self.world.kind, seed=self.world.seed + unit)


def _build(cls, values: dict, what: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"registry {what}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def organism_configs(name: str = "organism") -> OrganismConfigs:
    """A registry name's organism configs (looked up here; an experiment hands its entry to `configs_of`)."""
    return configs_of(entry(name))


def configs_of(spec: dict) -> OrganismConfigs:
    """The organism configs of a resolved registry entry."""
    name = spec["name"]
    if spec.get("kind") != "organism":
        raise ValueError(f"{name!r} is not an organism entry (kind: {spec.get('kind')})")
    return OrganismConfigs(name, tuple(spec.get("layers", [0])),
                           _build(WorldConfig, spec.get("world", {}), f"{name}.world"),
                           _build(ArchConfig, spec.get("arch", {}), f"{name}.arch"),
                           _build(PretrainConfig, spec.get("pretrain", {}), f"{name}.pretrain"),
                           _build(SAEConfig, spec.get("sae", {}), f"{name}.sae"),
                           _build(FinetuneConfig, spec.get("finetune", {}), f"{name}.finetune"),
                           _build(EvalConfig, spec.get("eval", {}), f"{name}.eval"))


def _lm_inputs(cfg: OrganismConfigs, seed: int, world_kind: str) -> dict:
    return dict(world=cfg.world_of(world_kind, seed), arch=cfg.arch, train=cfg.pretrain, seed=seed)


def organism_lm(cfg: OrganismConfigs, seed: int = 0, world_kind: str = "persona") -> cache.Artifact:
    """The trained organism (cached): pretraining seed `seed` in the persona or control world of
    replication unit `seed` (`OrganismConfigs.world_of`)."""
    return pretrain(**_lm_inputs(cfg, seed, world_kind))


def _sae_inputs(cfg: OrganismConfigs, seed: int, world_kind: str, layer: int, sae_seed: int | None,
                expansion: int | None) -> dict:
    config = cfg.sae if expansion is None else dataclasses.replace(cfg.sae, expansion=expansion)
    return dict(lm=organism_lm(cfg, seed, world_kind), world=cfg.world_of(world_kind, seed), layer=layer,
                config=config, seed=seed if sae_seed is None else sae_seed)


def organism_sae(cfg: OrganismConfigs, seed: int = 0, world_kind: str = "persona", layer: int = 0,
                 sae_seed: int | None = None, expansion: int | None = None) -> cache.Artifact:
    """The organism's SAE at `layer` (cached; trains the organism first if needed). `sae_seed` and
    `expansion` give other dictionaries of the same organism (default: the pretraining seed and
    the registry's width)."""
    return train_sae(**_sae_inputs(cfg, seed, world_kind, layer, sae_seed, expansion))


def _organism_lm_cached(cfg: OrganismConfigs, seed: int = 0, world_kind: str = "persona") -> bool:
    return pretrain.is_cached(**_lm_inputs(cfg, seed, world_kind))


def _organism_sae_cached(cfg: OrganismConfigs, seed: int = 0, world_kind: str = "persona", layer: int = 0,
                         sae_seed: int | None = None, expansion: int | None = None) -> bool:
    return _organism_lm_cached(cfg, seed, world_kind) and train_sae.is_cached(
        **_sae_inputs(cfg, seed, world_kind, layer, sae_seed, expansion))


organism_lm.is_cached = _organism_lm_cached  # lets jobs.run_all skip finished work without a worker
organism_sae.is_cached = _organism_sae_cached
