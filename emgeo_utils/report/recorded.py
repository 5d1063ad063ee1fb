"""Claims recorded at a commit, for a profile too long for CI (the full SmolLM2 profile).

    make figures PROFILE=smollm2-135m-full    # by hand: past CI's budget (5,552 s on 2 cores, part cached; about 6,900 s cold)
    python -m emgeo_utils.report.snapshot update --with-notebooks smollm2-135m-full   # then commit results/

Every run stamps the code that computed it (`<figures>/provenance.json`: the commit, and a hash of each
file that can move a number: the package modules the notebooks reach, the notebooks' code cells (their prose cannot), their claims files, the profile's parameters,
the pinned versions); `snapshot update --with-notebooks` commits the stamp with the claims and the executed
notebooks. `make figures` shows a recorded profile's claims beside the fresh ones, with its commit, each
linked to the cell that checked it, and marks them STALE, naming the files, once the code has changed
since. Report code only renders numbers, so it is left out of the hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from emgeo_utils.core import paths
from emgeo_utils.core.files import write_text_atomic
from emgeo_utils.report import notebook_findings

SOURCES = ("emgeo_utils/**/*.py", "emgeo_utils/**/*.yaml", "notebooks/*.ipynb", "notebooks/claims/*.yaml",
           "notebooks/claims/history.csv", "constraints.txt", "pyproject.toml")
RENDERING_ONLY = "emgeo_utils/report/"
# Distributions that only run the tests (never imported by a notebook or a job): their pins cannot move a number.
TEST_TOOLING = ("pytest-xdist", "execnet")


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def sources(profile: str) -> tuple[str, ...]:
    """The patterns of the files that can move a number of `profile` (report code aside)."""
    return SOURCES + (f"params/{profile}/*.yaml",)


def fingerprint(profile: str) -> dict[str, str]:
    """{project-relative path: sha256 prefix} of every file that can move a number of `profile`: the package
    modules the notebooks' code reaches (their import closure, as the cache keys its jobs: `core/codehash.py`)
    and the packages holding them, the data files those modules name, and the notebooks, claims, pins and parameters."""
    root = paths.PROJECT_ROOT
    package = {f for f in root.glob("emgeo_utils/**/*.py") if f.is_file()}
    modules = notebook_modules()
    reached = {f for f in package if _module_name(f.relative_to(root)) in modules}
    read = "\n".join(f.read_text() for f in reached)  # a data file counts when a reached module names it
    data = {f for f in root.glob("emgeo_utils/**/*.yaml") if f.name in read}
    files = {f for pattern in sources(profile) for f in root.glob(pattern)
             if f.is_file() and not str(f.relative_to(root)).startswith("emgeo_utils/")} | reached | data
    rel = sorted(str(f.relative_to(root)) for f in files)
    return {r: hashlib.sha256(_content(root / r)).hexdigest()[:16] for r in rel if not r.startswith(RENDERING_ONLY)}


def _module_name(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def notebook_modules() -> set[str]:
    """The package modules the notebooks' code cells import, transitively (lazy imports included), and every
    package above each (importing a module runs its packages' `__init__`)."""
    from emgeo_utils.core import codehash

    todo = ["emgeo_utils"]
    for nb in sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        code = [line for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"
                for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))]
        todo += codehash.imported_modules("notebook", "\n".join(code))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        origin = importlib.util.find_spec(name).origin  # read, not imported: nothing heavy loads here
        todo += codehash.imported_modules(name, Path(origin).read_text())
        todo += [name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)]
    return seen


def _content(file: Path) -> bytes:
    """What of a file can move a number: a notebook's code cells (its prose cannot), the pins and ranges of
    everything but the test tooling, any other file whole."""
    if file.name in ("constraints.txt", "pyproject.toml"):
        text = file.read_text()
        for name in TEST_TOOLING:
            text = re.sub(rf'^{re.escape(name)}==\S*\n|"{re.escape(name)}[^"]*",\s*', "", text, flags=re.M)
        return text.encode()
    if file.suffix != ".ipynb":
        return file.read_bytes()
    cells = json.loads(file.read_text())["cells"]
    return json.dumps([c["source"] for c in cells if c["cell_type"] == "code"]).encode()


def stamp_file(profile: str) -> Path:
    return paths.figures_dir(profile) / "provenance.json"


def results_dir(profile: str) -> Path:
    return paths.PROJECT_ROOT / "results" / profile


def recorded_file(profile: str) -> Path:
    return results_dir(profile) / "provenance.json"


def stamp(profile: str, selected: list[str] | None) -> None:
    """Before a run: what code computes it. A run of some notebooks only (`--only`) keeps the stamp of
    the profile's last whole run when the code is the same, and marks it `mixed` when it is not."""
    files = fingerprint(profile)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if selected and stamp_file(profile).is_file():
        previous = json.loads(stamp_file(profile).read_text())
        if previous["files"] == files:
            return
        record = previous | {"mixed": sorted(set(previous.get("mixed", [])) | set(selected))}
    else:
        record = {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(uncommitted(profile)),
                  "started": now, "notebooks": selected or "all", "files": files}
    stamp_file(profile).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp_file(profile), json.dumps(record, indent=1) + "\n")


