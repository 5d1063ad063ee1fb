"""The units (independent worlds) a claim would need for 80% power at its smallest effect of interest.

The smallest effects are declared in `docs/smallest_effects.yaml`; a claim's between-unit spread comes from its
snapshot row (the per-unit values its note lists, else backed out of its t-interval over units), and N is sized on
the one-sided 80% upper confidence bound of that spread (few units measure a spread poorly), from the noncentral t
of the claims' world-level test: the one-sided t over units at the claim's alpha. `scripts/power_table.py` prints
the whole table and checks each N by simulating that test; the results page shows N beside each inconclusive row.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd
import scipy.stats as sps
import yaml

from emgeo_utils.core import paths, stats

POWER, UPPER_LEVEL, MAX_N = 0.8, 0.8, 200


@functools.lru_cache(maxsize=1)
def smallest_effects() -> dict:
    """docs/smallest_effects.yaml: {notebook: {claim: {smallest, measure}}}."""
    return yaml.safe_load((paths.PROJECT_ROOT / "docs" / "smallest_effects.yaml").read_text())["claims"]


def per_unit(note: str) -> np.ndarray | None:
    """The values a claim's note lists as `per unit [...]` (not `raw per unit`: those are not what is tested)."""
    found = re.search(r"(?<!raw )per unit \[([^\]]*)\]", str(note))
    return np.array([float(v) for v in found.group(1).split(",")]) if found else None


def spread(row, correlation: bool) -> tuple[float, int, str]:
    """(sd of the tested statistic over units, number of units, where it came from)."""
    values = per_unit(row.note)
    if values is not None:
        x = stats.fisher_z(values) if correlation else values
        return float(np.std(x, ddof=1)), len(x), "per-unit values" + (" (Fisher z)" if correlation else "")
    n = int(str(row.units).split("/")[1])
    half = (row.ci_high - row.ci_low) / 2
    return float(half / sps.t.ppf(0.975, n - 1) * np.sqrt(n)), n, "its 95% t-interval"


def upper_sd(sd: float, n: int) -> float:
    return sd * np.sqrt((n - 1) / sps.chi2.ppf(1 - UPPER_LEVEL, n - 1))


def power(n: int, effect: float, sd: float, alpha: float) -> float:
    crit = sps.t.ppf(1 - alpha, n - 1)
    return float(sps.nct.sf(crit, n - 1, effect / sd * np.sqrt(n)))


def units_needed(effect: float, sd: float, alpha: float) -> int | None:
    return next((n for n in range(3, MAX_N + 1) if power(n, effect, sd, alpha) >= POWER), None)


def effect_of(sesoi: dict) -> tuple[float, bool]:
    """(the smallest effect on the scale the claim is tested on, whether it is a correlation)."""
    correlation = sesoi["measure"] == "correlation"
    return (float(stats.fisher_z(sesoi["smallest"])) if correlation else float(sesoi["smallest"])), correlation


def needed_text(row: pd.Series, alpha: float) -> str:
    """'N units' for 80% power at the row's smallest effect (on the spread's upper bound), or '' without one."""
    sesoi = smallest_effects().get(row.notebook, {}).get(row.claim)
    if sesoi is None or pd.isna(row.units) or pd.isna(row.ci_low):
        return ""
    effect, correlation = effect_of(sesoi)
    sd, n, _ = spread(row, correlation)
    need = units_needed(effect, upper_sd(sd, n), alpha)
    return f">{MAX_N}" if need is None else str(need)
