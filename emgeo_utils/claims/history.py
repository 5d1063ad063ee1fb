"""When each claim was declared and first measured, read from git: the only dates here nobody typed.

A claims file (`notebooks/claims/<notebook>.yaml`) is a pre-registration only for the claims committed before
their first result; many were written after. A date typed by hand cannot be checked, the repository's history
can, so every date here comes from it:

- `declared`: the first commit whose claims file holds the claim's id;
- `first_result`: the first commit whose `results/*/claims.csv` (any profile) holds a row for it;
- `preregistered`: the declaring commit is an ancestor of the first result's (commit ancestry, so two commits of
  one day are ordered right), or the claim has no result yet. Git sees commits only: a result looked at but
  never committed before the claim was declared escapes it, so True is needed for pre-registration, not proof;
- `margin_set`: the commit since which the claim's `margin:` has held its present value in the claims file, and
  `margin_post_hoc`: that commit is not an ancestor of the first result's. A margin that names a notebook
  parameter is followed by its name only: the value lives in the notebook.

The table is committed (`notebooks/claims/history.csv`); notebooks read it through `claim_history` and never call git
(CI and users may run without history). `python -m emgeo_utils.claims.history update` writes it, `check` exits 1
naming each row that differs from git.

The table is committed in the same commit as the claims it describes, so it cannot name that commit. The working
tree is therefore read as one pending commit after HEAD: what only it holds is dated today with commit
`uncommitted` (claims files and result tables alike), and ordered as the next commit will be, so `preregistered`
and `margin_post_hoc` already come out as they will after committing. `check` accepts `uncommitted` where git
now names the very commit that committed that row of the table, and nothing else. (Another design, a table that
describes only its parents' commits, would call every new claim "not yet declared" in the commit declaring it.)
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import subprocess
import sys
from pathlib import Path

import yaml

from emgeo_utils.core import paths
from emgeo_utils.core.files import write_text_atomic

CLAIMS = "notebooks/claims/*.yaml"
RESULTS = "results/*/claims.csv"
TABLE = "notebooks/claims/history.csv"
UNCOMMITTED = "uncommitted"
FIELDS = ("declared", "declared_commit", "first_result", "first_result_commit", "preregistered",
          "margin_set", "margin_set_commit", "margin_post_hoc")
COLUMNS = ("notebook", "claim") + FIELDS
FIX = "run `python -m emgeo_utils.claims.history update` and commit notebooks/claims/history.csv"


class HistoryError(RuntimeError):
    """The history cannot be read (no git, a shallow clone) or a working-tree file is malformed."""


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise HistoryError(f"git {args[0]} failed in {root}: {err}") from err
    if done.returncode:
        raise HistoryError(f"git {' '.join(args)} failed in {root}: {done.stderr.decode().strip()}")
    return done.stdout


def history_available(root: Path) -> str | None:
    """None when `root` has its whole history, else why not (the dates would be wrong, not just missing)."""
    try:
        shallow = _git(root, "rev-parse", "--is-shallow-repository").decode().strip()
        _git(root, "rev-parse", "--verify", "HEAD")
    except HistoryError as err:
        return f"no git history: {err}"
    return "a shallow clone: its first commits are missing (fetch with --unshallow)" if shallow == "true" else None


def _versions(root: Path, pathspecs: tuple[str, ...]) -> list[tuple[str, str, dict[str, str]]]:
    """(commit, date, {path: text}) for every commit touching `pathspecs`, oldest first, then the working tree."""
    log = _git(root, "log", "--reverse", "--topo-order", "--name-only", "--format=@%H %cs", "HEAD", "--", *pathspecs)
    commits, touched = [], set()
    for line in log.decode().splitlines():
        if line.startswith("@"):
            commits.append(line[1:].split())
        elif line:
            touched.add(line)
    worktree = {str(p.relative_to(root)): p for spec in pathspecs for p in root.glob(spec)}
    names = sorted(touched | set(worktree))
    # One `git cat-file --batch` for every (commit, path): one process, not one `git show` per file version.
    out = _git(root, "cat-file", "--batch", stdin="".join(f"{c}:{n}\n" for c, _ in commits for n in names).encode())
    versions, at = [], 0
    for commit, date in commits:
        texts = {}
        for name in names:
            header_end = out.index(b"\n", at)
            header = out[at:header_end].split()
            at = header_end + 1
            if header[-1] == b"missing":
                continue
            size = int(header[2])
            texts[name] = out[at:at + size].decode()
            at += size + 1
        versions.append((commit, date, texts))
    versions.append((UNCOMMITTED, datetime.date.today().isoformat(), {n: p.read_text() for n, p in worktree.items()}))
    return versions


def _claims(text: str, name: str, commit: str) -> dict[str, object] | None:
    """Claim id -> margin (None without one); None for a historical version that is not valid YAML."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        if commit == UNCOMMITTED:
            raise HistoryError(f"{name}: not valid YAML ({err}); fix it, then {FIX}") from err
        return None  # history cannot be fixed: the previous version stands until the next valid one
    return {e["id"]: e.get("margin") for e in data.get("claims") or [] if isinstance(e, dict) and "id" in e}


