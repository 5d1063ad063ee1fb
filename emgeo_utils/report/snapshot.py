"""The committed claims snapshot: each CI profile's `claims.csv`, kept in `results/<profile>/claims.csv`.

    python -m emgeo_utils.report.snapshot check default smollm2-135m    # CI: a fresh run against the commit
    python -m emgeo_utils.report.snapshot update default smollm2-135m   # after a change that moves numbers

The numerics are pinned (`core/numerics.py`). What the pin leaves is MKL (torch's matrix products and
its vectorised sqrt and exp), whose kernels follow the CPU's vendor (measured: `tests/test_numerics.py`,
README). So each profile keeps one snapshot per numerics signature it was computed under: the first in
`results/<profile>/` and every other CPU's in `results/<profile>/cpu/<vendor>-<canary>/`, each with its
`numerics.json` (the signature, and the fingerprint of the code that computed it). On a machine whose
signature has a snapshot `check` compares bytes; on another, it compares every asserted claim's outcome and
verdict with the first snapshot exactly (rows the profile records but does not assert excepted:
`record: ...` and unlisted ones) and lists the values that moved. Either way it names every row and field
that differs. `across_cpus` reads each row over the snapshots computed by the current code: where their
verdicts differ the row reads "differs between CPUs (...)", which counts as neither support nor
contradiction; a snapshot computed by older code is STALE and left out, and says so. A change that moves numbers updates the snapshot in the same commit, so every moved number
is visible in review. `update --with-notebooks` also commits the run's stamp, wall times and executed notebooks (capped in size): for a
profile too long for CI, what the report shows as its recorded claims (`recorded`); for a CI profile, notebooks a
reader opens without running, which `check` holds to the same code and the same claims as the snapshot.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from emgeo_utils.claims import verdicts
from emgeo_utils.core import numerics, paths
from emgeo_utils.report import recorded

SIGNATURE = ("mode", "aten", "mkl_cbwr", "numpy_simd", "openblas", "openblas_threads")
VERDICT_FIELDS = ("outcome", "verdict", "as_expected")


def snapshot_file(profile: str) -> Path:
    return recorded.results_dir(profile) / "claims.csv"


def fresh_file(profile: str) -> Path:
    return paths.figures_dir(profile) / "claims.csv"


def signature_file(profile: str) -> Path:
    return snapshot_file(profile).with_name("numerics.json")


def slots(profile: str) -> list[Path]:
    """The profile's snapshot folders: the first, then one per other CPU signature."""
    first = snapshot_file(profile).parent
    return [first] + sorted(p for p in (first / "cpu").glob("*") if (p / "claims.csv").is_file())


def signature_of(folder: Path) -> dict | None:
    f = folder / "numerics.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _same_numerics(a: dict | None, b: dict) -> bool:
    return a is not None and all(a.get(k) == b.get(k) for k in SIGNATURE + ("cpu_vendor", "mkl_canary"))


def slot_for(profile: str, sig: dict) -> Path | None:
    """The snapshot folder computed under the numerics `sig`, if any."""
    return next((f for f in slots(profile) if _same_numerics(signature_of(f), sig)), None)


def code_fingerprint(profile: str) -> str:
    """One hash of the files that can move the profile's numbers (`recorded.fingerprint`)."""
    import hashlib

    return hashlib.sha256(json.dumps(recorded.fingerprint(profile), sort_keys=True).encode()).hexdigest()[:16]


def cpu_label(sig: dict) -> str:
    return f"{sig.get('cpu_vendor', 'unknown')}-{str(sig.get('mkl_canary', ''))[:8]}"


