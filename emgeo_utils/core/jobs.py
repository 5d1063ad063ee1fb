"""Run independent cached jobs side by side, one thread each.

Every job sets its own seed and runs single-threaded (see `seeding.JOB_THREADS`), so its
numbers are the same whether it runs alone, inline, or beside another job.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm.auto import tqdm

from emgeo_utils.core import cache, seeding


def _init_worker() -> None:
    seeding.set_threads(seeding.JOB_THREADS)


def _call(fn: Callable, kwargs: dict):
    before = Counter(cache.stats)
    value = fn(**kwargs)
    return value, Counter(cache.stats) - before


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def run_all(fn: Callable, jobs: Sequence[dict], workers: int | None = None, desc: str = "jobs") -> list:
    """`[fn(**kw) for kw in jobs]`, with up to `workers` processes; results in input order.

    `fn` is a cached function (see `cache`); jobs already in the cache are read here without
    starting any process.
    """
    workers = default_workers() if workers is None else workers
    results: list = [None] * len(jobs)
    todo = [i for i, kw in enumerate(jobs) if not getattr(fn, "is_cached", lambda **_: False)(**kw)]
    for i in set(range(len(jobs))) - set(todo):
        results[i] = fn(**jobs[i])
    if not todo:
        return results
    bar = tqdm(total=len(todo), desc=desc, leave=False)
    if workers <= 1 or len(todo) == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(seeding.JOB_THREADS)
        try:
            for i in todo:
                results[i] = fn(**jobs[i])
                bar.update()
        finally:
            torch.set_num_threads(previous)
    else:
        ctx = multiprocessing.get_context("spawn")  # fork after torch starts threads can hang
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(_call, fn, jobs[i]): i for i in todo}
            for future in as_completed(futures):
                results[futures[future]], built = future.result()
                cache.stats.update(built)
                bar.update()
    bar.close()
    return results