def _result_rows(text: str) -> set[tuple[str, str]]:
    return {(r["notebook"], r["claim"]) for r in csv.DictReader(io.StringIO(text)) if r.get("notebook") and r.get("claim")}


def _ancestry(root: Path):
    """before(a, b): commit a strictly precedes commit b (a is an ancestor of b; the pending commit follows all)."""
    parents = {}
    for line in _git(root, "rev-list", "--parents", "HEAD").decode().splitlines():
        commit, *rest = line.split()
        parents[commit] = rest

    @functools.lru_cache(maxsize=None)
    def ancestors(commit: str) -> frozenset[str]:
        seen, todo = set(), list(parents.get(commit, []))
        while todo:
            c = todo.pop()
            if c not in seen:
                seen.add(c)
                todo.extend(parents.get(c, []))
        return frozenset(seen)

    def before(a: str, b: str | None) -> bool:
        if b is None:  # no result yet: the claim (committed, or pending) comes before any
            return True
        if a == UNCOMMITTED or b == UNCOMMITTED:
            return a != UNCOMMITTED  # a committed claim precedes the pending result; a pending one follows HEAD's
        return a in ancestors(b)

    return before


def _short(commit: str) -> str:
    return commit if commit == UNCOMMITTED else commit[:10]  # ten digits: git's own abbreviation grows with the repository


def compute(root: Path | None = None) -> list[dict[str, str]]:
    """Every claim declared in the working tree, with its dates from git, sorted by notebook then claim."""
    root = Path(root or paths.PROJECT_ROOT)
    why = history_available(root)
    if why:
        raise HistoryError(f"{root} is {why}: the claims' dates come from git")
    declared, first_result, margins = {}, {}, {}
    state: dict[str, dict] = {}
    for commit, date, texts in _versions(root, (CLAIMS, RESULTS)):
        step = (commit, date)
        for name in [n for n in state if n.endswith(".yaml") and n not in texts]:
            del state[name]
        for name, text in texts.items():
            if name.endswith(".yaml"):
                parsed = _claims(text, name, commit)
                state[name] = state.get(name, {}) if parsed is None else parsed
        present = {(Path(n).stem, i): m for n, claims in state.items() for i, m in claims.items()}
        for key, margin in present.items():
            declared.setdefault(key, step)
            if key not in margins or margins[key][0] != margin:
                margins[key] = (margin, step)
        for key in set(margins) - set(present):  # a claim removed and declared again starts its margin afresh
            del margins[key]
        for name, text in texts.items():
            if name.endswith(".csv"):
                for key in _result_rows(text):
                    first_result.setdefault(key, step)
    before = _ancestry(root)
    rows = []
    for key in sorted(present):
        (made, made_on), (result, result_on) = declared[key], first_result.get(key, (None, ""))
        margin, (margin_commit, margin_on) = margins[key]
        has_margin = margin is not None
        rows.append(dict(
            notebook=key[0], claim=key[1], declared=made_on, declared_commit=_short(made),
            first_result=result_on, first_result_commit=_short(result) if result else "",
            preregistered=str(before(made, result)),
            margin_set=margin_on if has_margin else "", margin_set_commit=_short(margin_commit) if has_margin else "",
            margin_post_hoc=str(not before(margin_commit, result)) if has_margin else ""))
    return rows


