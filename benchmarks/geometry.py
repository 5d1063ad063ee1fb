"""Geometry at real-model size: `filtering.feature_proximity` and `geometry.max_cosine_to_set`
against ONE matrix multiply of the same size.

The dictionary is a random 131,072 x 4,608 float32 decoder (Gemma-2-27B's Gemma Scope width,
2.4 GB), queried with 100 and 1,000 target features. The limit is `unit_decoder @ unit_targets.T`
in one call with the decoder's normalisation precomputed and *excluded*: every cosine has to be
formed, so that product is the irreducible work; re-normalising the decoder on every call is
overhead the functions choose to pay (its time is printed beside). Goal: within 2x of it.

Memory: peak extra resident memory during a call (above the decoder itself) must stay <= 1 GiB.
Measured as the kernel's peak RSS (VmHWM, reset through /proc/self/clear_refs) minus the RSS
before the call, after handing freed heap back to the OS (`malloc_trim`; otherwise temporaries
reuse pages already resident and the peak reads as zero), beside the theoretical peak of the
temporaries (one row block alive at a time).
One thread on both sides, although a second would nearly halve the matmul: on this shared
2-core machine a second thread competes with other jobs, and ratios of CPU time stay honest
only for single-threaded work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from pathlib import Path

import psutil
import torch

from emgeo_utils.filtering import ranking as filtering
from emgeo_utils.geometry import similarity as geometry

from . import common

D_SAE, D_IN = 131_072, 4_608
TARGETS = {100: 3, 1000: 2}  # set size -> rounds
THREADS = 1
GIB = 2**30


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def release_free_heap() -> None:
    """Return freed malloc memory to the OS, so that new temporaries show up in RSS (glibc only)."""
    name = ctypes.util.find_library("c")
    if name:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
        if trim is not None:
            trim(0)


def peak_extra_bytes(fn) -> tuple[int, str]:
    """Peak resident memory added while `fn()` runs, and how it was measured."""
    release_free_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the kernel's peak-RSS mark
        before = _status_kb("VmRSS")
        fn()
        return (_status_kb("VmHWM") - before) * 1024, "kernel peak RSS (VmHWM)"
    except OSError:  # no /proc: sample RSS from a thread (may miss short peaks)
        proc, peak, done = psutil.Process(), [0], threading.Event()
        before = proc.memory_info().rss

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        fn()
        done.set()
        sampler.join()
        return peak[0] - before, "sampled RSS (psutil, 1 ms)"


def theoretical_extra_bytes(n_targets: int, block: int = geometry.DEFAULT_BLOCK) -> int:
    """Float32 temporaries if one block's are alive at a time: unit targets, one block's cosines
    with the targets and its row norms, the per-feature output (a float32 block of the decoder
    is a view, not a copy)."""
    return 4 * (n_targets * D_IN + block * n_targets + block + D_SAE)


@torch.no_grad()
def run() -> list[common.Row]:
    common.setup(seed=0, threads=THREADS)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    w_dec = torch.randn(D_SAE, D_IN, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)  # in place: the precomputed normalisation, no second copy
    print(f"  decoder {D_SAE:,} x {D_IN:,} float32 ({w_dec.numel() * 4 / GIB:.2f} GiB) built in "
          f"{time.perf_counter() - start:.1f} s; {THREADS} thread on both sides (a second would compete with other jobs)")
    functions = {"feature_proximity": lambda t: filtering.feature_proximity(w_dec, t),
                 "max_cosine_to_set": lambda t: geometry.max_cosine_to_set(w_dec, t)}
    rows = []
    largest = torch.randperm(D_SAE, generator=gen)[:max(TARGETS)]
    for name, fn in functions.items():  # memory first, before timing leaves freed heap behind
        extra, how = peak_extra_bytes(lambda: fn(largest))
        theory = theoretical_extra_bytes(len(largest))
        print(f"  {name}, {len(largest)} targets: peak extra memory {extra / GIB:.3f} GiB ({how}); "
              f"theoretical {theory / GIB:.3f} GiB"
              + (" (above it: more than one block's temporaries alive at once)" if extra > 1.25 * theory else ""))
        rows.append(common.Row("2 geometry", f"{name} peak extra memory [{len(largest)} targets]", extra / GIB,
                               "GiB", ("<=", 1.0), note=f"theory {theory / GIB:.3f} GiB"))
    rows.append(extraction_memory(w_dec))
    for n_targets, rounds in TARGETS.items():
        targets = largest[:n_targets]
        unit_targets = w_dec[targets]

        def renormalise():  # the decoder normalisation each call repeats (printed, not a table row)
            for s in range(0, D_SAE, geometry.DEFAULT_BLOCK):
                geometry.unit_rows(w_dec[s:s + geometry.DEFAULT_BLOCK])

        paths = {"one matmul": lambda: w_dec @ unit_targets.T, "normalisation pass": renormalise}
        paths |= {name: (lambda fn=fn: fn(targets)) for name, fn in functions.items()}
        best, wall = common.side_by_side(paths, rounds)
        print(f"  {n_targets} targets, CPU (wall) s: " + ", ".join(f"{k} {v:.2f} ({wall[k]:.2f})" for k, v in best.items()))
        for name in functions:
            rows.append(common.Row("2 geometry", f"{name} / one matmul time [{n_targets} targets]",
                                   best[name] / best["one matmul"], "x", ("<=", 2.0),
                                   note=f"{best[name]:.2f} s vs {best['one matmul']:.2f} s"))
    return rows


class _WideSAE:
    """The encoder of a Gemma-2-27B-width SAE for `pool_sae`: ReLU(x W_enc + b), W_enc a view of the
    benchmark's decoder (the SAE's own weights are resident anyway; only temporaries count)."""

    def __init__(self, w_dec: torch.Tensor):
        self.W_dec, self.W_enc, self.b_enc = w_dec, w_dec.T, torch.zeros(w_dec.shape[0])
        self.cfg = type("cfg", (), {"d_sae": w_dec.shape[0]})

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc + self.b_enc)


@torch.no_grad()
def extraction_memory(w_dec: torch.Tensor, batch: int = 8, width: int = 256, answer: int = 128) -> common.Row:
    """Peak extra memory of feature extraction's SAE step (`activations.pool_sae`, every readout)
    on one batch of `batch` x `width` tokens at 131k features, beside what encoding the whole
    `[batch, width, d_sae]` tensor (the code before it) would allocate for its output alone."""
    from emgeo_utils.features import activations

    gen = torch.Generator().manual_seed(1)
    resid = torch.randn(batch, width, D_IN, generator=gen)
    answer_mask = torch.zeros(batch, width, dtype=torch.bool)
    answer_mask[:, width - answer - 20:width - 20] = True
    last = torch.zeros_like(answer_mask)
    last[:, -1] = True
    masks = {"assistant_mean": answer_mask, "assistant_max": answer_mask, "all_mean": torch.ones_like(answer_mask),
             "next_turn": last}
    chunk = activations.ENCODE_BYTES // (4 * D_SAE)
    sae = _WideSAE(w_dec)
    dense, _ = peak_extra_bytes(lambda: {r: activations.pool(sae.encode(resid), m, r) for r, m in masks.items()})
    extra, how = peak_extra_bytes(lambda: activations.pool_sae(sae, resid, masks, chunk))
    print(f"  feature extraction at 131k features, {batch} x {width} tokens, 4 readouts: peak extra memory "
          f"{extra / GIB:.3f} GiB ({how}); encoding the whole [batch, width, d_sae] first (the code before): "
          f"{dense / GIB:.2f} GiB")
    return common.Row("2 geometry", f"extraction peak extra memory [131k x {D_IN}, {batch}x{width} tokens]", extra / GIB,
                      "GiB", ("<=", 1.0), note=f"dense encode then pool {dense / GIB:.2f} GiB; chunk {chunk} positions")
