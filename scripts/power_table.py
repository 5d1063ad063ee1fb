"""How many independent worlds (units) the organism needs for each confirmatory and discriminating claim
to reach 80% power at its smallest effect of interest (issue 43), from a recorded snapshot.

    python scripts/power_table.py                       # results/default/claims.csv -> stdout (markdown)
    python scripts/power_table.py --out results/default/power.md

Per claim: the between-unit spread of its statistic, from the snapshot (the per-unit values its note lists;
else backed out of its t-interval over units), and an upper bound on that spread (the one-sided 80% confidence
bound from the chi-square of n - 1 degrees of freedom: three units measure a spread poorly, so N is sized on
the bound); the smallest effect of interest declared in docs/smallest_effects.yaml; and the smallest N whose
one-sided t over units (the claims' world-level test, at the claim's alpha) has power >= 0.8 there, from the
noncentral t. Each N is then checked by simulating that test on N normal units, at the effect (power) and at
zero (size). Claims whose unit is not the world (05's filtering seeds) are sized in their own unit and say so.
A claim-2 row's test takes the larger p of two excesses (over each null centre); its spread is the deciding
excess's, so its N is the N of one t and the simulated power is an upper bound for the pair. Seconds, one core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emgeo_utils.claims import specs as claim_specs  # noqa: E402
from emgeo_utils.core import stats  # noqa: E402

from emgeo_utils.report.power import MAX_N, POWER, UPPER_LEVEL, effect_of, power, spread, units_needed, upper_sd  # noqa: E402,F401

SIMULATIONS = 4000


def simulated(n: int, effect: float, sd: float, alpha: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([stats.seed_level_test(rng.normal(effect, sd, n))[1] < alpha for _ in range(SIMULATIONS)]))


def table(claims: pd.DataFrame, smallest: dict) -> pd.DataFrame:
    rows = []
    for nb, declared in smallest["claims"].items():
        specs = claim_specs.specs(nb)
        for claim, sesoi in declared.items():
            row = claims[(claims.notebook == nb) & (claims.claim == claim)].iloc[0]
            spec = specs[claim]
            effect, correlation = effect_of(sesoi)
            sd, n, source = spread(row, correlation)
            bound = upper_sd(sd, n)
            unit = "filtering seed" if nb == "05_filtering" and "sign-flip" in str(row.note) else "world"
            need, need_upper = units_needed(effect, sd, spec.alpha), units_needed(effect, bound, spec.alpha)
            check = need_upper or MAX_N
            rows.append({"claim": f"{nb[:2]} {claim}", "kind": spec.kind, "unit": unit, "units now": n,
                         "verdict now": row.verdict.split(" (")[0].split(":")[0], "value": row.value,
                         "smallest effect": sesoi["smallest"], "sd": sd, "sd bound": bound, "spread from": source,
                         "power now": power(n, effect, sd, spec.alpha), "N (sd)": need, "N (bound)": need_upper,
                         "simulated power at N (bound)": simulated(check, effect, bound, spec.alpha, 0),
                         "simulated size at N (bound)": simulated(check, 0.0, bound, spec.alpha, 1)})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    cells = [list(frame.columns)] + frame.astype(str).values.tolist()
    return "\n".join(["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
                     + ["| " + " | ".join(r) + " |" for r in cells[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=Path, default=ROOT / "results" / "default" / "claims.csv")
    parser.add_argument("--smallest", type=Path, default=ROOT / "docs" / "smallest_effects.yaml")
    parser.add_argument("--out", type=Path, help="write the markdown table here (default: print it)")
    args = parser.parse_args(argv)
    frame = table(pd.read_csv(args.claims), yaml.safe_load(args.smallest.read_text()))
    shown = frame.copy()
    for col in ("value", "sd", "sd bound"):
        shown[col] = shown[col].map("{:.3g}".format)
    for col in ("power now", "simulated power at N (bound)", "simulated size at N (bound)"):
        shown[col] = shown[col].map("{:.2f}".format)
    for col in ("N (sd)", "N (bound)"):
        shown[col] = shown[col].map(lambda v: f">{MAX_N}" if pd.isna(v) else str(int(v)))
    text = (f"Units for 80% power at each claim's smallest effect of interest ({args.smallest.name}), from "
            f"{args.claims.relative_to(ROOT) if args.claims.is_relative_to(ROOT) else args.claims}; "
            f"`sd bound`: the one-sided {UPPER_LEVEL:.0%} upper confidence bound of the spread; simulated with "
            f"{SIMULATIONS} worlds per row (`python scripts/power_table.py`).\n\n" + markdown(shown) + "\n")
    if args.out:
        args.out.write_text(text)
        print(f"-> {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