def render_table(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _read(text: str) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["notebook"], r["claim"]): r for r in csv.DictReader(io.StringIO(text))}


def _row_commits(root: Path) -> dict[tuple[str, str], tuple[str, dict[str, str]]]:
    """Per row of the table at HEAD: the commit since which it has stood so, and the row."""
    since, last = {}, {}
    for commit, _, texts in _versions(root, (TABLE,))[:-1]:
        rows = _read(texts.get(TABLE, ""))
        for key, row in rows.items():
            if last.get(key) != row:
                since[key] = commit
        last = rows
    return {key: (since[key], row) for key, row in last.items()}


def rows_out_of_date(root: Path | None = None) -> list[str]:
    """Each row where `notebooks/claims/history.csv` in `root` and git disagree, in words."""
    root = Path(root or paths.PROJECT_ROOT)
    file = root / TABLE
    committed = _read(file.read_text()) if file.is_file() else {}
    fresh = {(r["notebook"], r["claim"]): r for r in compute(root)}
    row_commits = None
    problems = []
    for key in sorted(set(committed) | set(fresh)):
        have, want = committed.get(key), fresh.get(key)
        if want is None:
            problems.append(f"{TABLE}: {key[0]} {key[1]}: no claims file declares it any more")
            continue
        if have is None:
            problems.append(f"{TABLE}: {key[0]} {key[1]}: missing (declared {want['declared']})")
            continue
        have = dict(have)
        for step in ("declared", "first_result", "margin_set"):
            # The one self-reference: a row written as `uncommitted` and committed in the very commit git now
            # names. Anything else that says `uncommitted` once git names a commit is stale.
            if have[f"{step}_commit"] == UNCOMMITTED and want[f"{step}_commit"] not in ("", UNCOMMITTED):
                row_commits = _row_commits(root) if row_commits is None else row_commits
                since, as_committed = row_commits.get(key, ("", None))
                if as_committed == committed[key] and since.startswith(want[f"{step}_commit"]):
                    have[step], have[f"{step}_commit"] = want[step], want[f"{step}_commit"]
        wrong = [f"{f} {have.get(f)!r}, git says {want[f]!r}" for f in FIELDS if have.get(f) != want[f]]
        if wrong:
            problems.append(f"{TABLE}: {key[0]} {key[1]}: " + "; ".join(wrong))
    return problems


def write_history(root: Path | None = None) -> list[dict[str, str]]:
    root = Path(root or paths.PROJECT_ROOT)
    rows = compute(root)
    write_text_atomic(root / TABLE, render_table(rows))
    _committed.cache_clear()
    return rows


def history_file() -> Path:
    return paths.notebooks_dir() / "claims" / "history.csv"


@functools.lru_cache(maxsize=None)
def _committed(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    return _read(path.read_text()) if path.is_file() else {}


def claim_history(notebook: str, claim: str, path: Path | None = None) -> dict[str, object]:
    """The claim's row of the committed table (no git at run time): dates and commits as text, the two verdicts
    as booleans, None where empty; every field None for a claim the table does not hold."""
    row = _committed(Path(path or history_file())).get((notebook, claim))
    if row is None:
        return dict.fromkeys(FIELDS)
    flags = {"True": True, "False": False}
    return {f: (flags[row[f]] if f in ("preregistered", "margin_post_hoc") and row[f] in flags else row[f] or None)
            for f in FIELDS}


def main(argv: list[str] | None = None) -> int:
    action = (argv if argv is not None else sys.argv[1:]) or ["check"]
    if action[0] not in ("update", "check") or len(action) > 1:
        print("usage: python -m emgeo_utils.claims.history [update|check]", file=sys.stderr)
        return 2
    try:
        if action[0] == "update":
            rows = write_history()
            print(f"{TABLE}: {len(rows)} claims, {sum(r['preregistered'] == 'True' for r in rows)} pre-registered, "
                  f"{sum(r['margin_post_hoc'] == 'True' for r in rows)} of {sum(bool(r['margin_set']) for r in rows)} "
                  "margins post hoc")
            return 0
        problems = rows_out_of_date()
    except HistoryError as err:
        print(err, file=sys.stderr)
        return 1
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} row(s) differ from git: {FIX}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