def across_cpus(profile: str) -> tuple[dict[tuple[str, str], str], list[str]]:
    """{(notebook, claim): "differs between CPUs (A: ...; B: ...)"} for the rows whose verdict class differs
    between the snapshots the current code computed, and a line for each snapshot left out as STALE."""
    current, stale = {}, []
    code = code_fingerprint(profile)
    for folder in slots(profile):
        sig = signature_of(folder) or {}
        if sig.get("code") != code:
            stale.append(f"{cpu_label(sig)} ({paths.display_path(folder / 'claims.csv')}, computed at commit "
                         f"{str(sig.get('commit', 'unknown'))[:10]}): STALE, computed by other code; its verdicts are not compared")
            continue
        current[cpu_label(sig)] = pd.read_csv(folder / "claims.csv", dtype=str, keep_default_na=False).set_index(["notebook", "claim"])
    differs = {}
    if len(current) > 1:
        keys = set.intersection(*(set(f.index) for f in current.values()))
        for key in sorted(keys):
            read = {name: verdicts.verdict_class(f.at[key, "verdict"]) for name, f in current.items()}
            if len(set(read.values())) > 1:
                differs[key] = f"{verdicts.DIFFERS} (" + "; ".join(f"{n}: {v}" for n, v in read.items()) + ")"
    return differs, stale


def with_cpu_agreement(profile: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each row whose verdict differs between current CPU snapshots read as such."""
    differs, _ = across_cpus(profile)
    out = frame.copy()
    for (nb, claim), text in differs.items():
        out.loc[(out.notebook.astype(str) == nb) & (out.claim.astype(str) == claim), "verdict"] = text
    return out


def cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "unknown")
    except OSError:
        return "unknown"


def mkl_canary() -> str:
    """A hash of what MKL computes here: torch's matrix products (MKL's GEMM, whose branch follows the
    CPU's vendor) and its float sqrt and exp (MKL's vector math, which refines the CPU's approximate
    reciprocal square root, so its last bit follows the processor). Equal canaries: equal MKL numbers."""
    import hashlib

    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(256, 192, generator=g), torch.randn(192, 320, generator=g)
        x = torch.rand(96, 200, generator=g) + 0.1
        h = hashlib.sha256()
        for t in (a[:16, :24] @ b[:24, :8], a @ b, x.sqrt(), x.exp()):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
    finally:
        torch.set_num_threads(previous)


def signature() -> dict:
    """What decides the numbers here: the numerics in force, read back, the CPU's vendor and what MKL
    computes on this processor (its canary)."""
    got = numerics.in_force()
    return {k: got[k] for k in SIGNATURE} | {"cpu_vendor": cpu_vendor(), "mkl_canary": mkl_canary()}


def _read(column: str, value: str) -> str:
    """A verdict by its class (its first words): the qualifier after them, e.g. "(one-sided p < 0.05; the
    two-sided 95% CI still reaches the null)", may differ between CPUs while the verdict stands."""
    return verdicts.verdict_class(value) if column == "verdict" else value


def verdict_differences(committed: Path, fresh: Path) -> list[str]:
    """Asserted claims whose outcome, verdict (its class) or agreement with the expectation differs. Rows
    the profile does not assert are excepted:
    `record: ...` ones and those its expectations do not list (they read "not checked"), since neither
    can fail a run on any machine."""
    old, new = (pd.read_csv(f, dtype=str, keep_default_na=False).set_index(["notebook", "claim"]) for f in (committed, fresh))
    lines = [f"{nb} {claim}: only in the snapshot" for nb, claim in old.index.difference(new.index, sort=False)]
    lines += [f"{nb} {claim}: not in the snapshot" for nb, claim in new.index.difference(old.index, sort=False)]
    for key in old.index.intersection(new.index, sort=False):
        if old.at[key, "expected"].startswith("record:") or old.at[key, "expected"] == "":
            continue
        moved = [f"{col} {old.at[key, col]!r} -> {new.at[key, col]!r}" for col in VERDICT_FIELDS
                 if _read(col, old.at[key, col]) != _read(col, new.at[key, col])]
        if moved:
            lines.append(f"{key[0]} {key[1]}: " + "; ".join(moved))
    return lines


