"""The numerics mode: pinned by default, read back from the libraries, in every cache key, and a
fingerprint of a short training that must repeat byte for byte (and must not without the pin)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emgeo_utils.core import cache, numerics

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = ROOT / "tests" / "numerics_fingerprint.json"
x86 = pytest.mark.skipif(not numerics.pinnable(), reason="the pin names x86-64 kernel levels")


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in numerics.PINNED and k != numerics.MODE_ENV} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=ROOT, timeout=300)


def test_mode_is_pinned_by_default_and_rejects_a_typo(monkeypatch):
    monkeypatch.delenv(numerics.MODE_ENV, raising=False)
    assert numerics.mode() == "pinned"
    monkeypatch.setenv(numerics.MODE_ENV, "nativ")
    with pytest.raises(numerics.NumericsError, match="use 'pinned'"):
        numerics.mode()


@x86
def test_this_process_runs_the_pinned_kernels():
    """conftest imports emgeo_utils before numpy and torch, as every entry point does."""
    assert numerics.problems() == []
    got = numerics.require()
    assert (got["aten"], got["numpy_simd"], got["openblas"], got["openblas_threads"]) == ("AVX2", "X86_V3", "Haswell", 1)


@x86
def test_a_library_loaded_before_the_pin_is_caught_and_named():
    done = python("import numpy, emgeo_utils\nfrom emgeo_utils.core import numerics\nnumerics.require()")
    assert done.returncode != 0
    assert "pinned numerics are not in force" in done.stderr and "Import emgeo_utils before numpy" in done.stderr


@x86
def test_native_mode_runs_unpinned_and_keys_apart():
    code = ("import emgeo_utils, json\nfrom emgeo_utils.core import cache, numerics\n"
            "print(json.dumps([numerics.in_force()['aten'], cache.key_for('k', json.dumps, {'a': 1})]))")
    pinned, native = (json.loads(python(code, **env).stdout) for env in ({}, {numerics.MODE_ENV: "native"}))
    assert pinned[0] == "AVX2" and native[0] == numerics._native_capability()
    assert pinned[1] != native[1], "a native run must never reuse a pinned artifact"
    assert pinned[1] == cache.key_for("k", json.dumps, {"a": 1})  # this process is pinned too


def test_keys_hold_the_mode_and_the_library_versions():
    inputs = cache.numerics_inputs()
    assert inputs["mode"] == numerics.mode_key()
    assert set(inputs["versions"]) == {"torch", "transformers", "sae-lens", "peft", "numpy", "scipy"}


def fingerprint(**env: str) -> dict:
    done = python(f"import runpy; runpy.run_path({str(ROOT / 'scripts' / 'numerics_fingerprint.py')!r}, run_name='__main__')",
                  TQDM_DISABLE="1", **env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@x86
@pytest.mark.slow
def test_fingerprint_repeats_the_committed_hashes():
    """A short organism pretraining, one LoRA step and one SAE step, hashed. Every operation that does not
    go through MKL gives the committed bytes on any CPU (measured native and emulated: README); what goes
    through MKL, and so the trainings, gives the bytes committed for this machine's MKL canary."""
    committed = json.loads(FINGERPRINT.read_text())
    fresh = fingerprint()
    assert {k: fresh["operations"][k] for k in committed["guaranteed"]} == committed["guaranteed"]
    same_mkl = committed["by_mkl_canary"].get(fresh["mkl_canary"])
    if same_mkl is None:
        pytest.skip(f"no fingerprint committed for MKL canary {fresh['mkl_canary']} ({fresh['cpu']}): its MKL computes "
                    "other bits; add it with `numerics_fingerprint.py --merge`")
    assert {k: fresh["operations"][k] for k in same_mkl["mkl_operations"]} == same_mkl["mkl_operations"]
    assert fresh["training"] == same_mkl["training"]


@x86
@pytest.mark.slow
def test_fingerprint_without_the_pin_differs_on_a_cpu_of_another_level():
    """The same check without the pin fails where the CPU's native level is not the pinned one: the
    fingerprint test can fail, and the pin is what makes it pass."""
    if numerics._native_capability() == "AVX2":
        pytest.skip("this CPU's native level is the pinned one: unpinned and pinned runs agree here")
    committed = json.loads(FINGERPRINT.read_text())
    fresh = fingerprint(**{numerics.MODE_ENV: "native"})
    moved = [k for k in committed["guaranteed"] if fresh["operations"][k] != committed["guaranteed"][k]]
    assert moved, "unpinned, numpy's and ATen's kernels follow the CPU: some operation must differ"
    same_mkl = committed["by_mkl_canary"].get(fresh["mkl_canary"])
    if same_mkl is not None:
        assert fresh["training"]["pretraining"] != same_mkl["training"]["pretraining"]
