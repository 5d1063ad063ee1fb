"""Every notebook's claims in one table per profile, and one across profiles.

    python -m emgeo_utils.report.claims_table --by-model default smollm2-135m --recorded smollm2-135m-full
    python -m emgeo_utils.report.claims_table --failures default smollm2-135m

`gather` writes `claims.csv` / `claims.md` in a profile's figures: rows ordered by kind (discriminating
controls first, then the paper's claims, negative controls, findings beyond the paper, our criteria;
sanity checks last and not counted), with a count of verdicts per kind. `by_model` puts the profiles
side by side, with the committed claims of profiles too long for CI (`recorded`); `failures` lists
what failed in their last runs.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from emgeo_utils.core import paths
from emgeo_utils.claims import verdicts
from emgeo_utils.claims.record import COLUMNS, Claim, fmt, measured, mismatch
from emgeo_utils.report import recorded


def label(profile: str) -> str:
    return "organism" if profile in ("default", "large", "test") else profile


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by kind in `verdicts.ORDER`, then notebook, keeping each notebook's order within a kind."""
    rank = {k: i for i, k in enumerate(verdicts.ORDER)}
    key = frame.kind.map(rank).fillna(len(rank))
    return frame.assign(_k=key, _i=range(len(frame))).sort_values(["_k", "notebook", "_i"]).drop(columns=["_k", "_i"])


def counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Verdicts (their first words) per kind, sanity checks apart; confirmatory claims that were not
    confirmed counted in their own column."""
    f = frame.assign(verdict_class=frame.verdict.fillna("").map(verdicts.verdict_class),
                     not_confirmed=frame.verdict.fillna("").str.startswith(verdicts.NOT_CONFIRMED))
    table = f.pivot_table(index="kind", columns="verdict_class", values="claim", aggfunc="count", fill_value=0)
    table = table[[k for k in verdicts.CLASSES if k in table.columns] + [k for k in table.columns if k not in verdicts.CLASSES]]
    table["claims"] = table.sum(axis=1)
    table["confirmatory, not confirmed"] = f.groupby("kind").not_confirmed.sum()
    order = [k for k in verdicts.ORDER if k in table.index]
    return table.loc[order].rename(index=verdicts.KINDS)


def _markdown_table(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame[columns].itertuples(index=False)])


MD_COLUMNS = ["notebook", "claim", "kind", "statement", "paper predicts", "declared", "our expectation", "measured",
              "smallest p", "units", "verdict", "note"]


def _declared(r: dict) -> str:
    """When the claims file declared it (git history) and whether that was before its first result."""
    if not isinstance(r.get("declared"), str):
        return "not in the claims history"
    pre = r.get("preregistered")
    return r["declared"] + {True: ", pre-registered", False: ", after its first result: not pre-registered"}.get(
        pre if isinstance(pre, bool) else {"True": True, "False": False}.get(str(pre)), "")


def _md_frame(frame: pd.DataFrame) -> pd.DataFrame:
    def expectation(r):
        e = r.expected
        text = e if isinstance(e, str) else {True: "holds", False: "does not hold"}.get(e, "not checked")
        if isinstance(r.registered, str):
            text += f" (set {r.expectation_set}, {r.registered} measuring)"
        return text
    rows = frame.to_dict("records")
    return pd.DataFrame({
        "notebook": frame.notebook, "claim": frame.claim,
        "kind": frame.kind.map(verdicts.KINDS) + frame.family.map({"confirmatory": " (confirmatory)"}).fillna(""),
        "statement": frame.statement, "paper predicts": frame.predicts.fillna("not in the paper"),
        "declared": [_declared(r) for r in rows],
        "our expectation": [expectation(r) for r in frame.itertuples()], "measured": [measured(r) for r in rows],
        "smallest p": frame.smallest_p, "units": frame.units,
        "verdict": frame.verdict + frame.as_expected.map({"UNEXPECTED": "; UNEXPECTED"}).fillna(""), "note": frame.note})


def gather(profile: str = "default") -> pd.DataFrame:
    """Merge every notebook's claims into `claims.csv` and `claims.md` in the profile's figures."""
    folder = paths.figures_dir(profile)
    rows = []
    for file in sorted((folder / "claims").glob("*.json")):
        rows += json.loads(file.read_text())
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(folder / "claims.csv", index=False)
    shown = ordered(frame)
    lines = [f"# Claims table (profile `{profile}`)", "",
             "Every row was computed by the notebook named in it; each claim's words, kind, direction, null and margin "
             "are in `notebooks/claims/<notebook>.yaml`, the profile's expectations in `params/<profile>/expectations.yaml`. "
             "Kinds: *discriminating control* (an effect the paper's account predicts and the data's content alone would not "
             "give), *the paper's claim*, *negative control* (absence predicted: supported only when equivalence within its "
             "margin is shown), *beyond the paper*, *our criterion* (a bar we chose, read against that bar), *sanity check* "
             "(not evidence). Confirmatory claims are Holm-adjusted within their notebook (a criterion, read by its CI "
             "against our bar with no p, leaves the family by that rule); one that is not supported reads NOT CONFIRMED. "
             "*Declared*: when the claims file first held the claim, from git (`notebooks/claims/history.csv`); only a claim "
             "declared before its first committed result is called pre-registered. A margin set after the values it judges "
             "makes an equivalence read *post hoc, not evidence*; a paper claim whose content-matched control does not "
             "support the paper reads *effect present, not specific to EM*. *Our expectation*: the outcome the profile asserts (a flip fails the run), when it was set and "
             "whether before or after measuring. NaN is never evidence: such a claim reads *not computable*.", "",
             "## Verdicts per kind", ""]
    if len(frame):
        c = counts(frame).reset_index().rename(columns={"kind": "kind"})
        lines += _markdown_table(c, list(c.columns))
    lines += ["", "## Claims", ""] + _markdown_table(_md_frame(shown), MD_COLUMNS)
    (folder / "claims.md").write_text("\n".join(lines) + "\n")
    return frame


def by_model(profiles: list[str], recorded_profiles: list[str] = ()) -> pd.DataFrame:
    """One row per claim (by kind, discriminating first), a column per profile's model, from each profile's
    `claims.csv`, and a count of verdicts per model and kind; a claim a profile did not run says so.
    `recorded_profiles` this run did not compute add a column each from their committed claims
    (`recorded`), named with the commit they ran at and marked STALE when the code has changed since."""
    frames = {label(p): (pd.read_csv(f) if (f := paths.figures_dir(p) / "claims.csv").is_file() else pd.DataFrame(columns=COLUMNS))
              for p in profiles}
    kept = recorded.available(list(recorded_profiles), profiles)
    frames |= {r.title(): pd.DataFrame(r.rows, columns=COLUMNS) for r in kept}
    every = ordered(pd.concat(frames.values(), ignore_index=True).drop_duplicates(["notebook", "claim"]))
    rows = []
    for r in every.itertuples():
        row = {"notebook": r.notebook, "claim": r.claim, "kind": verdicts.KINDS.get(r.kind, r.kind),
               "paper predicts": r.predicts if isinstance(r.predicts, str) else "not in the paper"}
        for name, f in frames.items():
            hit = f[(f.notebook == r.notebook) & (f.claim == r.claim)]
            row[name] = (f"{hit.verdict.iloc[0]}: {measured(hit.iloc[0].to_dict())}" if len(hit)
                         else "not run in this profile")
        rows.append(row)
    cols = ["notebook", "claim", "kind", "paper predicts"] + list(frames)
    frame = pd.DataFrame(rows, columns=cols)
    folder = paths.figures_dir(profiles[0])
    folder.mkdir(parents=True, exist_ok=True)  # a profile whose notebooks all failed to start has none yet
    frame.to_csv(folder / "claims_by_model.csv", index=False)
    lines = ["# Claims by model", "", "Each model's verdict and measurement, from its profile's claims table (`"
             + "`, `".join(str(paths.display_path(paths.figures_dir(p) / "claims.md")) for p in profiles)
             + "`, where the statements and notes are). 'not run in this profile' means the notebook or the claim was not "
             "run for that model, never a copied number.", ""]
    for r in kept:
        lines += [f"Column `{r.title()}`: not computed by this run but recorded by a whole run of the profile at commit "
                  f"{r.commit} (`results/{r.profile}/claims.csv`, `make figures PROFILE={r.profile}`)."
                  + (f" **STALE**: {r.why_stale()}; rerun the profile and `snapshot update --with-notebooks {r.profile}`." if r.stale
                     else " The code that computes it is unchanged since."), ""]
    for name, f in frames.items():
        if len(f):
            c = counts(f).reset_index()
            lines += [f"### Verdicts per kind: {name}", ""] + _markdown_table(c, list(c.columns)) + [""]
    lines += ["### Claims", ""] + _markdown_table(frame, cols)
    (folder / "claims_by_model.md").write_text("\n".join(lines) + "\n")
    return frame


def failures(profiles: list[str]) -> list[str]:
    """What went wrong in the profiles' last runs, a line each: notebooks that failed (or never ran)
    and claims whose outcome differs from the profile's expectation, measured against expected."""
    lines = []
    for profile in profiles:
        folder = paths.figures_dir(profile)
        times = folder / "notebook_times.csv"
        if not times.is_file():
            lines.append(f"[{profile}] no run found ({paths.display_path(times)} is missing)")
            continue
        frame = pd.read_csv(times)
        lines += [f"[{profile}] {nb} failed (its executed copy shows where)" for nb in frame.notebook[frame.status != "ok"]]
        for file in sorted((folder / "claims").glob("*.json")):
            for row in json.loads(file.read_text()):
                if row.get("as_expected") == "UNEXPECTED":
                    c = Claim(**{f.name: row[f.name] for f in dataclasses.fields(Claim) if f.name in row})
                    lines.append(f"[{profile}] {c.notebook}: claim {c.claim!r} {mismatch(c)}")
    return lines


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Merge the claims tables of several profiles, a column per model; "
                                                 "or list what failed in their last runs.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--by-model", nargs="+", metavar="PROFILE")
    group.add_argument("--failures", nargs="+", metavar="PROFILE", help="print what failed; exit 1 if anything did")
    parser.add_argument("--recorded", nargs="*", default=[], metavar="PROFILE",
                        help="with --by-model: profiles whose committed claims (results/) add a column, unless run here")
    args = parser.parse_args()
    if args.failures:
        found = failures(args.failures)
        print("\n".join(["make figures FAILED:"] + found) if found else f"every notebook ran and every claim came out "
              f"as expected ({', '.join(args.failures)})")
        sys.exit(1 if found else 0)
    table = by_model(args.by_model, args.recorded)
    print(f"{len(table)} claims x {len(table.columns) - 4} models -> "
          f"{paths.display_path(paths.figures_dir(args.by_model[0]) / 'claims_by_model.md')}")
