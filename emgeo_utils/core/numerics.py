"""One numerics mode for every run, so the same parameters give the same numbers on any CPU.

Torch (ATen), MKL, oneDNN, numpy and OpenBLAS each pick their kernels from the processor they run
on, and kernels of different levels round differently: a model trained from scratch turns those
last-bit differences into different verdicts. The *pinned* mode (the default) caps every library
that dispatches on the CPU at one level that every supported x86-64 processor has (AVX2) and fixes
the thread counts of numpy's BLAS; the runner's notebooks fix torch's (`seeding`).

The caps are environment variables that each library reads once, when it loads, so they must be
set before numpy or torch is imported: `emgeo_utils/__init__.py` calls `pin()` first thing, and
every entry point (make, notebooks, `screen`, the benchmarks) imports `emgeo_utils` before them.
`in_force()` reads back what each library actually uses; `require()` fails a run whose libraries
were loaded before the pin (for example numpy imported in a notebook before `emgeo_utils`).

Opt out with `EMGEO_NUMERICS=native` (faster on a machine with AVX-512): the libraries then run
their native kernels, cache keys say so (a native run never reuses a pinned artifact, nor one
built on a CPU of another level), and the report says its numbers are machine-specific.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

MODE_ENV = "EMGEO_NUMERICS"
MODES = ("pinned", "native")
VERSION = 1  # bump when PINNED changes: it enters every cache key

# What each library reads when it loads. MKL's named branches (MKL_CBWR=AVX2) apply on Intel only;
# on AMD MKL makes its own choice (read back in `in_force`). MKL_CBWR=COMPATIBLE would pin it on
# both, at twice the time of every matrix product (measured by `make bench`): see the README.
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",                           # torch's own vectorised kernels
    "MKL_CBWR": "AVX2",                                      # torch's matrix products (Intel CPUs)
    "ONEDNN_MAX_CPU_ISA": "AVX2",                            # oneDNN (torch's mkldnn ops)
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's SIMD dispatch: up to X86_V3 (AVX2)
    "OPENBLAS_CORETYPE": "Haswell",                          # numpy's and scipy's OpenBLAS: AVX2 kernels
    "OPENBLAS_NUM_THREADS": "1",                             # a BLAS reduction's order follows its thread count
}
EXPECTED = {"aten": "AVX2", "numpy_simd": "X86_V3", "openblas": "Haswell", "openblas_threads": 1}


class NumericsError(RuntimeError):
    """The pinned numerics are not in force (a library was loaded before the pin)."""


def mode() -> str:
    value = os.environ.get(MODE_ENV, "pinned").strip().lower() or "pinned"
    if value not in MODES:
        raise NumericsError(f"{MODE_ENV}={value!r}: use 'pinned' (the default) or 'native'")
    return value


def pinnable() -> bool:
    """The caps name x86-64 kernel levels; elsewhere (e.g. aarch64) every run is native."""
    return platform.machine().lower() in ("x86_64", "amd64")


def pin() -> None:
    """Set the caps in this process's environment (inherited by workers and kernels it starts)."""
    if mode() == "pinned" and pinnable():
        os.environ.update(PINNED)


def _mkl_branch() -> str:
    """MKL's conditional-numerical-reproducibility branch in force (read through torch's own MKL)."""
    import ctypes

    import torch

    names = {0: "off", 1: "auto (branch off)", 2: "auto", 3: "COMPATIBLE", 4: "SSE2", 9: "AVX", 10: "AVX2", 12: "AVX512"}
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        return names.get(lib.mkl_serv_cbwr_get(1), "unknown")
    except (OSError, AttributeError):
        return "not readable"


def _numpy_simd() -> str:
    """The highest SIMD group numpy dispatches to in this process."""
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__

    enabled = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    groups = [f for f in enabled if f.startswith("X86_V")] or [f for f in __cpu_baseline__ if f.startswith("X86_V")]
    return max(groups) if groups else (enabled[-1] if enabled else "baseline")


def _openblas() -> tuple[str, int]:
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    arches = sorted({i.get("architecture") or "?" for i in blas})
    return "/".join(arches) or "not loaded", max((i.get("num_threads", 0) for i in blas), default=0)


@functools.lru_cache(maxsize=1)
def in_force() -> dict:
    """What each library uses in this process, read back from the libraries themselves."""
    import numpy  # noqa: F401  (loads OpenBLAS)
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS)
    import torch

    openblas, blas_threads = _openblas()
    return {"mode": mode(), "cpu": _cpu_name(), "native": torch.backends.cpu.get_cpu_capability() if mode() == "native" else
            _native_capability(), "aten": torch.backends.cpu.get_cpu_capability(), "mkl_cbwr": _mkl_branch(),
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"), "numpy_simd": _numpy_simd(),
            "openblas": openblas, "openblas_threads": blas_threads}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _native_capability() -> str:
    """The level torch would choose here unpinned (from the CPU's flags, without reloading torch)."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        return "AVX512"
    return "AVX2" if "avx2" in flags else "DEFAULT"


def problems() -> list[str]:
    """How what is in force differs from the pinned mode (empty when it holds, or when native)."""
    if mode() == "native" or not pinnable():
        return []
    got = in_force()
    return [f"{name} runs {got[name]!r}, the pin asks for {want!r}" for name, want in EXPECTED.items() if got[name] != want]


def require() -> dict:
    """`in_force()`, after checking the pin holds; a clear error saying what to do when it does not."""
    wrong = problems()
    if wrong:
        loaded = [m for m in ("numpy", "torch", "scipy") if m in sys.modules]
        raise NumericsError(
            "the pinned numerics are not in force: " + "; ".join(wrong) + ". The caps are read when a library "
            f"loads, and {', '.join(loaded)} loaded first. Import emgeo_utils before numpy and torch (restart the "
            f"kernel in a notebook), or run with {MODE_ENV}=native to accept machine-specific numbers.")
    return in_force()


def mode_key() -> str:
    """The numerics part of every cache key: one value for the pinned mode on every machine; in
    native mode, the levels in force here (a native artifact is reused only on a CPU of its level)."""
    if mode() == "pinned" and pinnable():
        return f"pinned-{VERSION}"
    got = in_force()
    return "native:" + ",".join(f"{k}={got[k]}" for k in ("aten", "mkl_cbwr", "numpy_simd", "openblas"))


def describe() -> str:
    """One line for the provenance: the mode and the levels read back."""
    got = in_force()
    where = "kernels capped at AVX2" if got["mode"] == "pinned" and pinnable() else "numbers specific to this machine's CPU"
    return (f"{got['mode']} ({where}): ATen {got['aten']} (native {got['native']}), MKL CBWR {got['mkl_cbwr']}, "
            f"oneDNN max ISA {got['onednn_max_isa']}, numpy SIMD {got['numpy_simd']}, OpenBLAS {got['openblas']} "
            f"x{got['openblas_threads']}; CPU {got['cpu']}")