def differences(committed: Path, fresh: Path) -> list[str]:
    """Each row and field that differs between two claims tables (empty when they are the same bytes)."""
    if committed.read_bytes() == fresh.read_bytes():
        return []
    old, new = (pd.read_csv(f, dtype=str, keep_default_na=False).set_index(["notebook", "claim"]) for f in (committed, fresh))
    lines = [f"{nb} {claim}: only in the snapshot" for nb, claim in old.index.difference(new.index, sort=False)]
    lines += [f"{nb} {claim}: not in the snapshot" for nb, claim in new.index.difference(old.index, sort=False)]
    for key in old.index.intersection(new.index, sort=False):
        moved = [f"{col} {old.at[key, col]!r} -> {new.at[key, col]!r}" for col in old.columns
                 if col in new.columns and old.at[key, col] != new.at[key, col]]
        if moved:
            lines.append(f"{key[0]} {key[1]}: " + "; ".join(moved))
    return lines or ["the files differ in their bytes (row order or formatting) but not in any field"]


NOTEBOOKS_CAP_MIB = 8


def _sha(file: Path) -> str:
    import hashlib
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16]


def notebooks_match(profile: str) -> list[str]:
    """Why a profile's committed executed notebooks (`results/<profile>/notebooks/`) do not show its committed
    snapshot: computed by other code (the same commit's files, by their hashes), or with other claims. Empty: they match."""
    folder, stamp = snapshot_file(profile).parent, recorded.recorded_file(profile)
    if not (folder / "notebooks").is_dir():
        return []
    if not stamp.is_file():
        return [f"{paths.display_path(folder / 'notebooks')} has no provenance.json beside it"]
    record = json.loads(stamp.read_text())
    problems = []
    if changed := recorded.changed_since(record, profile):
        problems.append(f"the code changed since they ran: {', '.join(changed[:6])}" + (f" and {len(changed) - 6} more" if len(changed) > 6 else ""))
    if record.get("dirty") or record.get("mixed"):
        problems.append("they ran with uncommitted changes or at mixed code")
    if record.get("claims_sha256") != _sha(snapshot_file(profile)):
        problems.append("their run's claims are not the committed snapshot's")
    return problems


def check(profiles: list[str]) -> int:
    failed = False
    for profile in profiles:
        if problems := notebooks_match(profile):
            failed = True
            print(f"[{profile}] the committed executed notebooks do not match the snapshot: {'; '.join(problems)}. "
                  f"Refresh them: `make figures`, then `python -m emgeo_utils.report.snapshot update --with-notebooks {profile}`")
        committed, fresh = snapshot_file(profile), fresh_file(profile)
        if not committed.is_file():
            print(f"[{profile}] no committed snapshot at {paths.display_path(committed)}: run `update` and commit it")
            failed = True
            continue
        if not fresh.is_file():
            print(f"[{profile}] no fresh claims table at {paths.display_path(fresh)}: run `make figures` first")
            failed = True
            continue
        here = signature()
        own = slot_for(profile, here)
        recorded = signature_of(committed.parent)
        if own is not None and own != committed.parent and (signature_of(own) or {}).get("code") != code_fingerprint(profile):
            print(f"[{profile}] this CPU's snapshot {paths.display_path(own / 'claims.csv')} was computed by other code "
                  "(STALE): reading the verdicts against the latest snapshot instead")
            own = None
        if own is not None:
            committed, recorded = own / "claims.csv", here
        moved = differences(committed, fresh)
        if _same_numerics(recorded, here):
            if moved:
                failed = True
                print(f"[{profile}] the fresh claims table differs from the committed snapshot "
                      f"({paths.display_path(committed)}), computed under the same numerics; {len(moved)} row(s):")
                print("\n".join(f"  {line}" for line in moved))
            else:
                print(f"[{profile}] claims identical to the committed snapshot, byte for byte")
            continue
        print(f"[{profile}] no snapshot of this machine's numerics {here} (the first one's: {recorded}): "
              "comparing the asserted claims' outcomes and verdicts exactly; values may move. "
              f"`snapshot update {profile}` here adds this CPU's snapshot")
        flipped = verdict_differences(committed, fresh)
        if flipped:
            failed = True
            print(f"[{profile}] {len(flipped)} asserted claim(s) came out otherwise than in the snapshot:")
            print("\n".join(f"  {line}" for line in flipped))
        else:
            print(f"[{profile}] every asserted claim as in the snapshot; {len(moved)} row(s) moved in value:")
            print("\n".join(f"  {line}" for line in moved))
    return 1 if failed else 0


