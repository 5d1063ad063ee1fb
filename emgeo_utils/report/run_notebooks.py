"""Execute every `notebooks/NN_*.ipynb` in order with a profile's parameters (`make figures`).

    python -m emgeo_utils.report.run_notebooks --profile default
    python -m emgeo_utils.report.run_notebooks --profile test --prepare-only --out build/test-notebooks

Parameters come from `params/<profile>/<NN_slug>.yaml` (a missing file means the notebook's
defaults) and are checked against the notebook's `parameters` cell before anything runs (`profiles`).
Executed copies go to `build/<profile>/`; wall times to `<figures>/notebook_times.csv`; the
claims of all notebooks to `<figures>/claims.md` and `claims.csv`; the code that ran to
`<figures>/provenance.json` (`recorded`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from emgeo_utils.core import numerics, paths
from emgeo_utils.report import claims_table, notebook_findings, recorded
from emgeo_utils.report.profiles import profile_notebooks, profile_overrides

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


def notebooks(selected: list[str] | None = None) -> list[Path]:
    found = sorted(paths.notebooks_dir().glob(NOTEBOOK_GLOB))
    if selected:
        found = [nb for nb in found if any(nb.stem.startswith(s) for s in selected)]
        if not found:
            raise SystemExit(f"no notebook matches {selected}; have "
                             f"{[nb.stem for nb in sorted(paths.notebooks_dir().glob(NOTEBOOK_GLOB))]}")
    return found


def local_paths() -> list[str]:
    """Absolute paths of this machine that must never appear in an executed notebook."""
    candidates = {str(paths.PROJECT_ROOT), str(paths.cache_dir()), str(paths.build_dir()), str(Path.home())}
    return sorted(p for p in candidates if len(p) > 1)


def finish_executed(path: Path) -> list[str]:
    """Replace papermill's absolute input/output paths, and those of a failed cell's traceback, by
    project-relative ones; return the problems left: error outputs or absolute paths of this machine in any output."""
    notebook = json.loads(path.read_text())
    meta = notebook.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = paths.display_path(meta[key])
    root = f"{paths.PROJECT_ROOT}/"
    for cell in notebook.get("cells", []):  # a failed cell's traceback names the package's files: project-relative
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [line.replace(root, "") for line in output.get("traceback", [])]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    text = path.read_text()
    problems = ["an error output"] if '"output_type": "error"' in text else []
    problems += [f"the absolute path {p!r}" for p in local_paths() if p in text]
    return problems


def _cache_entries(kind: str = "*") -> int:
    root = paths.cache_dir()
    return sum(1 for _ in root.glob(f"{kind}/*/meta.json")) if root.is_dir() else 0


def _kernel_config(slot: int = 0):
    """Talk to the notebook's kernel over local sockets (IPC, files under $JUPYTER_RUNTIME_DIR) rather
    than unencrypted TCP: nothing is reachable from the network, and the kernel has nothing to warn about.
    Each runner process and notebook slot gets its own socket prefix: kernels started at once would
    otherwise pick the same free socket names and read each other's messages."""
    import tempfile

    from traitlets.config import Config

    runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR") or tempfile.gettempdir())
    runtime.mkdir(parents=True, exist_ok=True)
    return Config({"KernelManager": {"transport": "ipc", "ip": str(runtime / f"emgeo-{os.getpid()}-{slot}")}})


