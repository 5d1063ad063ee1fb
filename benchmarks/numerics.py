"""The pinned numerics' cost: the same work in a pinned and a native process, side by side.

The mode is fixed when a process loads numpy and torch, so each path runs in its own child
process (alternating which goes first); the child times only the work, in CPU seconds, one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from emgeo_utils.core import numerics

from .common import Row

ROOT = Path(__file__).resolve().parents[1]
WORK = r'''
import emgeo_utils, json, sys, time
import numpy as np, torch
from emgeo_utils.core import numerics, stats
torch.set_num_threads(1)
what = sys.argv[1]
if what == "organism":
    sys.path.insert(0, "scripts")
    from numerics_fingerprint import trainings
    work = lambda: trainings(steps=12)
elif what == "smollm2":  # one SmolLM2-135M MLP block (576 -> 1536 -> 576) on 1024 tokens, forward and backward
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 576, generator=g)
    up, down = (torch.randn(a, b, generator=g, requires_grad=True) for a, b in ((576, 1536), (1536, 576)))
    def work():
        for _ in range(10):
            (torch.nn.functional.silu(x @ up) @ down).square().mean().backward()
else:  # the notebooks' analysis: bootstrap and permutation nulls in numpy
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(400), rng.standard_normal(400)
    work = lambda: [stats.spearman_ci(a, b, n_boot=2000, seed=s) for s in range(3)]
work()  # warm up
start = time.process_time(); work(); print(json.dumps({"seconds": time.process_time() - start, "aten": numerics.in_force()["aten"]}))
'''
ITEMS = {"organism": "organism pretraining, LoRA and SAE steps (d64)", "smollm2": "SmolLM2-135M MLP block, fwd + bwd",
         "analysis": "bootstrap + permutation nulls (numpy)"}


def timed(item: str, native: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not native or k not in numerics.PINNED}  # the caps, named once
    env[numerics.MODE_ENV] = "native" if native else "pinned"
    done = subprocess.run([sys.executable, "-c", WORK, item], cwd=ROOT, env=env | {"TQDM_DISABLE": "1"},
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def run(rounds: int = 3) -> list[Row]:
    rows = []
    for item, label in ITEMS.items():
        best = {False: float("inf"), True: float("inf")}
        for r in range(rounds):
            for native in ((False, True) if r % 2 == 0 else (True, False)):
                best[native] = min(best[native], timed(item, native))
        rows.append(Row("numerics pin", f"{label}: pinned / native CPU time (native {best[True]:.2f} s)",
                        best[False] / best[True], "x", ("<=", 1.25)))
    return rows