def update(profiles: list[str], with_notebooks: bool = False) -> int:
    for profile in profiles:
        fresh = fresh_file(profile)
        if not fresh.is_file():
            raise SystemExit(f"[{profile}] no fresh claims table at {paths.display_path(fresh)}: run `make figures` first")
        here = signature()
        folder = snapshot_file(profile).parent  # the latest update is the first snapshot; the one it replaces, if
        previous = signature_of(folder)        # of other numerics, keeps its place under cpu/
        if snapshot_file(profile).is_file() and previous is not None and not _same_numerics(previous, here):
            keep = folder / "cpu" / cpu_label(previous)
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("claims.csv", "numerics.json"):
                shutil.copyfile(folder / name, keep / name)
        if (own := slot_for(profile, here)) is not None and own != folder:
            shutil.rmtree(own)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh, folder / "claims.csv")
        stamp = {"code": code_fingerprint(profile), "commit": recorded.git("rev-parse", "HEAD") or "unknown"}
        (folder / "numerics.json").write_text(json.dumps(here | stamp, indent=1) + "\n")
        if with_notebooks:  # a profile CI does not rerun: what ran, how long, and its evidence (`recorded`)
            for side in (recorded.stamp_file(profile), fresh.with_name("notebook_times.csv")):
                if side.is_file():
                    shutil.copyfile(side, snapshot_file(profile).with_name(side.name))
            copied = recorded.record_notebooks(profile, paths.build_dir() / profile, fresh.with_name("claims"))
            stamp_copy = recorded.recorded_file(profile)
            if stamp_copy.is_file():  # which snapshot these notebooks computed: `notebooks_match` checks it
                record = json.loads(stamp_copy.read_text()) | {"claims_sha256": _sha(folder / "claims.csv")}
                stamp_copy.write_text(json.dumps(record, indent=1) + "\n")
            size = sum(f.stat().st_size for f in (folder / "notebooks").glob("*.ipynb")) / 2**20
            print(f"[{profile}] executed notebooks {', '.join(copied)} -> {paths.display_path(folder / 'notebooks')}: "
                  f"{size:.1f} MiB (cap {NOTEBOOKS_CAP_MIB} MiB)")
            if size > NOTEBOOKS_CAP_MIB:
                raise SystemExit(f"[{profile}] the executed notebooks take {size:.1f} MiB, over the {NOTEBOOKS_CAP_MIB} MiB cap: "
                                 "look for large outputs (progress bars, printed tables) before committing them")
        print(f"[{profile}] snapshot {paths.display_path(folder / 'claims.csv')} <- {paths.display_path(fresh)}")
        differs, stale = across_cpus(profile)
        print("\n".join([f"[{profile}] {len(differs)} row(s) differ between CPU snapshots"] + [f"  {line}" for line in stale]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["check", "update"])
    parser.add_argument("profiles", nargs="+")
    parser.add_argument("--with-notebooks", action="store_true",
                        help="update: also commit the executed notebooks (a profile CI does not rerun: `recorded`)")
    args = parser.parse_args(argv)
    return check(args.profiles) if args.action == "check" else update(args.profiles, args.with_notebooks)


if __name__ == "__main__":
    sys.exit(main())
