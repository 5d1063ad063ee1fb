"""Size and power of the world-level claim-2 test over 3 units (`geometry.components.across_seeds`), beside
the rule it replaced (the larger of the t over units and every unit's placebo p) and the t over the raw
values alone: the tables the README quotes.

    .venv/bin/python scripts/claim2_power.py     # about 4 minutes on one core (measured 3.5)

Size: 500 disjoint worlds of 3 units per null of `tests/test_selection_null.py` (the same pool its size
test reads). Power: 200 worlds per weak planted effect (2 features). Every number is the share of worlds
whose p is at most 0.05.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the simulated worlds live with the tests
from test_selection_null import (FAR, HARMFUL, NEAR, NULLS, SIZE_RUNS, UNITS, WORLD_RUNS, corpus,  # noqa: E402
                                 dictionary, null_world, world_level_p)

from emgeo_utils.core.stats import seed_level_test  # noqa: E402
from emgeo_utils.geometry.components import Decomposition, decompose  # noqa: E402

COMPONENTS = ("overlap", "distinct", "combined")


def old_rule(frame: pd.DataFrame, component: str) -> np.ndarray:
    """The rule before: max(t over units, every unit's placebo-feature p), per disjoint triple."""
    out = []
    for i in range(0, len(frame) - UNITS + 1, UNITS):
        part = frame.iloc[i:i + UNITS]
        p_t, p_f = seed_level_test(part[component].to_numpy())[1], part[f"p_features_{component}"].to_numpy()
        out.append(max(p_t, *p_f) if np.isfinite(p_t) and np.isfinite(p_f).all() else np.nan)
    return np.array(out)


def rates(frame: pd.DataFrame, component: str) -> dict:
    new, raw_t = world_level_p(frame, component)
    return {"world-level test": np.mean(new <= 0.05), "old rule": np.mean(old_rule(frame, component) <= 0.05),
            "t over raw values": np.mean(raw_t <= 0.05)}


def main() -> None:
    torch.set_num_threads(1)
    size = []
    for kind in NULLS:
        frame = pd.DataFrame([decompose(Decomposition(*null_world(kind, i), k=10), n_perm=99 if i < SIZE_RUNS else 49,
                                        n_boot=0, seed=i) for i in range(WORLD_RUNS * UNITS)])
        size += [{"null": kind, "component": c} | rates(frame, c) for c in COMPONENTS]
    print("Size: share of 500 null worlds rejected at 0.05\n" + pd.DataFrame(size).round(3).to_string(index=False))
    power = []
    for name, planted in (("neighbours NEAR[:2]", NEAR[:2]), ("shared HARMFUL[:2]", HARMFUL[:2])):
        rows = []
        for i in range(200 * UNITS):
            acts, g = corpus(3000 + i, inducing_boost=planted, comparison_boost=FAR[:2])
            rows.append(decompose(Decomposition(acts, dictionary(seed=500 + i), g, k=10), n_perm=99, n_boot=0, seed=i))
        frame = pd.DataFrame(rows)
        power += [{"planted": name, "component": c} | rates(frame, c) for c in COMPONENTS]
    table = pd.DataFrame(power)
    table["world-level / t"] = table["world-level test"] / table["t over raw values"].clip(lower=1e-9)
    print("\nPower: share of 200 planted worlds rejected at 0.05\n" + table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
