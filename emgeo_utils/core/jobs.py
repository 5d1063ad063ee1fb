"""Run independent cached jobs side by side, one thread each.

Every job sets its own seed and runs single-threaded (see `seeding.JOB_THREADS`), so its
numbers are the same whether it runs alone, inline, or beside another job.

Engines (`EMGEO_JOBS_ENGINE`):
- `local` (default): worker processes on this machine. With GPUs, worker k sees only GPU
  k mod n (`CUDA_VISIBLE_DEVICES`), so `workers: <number of GPUs>` runs one model copy per GPU.
- `submitit`: each job is submitted through submitit (`pip install -e '.[cluster]'`): to SLURM
  where it is available, else as local processes (`EMGEO_SUBMITIT_CLUSTER=local|slurm|debug`;
  executor parameters as JSON in `EMGEO_SUBMITIT_PARAMETERS`, e.g. '{"gpus_per_node": 1,
  "timeout_min": 600}'). Every node must see the same cache folder; see `cache` for which file
  systems its locks are safe on.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from emgeo_utils.core import cache, notices, paths, seeding


ENGINE_ENV = "EMGEO_JOBS_ENGINE"


def gpu_assignment(workers: int, visible: str | None, n_gpus: int) -> list[str | None]:
    """The `CUDA_VISIBLE_DEVICES` each of `workers` workers gets: one GPU each, round robin over
    the GPUs this process sees (`visible`, as the variable lists them, or 0..n-1)."""
    if n_gpus == 0:
        return [None] * workers
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(n_gpus)]
    return [ids[k % len(ids)] for k in range(workers)]


def _init_worker(gpus) -> None:
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()  # before this process touches CUDA
    seeding.set_threads(seeding.JOB_THREADS)
    notices.quiet_library_notices()


def _call(fn: Callable, kwargs: dict):
    before = Counter(cache.stats)
    value = fn(**kwargs)
    return value, Counter(cache.stats) - before


class Progress:
    """A line per finished job: `desc: k/n done, 1m 20s elapsed, about 2m left` (readable in a
    log where several workers finish out of order, and in an executed notebook). Long lists print
    the first and last job and about every tenth in between (or every 30 s), not 70 lines."""

    def __init__(self, desc: str, total: int):
        self.desc, self.total, self.done, self.start = desc, total, 0, time.perf_counter()
        self.last_shown, self.last_time = 0, self.start

    def update(self) -> None:
        self.done += 1
        now = time.perf_counter()
        elapsed = now - self.start
        if not (self.done in (1, self.total) or self.done - self.last_shown >= max(1, self.total // 10)
                or now - self.last_time >= 30):
            return
        self.last_shown, self.last_time = self.done, now
        left = elapsed / self.done * (self.total - self.done)
        print(f"{self.desc}: {self.done}/{self.total} done, {_duration(elapsed)} elapsed"
              + (f", about {_duration(left)} left" if self.done < self.total else ""), flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m {int(seconds % 60):02d}s"


@contextlib.contextmanager
def _environ(**values: str):
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def run_all(fn: Callable, jobs: Sequence[dict], workers: int | None = None, desc: str = "jobs",
            engine: str | None = None, beside: Sequence[tuple[Callable, dict]] = ()) -> list:
    """`[fn(**kw) for kw in jobs]`, with up to `workers` processes; results in input order.

    `fn` is a cached function (see `cache`); jobs already in the cache are read here without
    starting any process. `beside`: other cached jobs `(function, kwargs)`, started first in the
    same pool and not returned: an artifact a later notebook reads, built while a worker would
    otherwise wait (each job is single-threaded and seeded, so where it runs changes no number).
    """
    workers = default_workers() if workers is None else workers
    engine = engine or os.environ.get(ENGINE_ENV, "local")
    if engine not in ("local", "submitit"):
        raise ValueError(f"{ENGINE_ENV}={engine!r}: use local or submitit")
    results: list = [None] * len(jobs)
    todo = [i for i, kw in enumerate(jobs) if not getattr(fn, "is_cached", lambda **_: False)(**kw)]
    for i in set(range(len(jobs))) - set(todo):
        results[i] = fn(**jobs[i])
    extra = [(f, kw) for f, kw in beside if not getattr(f, "is_cached", lambda **_: False)(**kw)]
    if engine == "submitit":
        for f, kw in extra:
            run_all(f, [kw], workers, desc=f"{desc} (beside)", engine=engine)
        extra = []
    calls = [(f, kw, None) for f, kw in extra] + [(fn, jobs[i], i) for i in todo]
    if not calls:
        return results
    bar = Progress(desc + (f" (and {len(extra)} job(s) for a later notebook)" if extra else ""), len(calls))
    if engine == "submitit":
        for i, (value, built) in _submitit(fn, [jobs[i] for i in todo], todo):
            results[i] = value
            cache.stats.update(built)
            bar.update()
    elif workers <= 1 or len(calls) == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(seeding.JOB_THREADS)
        try:
            for f, kw, i in calls:
                value = f(**kw)
                if i is not None:
                    results[i] = value
                bar.update()
        finally:
            torch.set_num_threads(previous)
    else:
        ctx = multiprocessing.get_context("spawn")  # fork after torch starts threads can hang
        n = min(workers, len(calls))
        assignment = gpu_assignment(n, os.environ.get("CUDA_VISIBLE_DEVICES"),
                                    torch.cuda.device_count() if torch.cuda.is_available() else 0)
        gpus = None
        if assignment[0] is not None:
            gpus = ctx.Queue()
            for g in assignment:
                gpus.put(g)
        # workers start at the first submit and inherit this: their bars would interleave in one log line
        with _environ(TQDM_DISABLE="1"), ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                                                              initargs=(gpus,)) as pool:
            futures = {pool.submit(_call, f, kw): i for f, kw, i in calls}
            for future in as_completed(futures):
                value, built = future.result()
                if futures[future] is not None:
                    results[futures[future]] = value
                cache.stats.update(built)
                bar.update()
    return results


def _submitit(fn: Callable, kwargs: list[dict], index: list[int]):
    """(index, (value, cache stats)) of each job as it finishes, run through submitit."""
    try:
        import submitit
        import submitit.helpers
    except ImportError as err:
        raise RuntimeError(f"{ENGINE_ENV}=submitit needs submitit: pip install -e '.[cluster]'") from err
    executor = submitit.AutoExecutor(folder=paths.build_dir() / "submitit" / "%j",
                                     cluster=os.environ.get("EMGEO_SUBMITIT_CLUSTER"))
    executor.update_parameters(**json.loads(os.environ.get("EMGEO_SUBMITIT_PARAMETERS", "{}")))
    with executor.batch():
        submitted = [executor.submit(_call, fn, kw) for kw in kwargs]
    where = {job.job_id: i for job, i in zip(submitted, index)}
    for job in submitit.helpers.as_completed(submitted, poll_frequency=1.0):
        yield where[job.job_id], job.result()  # raises the job's own error, with its traceback
