"""Seeds and thread counts: the same parameters give the same numbers.

Floating-point reductions can depend on how many threads split them, so every cached
computation runs with an explicit thread count (one, so two jobs can share two cores
and still give the numbers they give alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

JOB_THREADS = 1  # every cached job runs single-threaded, alone or side by side


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed python, numpy and torch; set torch's thread count when given."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads is not None:
        set_threads(threads)


def set_threads(threads: int) -> None:
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for child processes


@contextlib.contextmanager
def job_context(seed: int) -> Iterator[None]:
    """Run a block as a cached job: fixed thread count, seeded, previous state restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(JOB_THREADS)
    with torch.random.fork_rng(devices=[]):
        state = random.getstate(), np.random.get_state()
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
            torch.set_num_threads(previous)


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any printable parts (e.g. ("finetune", base_seed, "health"))."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g
