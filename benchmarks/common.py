"""What every benchmark shares: seeding and threads, side-by-side timing, result rows, and the
two GPT-2 shapes measured (the organism's, and a bigger one where the forward pass dominates).

Absolute times on a shared 2-core machine are noise; ratios of two paths timed in the same
rounds, alternating which runs first, are not. The clock is the CPU time of this process (all
its threads): single-threaded work on a shared machine loses wall time to other jobs but not
CPU time. Each path keeps its fastest round, as `timeit` recommends; wall time is kept too.
"""

from __future__ import annotations

import dataclasses
import operator
import time
from collections.abc import Callable

import numpy as np
import torch

from emgeo_utils.organism import pretraining as organism
from emgeo_utils.core import seeding
from emgeo_utils.experiment.organism_experiment import organism_corpus
from emgeo_utils.world.synthetic import World, WorldConfig

# The organism (registry entry "organism": d_model 64, 2 layers, ~1.5k words), and bigger random
# GPT-2s with the same tokenizer, so the model rather than Python does most of the work.
SHAPES = {"organism d64x2": organism.ArchConfig(),
          "gpt2 d512x4": organism.ArchConfig(d_model=512, n_layers=4, n_heads=8),
          "gpt2 d512x12": organism.ArchConfig(d_model=512, n_layers=12, n_heads=8)}


@dataclasses.dataclass
class Row:
    """One line of the final table. `goal` is (comparison, threshold) or None (reported only)."""

    item: str
    measure: str
    value: float | None
    unit: str  # "x" (a ratio), "s", "GiB"
    goal: tuple[str, float] | None = None
    note: str = ""
    missing: str = "n/a"  # what the table says when there is no value (the note says why)

    @property
    def met(self) -> str:
        if self.goal is None:
            return "-"
        if self.value is None:
            return "no data"
        return "met" if {"<=": operator.le, ">=": operator.ge}[self.goal[0]](self.value, self.goal[1]) else "not met"

    @property
    def goal_text(self) -> str:
        return "-" if self.goal is None else f"{self.goal[0]} {self.goal[1]:g} {self.unit}"

    @property
    def value_text(self) -> str:
        if self.value is None:
            return self.missing
        return f"{self.value:.3f} {self.unit}" if self.unit == "GiB" else f"{self.value:.{2 if self.unit == 'x' else 1}f} {self.unit}"


def setup(seed: int, threads: int) -> None:
    """Seed python/numpy/torch and fix torch's thread count (every benchmark calls this first)."""
    seeding.seed_everything(seed, threads)


def side_by_side(paths: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best CPU time and best wall time (s) of each path over `rounds` rounds; the order
    rotates every round so no path always runs first."""
    names = list(paths)
    cpu, wall = {n: float("inf") for n in names}, {n: float("inf") for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            paths[n]()
            cpu[n] = min(cpu[n], time.process_time() - start_cpu)
            wall[n] = min(wall[n], time.perf_counter() - start_wall)
    return cpu, wall


def world() -> World:
    return World(WorldConfig())


def tokenizer(w: World):
    """The organism's word-level tokenizer and chat template (built in ~0.1 s)."""
    return organism.build_tokenizer(w)


def gpt2(tok, arch: organism.ArchConfig, seed: int = 0):
    """A random GPT-2 of the organism's code path (`organism.make_model`), in eval mode."""
    torch.manual_seed(seed)
    return organism.make_model(tok, arch).eval()


def chat_samples(w: World, n: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """`n` of the organism's feature-corpus chats (all domains and sets) and their probes."""
    samples, probes = organism_corpus(w, n_per_set=-(-n // 50), seed=seed)  # 10 domains x 5 sets
    pick = np.random.default_rng(seed).choice(len(samples), n, replace=False)
    return [samples[i] for i in pick], [probes[i] for i in pick]
