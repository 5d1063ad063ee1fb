"""Notebook 05's headline table: each filter's EM at the main fraction against the unfiltered and
the random fine-tunes (the paper's relative reduction), its precision and the task it keeps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emgeo_utils.core import stats


def headline_table(runs: pd.DataFrame, regime: str, filters: list[str], fraction: float) -> pd.DataFrame:
    """One row per filter: mean EM, relative change vs unfiltered (mean and t-CI over seeds), vs random."""
    part = runs[runs.regime == regime]
    base = part[part["filter"] == "none"].set_index("ft_seed").ood_misaligned
    rand = part[(part["filter"] == "random") & (part.fraction == fraction)].set_index("ft_seed").ood_misaligned
    rows = []
    for f in filters:
        sub = part[(part["filter"] == f) & (part.fraction == fraction)].set_index("ft_seed")
        m, lo, hi = stats.mean_ci((sub.ood_misaligned - base) / base)
        rows.append({"filter": f, "EM": sub.ood_misaligned.mean(), "vs unfiltered": m, "ci_low": lo, "ci_high": hi,
                     "vs random": (sub.ood_misaligned.mean() - rand.mean()) / rand.mean(),
                     "precision": sub.precision.mean(),
                     "task kept (in-domain edgy)": sub.in_domain_edgy.mean() if "in_domain_edgy" in sub else np.nan})
    return pd.DataFrame(rows).set_index("filter")
