"""The cost of a unit (an independent world per kind) on two cores, from the powered profile's recorded run.

Nothing is run here: `results/default-powered/notebook_times.csv` holds the wall time of each notebook of the
recorded whole run (eight worlds per kind, cold, nothing else running, the CPU in its `numerics` column). A
notebook's seconds per unit is its time over the number of units: an upper bound on what one more unit adds,
since the fixed costs (notebook 05's filtering world, 04's EM side on one world) are spread over the units too.
Plan a run of N units at about N times the total per unit.
"""

from __future__ import annotations

import pandas as pd

from emgeo_utils.report import recorded
from emgeo_utils.report.profiles import profile_parameters

from . import common

PROFILE = "default-powered"


def run() -> list[common.Row]:
    times = recorded.results_dir(PROFILE) / "notebook_times.csv"
    if not times.is_file():
        print(f"  no recorded run of {PROFILE} ({times.name} missing): `make figures PROFILE={PROFILE}` first")
        return [common.Row("6 cost of a unit", "seconds per unit, all notebooks", None, "s", missing="not recorded")]
    frame = pd.read_csv(times)
    units = len(profile_parameters("03_geometry_tests", PROFILE)["organism_seeds"])
    record = recorded.Recorded(PROFILE)
    cpu = str(frame.numerics.iloc[0]).rsplit("CPU ", 1)[-1] if "numerics" in frame else "unknown CPU"
    note = f"recorded run at {record.commit}, {units} units, {cpu}" + ("; STALE" if record.stale else "")
    print(f"  {note}")
    rows = [common.Row("6 cost of a unit", f"{r.notebook}: {r.seconds:.0f} s / {units} units", r.seconds / units, "s", note=note)
            for r in frame.itertuples()]
    total = frame.seconds.sum()
    rows.append(common.Row("6 cost of a unit", f"all notebooks: {total:.0f} s / {units} units", total / units, "s", note=note))
    return rows