def run(profile: str, selected: list[str] | None, prepare_only: bool, out: Path | None, lanes: int = 1) -> int:
    import papermill as pm  # slow import; keep `--help` fast

    nbs = notebooks(selected or profile_notebooks(profile))
    params = {nb: profile_overrides(nb, profile) for nb in nbs}  # checked: fail before running anything
    out = out or paths.build_dir() / profile
    out.mkdir(parents=True, exist_ok=True)
    if prepare_only:
        for nb in nbs:
            pm.execute_notebook(str(nb), str(out / nb.name), parameters=params[nb], prepare_only=True,
                                kernel_name="python3", progress_bar=False)
        print(f"prepared {len(nbs)} notebooks with profile {profile!r} in {paths.display_path(out)}")
        return 0
    # Progress bars drawn inside a kernel end up as pages of half-drawn bars in the executed notebook,
    # and two workers' bars interleave in the log: `jobs.run_all` prints one line per finished job instead.
    os.environ.setdefault("TQDM_DISABLE", "1")
    figures = paths.figures_dir(profile)
    if not selected:  # a full run of the profile rebuilds its claims table from scratch
        for stale in (figures / "claims").glob("*.json"):
            stale.unlink()
    recorded.stamp(profile, selected)  # the code this run computes with (a recorded profile's provenance)
    run_id = datetime.now(timezone.utc).isoformat(timespec="seconds")
    numerics.require()  # kernels inherit this process's pinned environment; say now if it does not hold
    in_force = numerics.describe()
    print(f"[{profile}] numerics: {in_force}", flush=True)
    times, failed = [], []

    def execute(nb: Path, slot: int = 0) -> None:
        print(f"[{profile}] {nb.stem} ...", flush=True)
        entries, organisms, start = _cache_entries(), _cache_entries("organism-lm"), time.perf_counter()
        status = "ok"
        try:
            pm.execute_notebook(str(nb), str(out / nb.name), parameters=params[nb], kernel_name="python3",
                                cwd=str(out), progress_bar=False, config=_kernel_config(slot))
        except Exception as err:  # papermill raises with the failing cell; keep going, fail at the end
            status = "failed"
            failed.append(nb.stem)
            print(f"[{profile}] {nb.stem} FAILED: {str(err).strip().splitlines()[-1] if str(err).strip() else err}")
        notebook_findings.append_findings(out / nb.name, figures / "claims" / f"{nb.stem}.json")  # its last cell: what it found
        problems = finish_executed(out / nb.name) if (out / nb.name).exists() else []  # a failed one is read too
        if status == "ok" and problems:
            status = "failed"
            failed.append(nb.stem)
            print(f"[{profile}] {nb.stem} FAILED: the executed notebook contains {', '.join(problems)}")
        seconds = time.perf_counter() - start
        times.append({"run": run_id, "selection": "all" if not selected else " ".join(selected), "notebook": nb.stem,
                      "profile": profile, "seconds": round(seconds, 1), "status": status,
                      "artifacts_built": _cache_entries() - entries,
                      "organisms_trained": _cache_entries("organism-lm") - organisms, "numerics": in_force,
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        print(f"[{profile}] {nb.stem} {status} in {seconds:.1f} s", flush=True)

    if lanes <= 1:
        for nb in nbs:
            execute(nb)
    else:
        # Notebooks share nothing but cached artifacts, whose builders hold a lock per key: a notebook
        # that needs an organism another lane is training waits for it, then reads it.
        print(f"[{profile}] {len(nbs)} notebooks, {lanes} at a time", flush=True)
        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(execute, nbs, range(len(nbs))))  # a socket prefix per notebook
        times.sort(key=lambda row: row["notebook"])
    figures.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(times)
    latest = figures / "notebook_times.csv"  # the latest time of every notebook (an --only run updates its rows)
    if selected and latest.exists():
        previous = pd.read_csv(latest)
        frame_all = pd.concat([previous[~previous.notebook.isin(frame.notebook)], frame]).sort_values("notebook")
    else:
        frame_all = frame
    frame_all.to_csv(latest, index=False)
    append_history(frame)
    table = claims_table.gather(profile)
    summary = [f"{len(table)} claims -> {paths.display_path(figures / 'claims.md')}"]
    if len(table):
        summary += table[["notebook", "claim", "verdict", "as_expected"]].to_string(index=False).splitlines()
    summary.append(f"total {frame.seconds.sum():.1f} s")
    if failed:
        summary.append(f"FAILED notebooks: {', '.join(failed)} (executed copies in {paths.display_path(out)})")
    # Every line says its profile: `make figures` runs profiles side by side into one log.
    print("\n" + "\n".join(f"[{profile}] {line}" for line in summary), flush=True)
    return 1 if failed else 0


def append_history(frame: pd.DataFrame) -> None:
    """Add a run's rows to build/notebook_times_history.csv, under a lock: `make figures` runs profiles side by side."""
    history = paths.build_dir() / "notebook_times_history.csv"
    history.parent.mkdir(parents=True, exist_ok=True)
    with open(history.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if history.exists() and history.read_text().split("\n", 1)[0] != ",".join(frame.columns):
            history.rename(history.with_suffix(".old.csv"))  # columns changed: start a new history
        frame.to_csv(history, mode="a", header=not history.exists(), index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", help="a folder under params/ (default: default)")
    parser.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 00 03")
    parser.add_argument("--prepare-only", action="store_true", help="inject parameters without executing")
    parser.add_argument("--out", type=Path, help="folder for the executed or prepared notebooks")
    parser.add_argument("--lanes", type=int, default=1,
                        help="notebooks run side by side (default 1: in order; `make quick` runs 2)")
    args = parser.parse_args(argv)
    return run(args.profile, args.only, args.prepare_only, args.out, args.lanes)


if __name__ == "__main__":
    sys.exit(main())