def uncommitted(profile: str) -> list[str]:
    """The files that can move a number of `profile` and differ from the commit (changed, new or deleted):
    a run is `dirty` only for these, not for a README edit or a deleted placeholder."""
    specs = [f":(glob){p}" for p in sources(profile)] + [f":(exclude){RENDERING_ONLY}"]
    status = git("status", "--porcelain", "--untracked-files=all", "--", *specs)
    counted = fingerprint(profile)  # a package module the notebooks never reach cannot move their numbers
    listed = (line.split(None, 1)[1] for line in status.splitlines() if line.strip())  # "XY path"
    return sorted(p for p in listed if not p.endswith(".py") or p in counted or not (paths.PROJECT_ROOT / p).exists())


def changed_since(record: dict, profile: str) -> list[str]:
    """The files that can move a number now whose content differs from the stamp's (changed, or new to it). A
    stamped file that no longer can (deleted, or out of the notebooks' import closure) is not a change: its
    importer's change, or the notebooks', already shows."""
    now, then = fingerprint(profile), record["files"]
    return sorted(f for f in now if now[f] != then.get(f))


def record_notebooks(profile: str, executed: Path, claims_folder: Path) -> list[str]:
    """Commit a recorded profile's evidence beside its claims: each executed notebook that made claims
    (`results/<profile>/notebooks/`, the report exports it as it does a fresh one) and the cell that
    checked each claim (`cells.json`), so its column links to the cell as a fresh one does."""
    folder = results_dir(profile) / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    cells, copied = {}, []
    for file in sorted(claims_folder.glob("*.json")):
        rows = json.loads(file.read_text())
        cells |= {f"{r['notebook']}/{r['claim']}": r.get("cell") for r in rows}
        if (executed / f"{file.stem}.ipynb").is_file():
            shutil.copyfile(executed / f"{file.stem}.ipynb", folder / f"{file.stem}.ipynb")
            notebook_findings.append_findings(folder / f"{file.stem}.ipynb", file)  # a run older than the findings cell gets it here
            copied.append(file.stem)
    write_text_atomic(results_dir(profile) / "cells.json", json.dumps(cells, indent=1, sort_keys=True) + "\n")
    return copied


class Recorded:
    """A profile's committed claims (`results/<profile>/claims.csv`) and the stamp of the run behind them."""

    def __init__(self, profile: str):
        self.profile = profile
        folder = results_dir(profile)
        if not (folder / "claims.csv").is_file() or not recorded_file(profile).is_file():
            raise FileNotFoundError(f"no recorded claims for {profile!r}: results/{profile}/claims.csv and "
                                    f"provenance.json come from `snapshot update --with-notebooks {profile}` after a whole run (`make figures PROFILE={profile}`)")
        self.record = json.loads(recorded_file(profile).read_text())
        self.changed = changed_since(self.record, profile)
        frame = pd.read_csv(folder / "claims.csv", dtype=str, keep_default_na=False)
        cells = json.loads((folder / "cells.json").read_text()) if (folder / "cells.json").is_file() else {}
        self.rows = [_typed(r) | {"cell": cells.get(f"{r['notebook']}/{r['claim']}")} for r in frame.to_dict("records")]
        self.notebooks = folder / "notebooks"  # the executed notebooks, when the update committed them
        times = folder / "notebook_times.csv"
        self.times = pd.read_csv(times) if times.is_file() else pd.DataFrame(columns=["notebook", "seconds", "status"])

    @property
    def commit(self) -> str:
        return self.record["commit"][:10] + (" (uncommitted changes)" if self.record.get("dirty") else "")

    @property
    def stale(self) -> bool:
        return bool(self.changed) or bool(self.record.get("mixed")) or bool(self.record.get("dirty"))

    def title(self) -> str:
        """The column's name: the profile, when and at which commit it ran, and STALE when the code moved."""
        when = self.record.get("started", "")[:10]
        return f"{self.profile} (recorded {when} at {self.commit}{'; STALE' if self.stale else ''})"

    def why_stale(self) -> str:
        parts = []
        if self.changed:
            shown = ", ".join(self.changed[:8]) + (f" and {len(self.changed) - 8} more" if len(self.changed) > 8 else "")
            parts.append(f"{len(self.changed)} file(s) changed since: {shown}")
        if self.record.get("mixed"):
            parts.append(f"notebooks {', '.join(self.record['mixed'])} were rerun at other code than the rest")
        if self.record.get("dirty"):
            parts.append("it ran with uncommitted changes")
        return "; ".join(parts)


def _typed(row: dict) -> dict:
    """A claims.csv row with the types the claims records had: numbers, booleans, None for empty."""
    out = {}
    for key, value in row.items():
        if value == "":
            out[key] = None
        elif value in ("True", "False"):
            out[key] = value == "True"
        else:
            try:
                out[key] = float(value) if key in NUMERIC else value
            except ValueError:
                out[key] = value
    return out


NUMERIC = ("value", "ci_low", "ci_high", "p_value", "p_adjusted", "smallest_p", "null_value", "margin", "tost_low", "tost_high")


def available(profiles: list[str], shown: list[str]) -> list[Recorded]:
    """The recorded profiles among `profiles` that this run did not compute afresh, with a line for each
    one that has no recorded claims."""
    out = []
    for p in profiles:
        if p in shown:
            continue
        try:
            out.append(Recorded(p))
        except FileNotFoundError as err:
            print(f"[{p}] not shown: {err}")
    return out
