"""Generated blocks inside hand-written Markdown: a block sits between two HTML comments and is only ever written
by the code that renders it; a test compares each with a fresh rendering."""

from __future__ import annotations

import argparse
import re

from emgeo_utils.core import paths


def block(text: str, start: str, end: str, where: str) -> str:
    """The block from `start` to `end` (both included) in `text`; fails naming `where` when it is missing."""
    match = re.search(re.escape(start) + ".*?" + re.escape(end), text, re.S)
    if not match:
        raise SystemExit(f"{where} has no {start} ... {end} block")
    return match.group(0)


def refresh(name: str, start: str, end: str, fresh: str, check: bool) -> bool:
    """Whether the project file `name`'s block differs from `fresh`; rewrites it unless `check`."""
    file = paths.PROJECT_ROOT / name
    text = file.read_text()
    old = block(text, start, end, name)
    if old != fresh and not check:
        file.write_text(text.replace(old, fresh))
    return old != fresh


def main_for(what: str, module: str, targets: list[tuple[str, str, str, str]], argv: list[str] | None) -> int:
    """A renderer's command line: `--check` exits 1 when a block is stale, else every stale block is rewritten.
    `targets`: (file, start, end, fresh rendering)."""
    parser = argparse.ArgumentParser(description=f"rewrite {what} from the committed results")
    parser.add_argument("--check", action="store_true", help="exit 1 when a block differs from a fresh rendering")
    args = parser.parse_args(argv)
    stale = [name for name, start, end, fresh in targets if refresh(name, start, end, fresh, args.check)]
    if args.check:
        print(f"{what} stale in {', '.join(stale)}: run `python -m {module}`" if stale else f"{what} current")
        return 1 if stale else 0
    print(f"{what} rewritten in {', '.join(stale)}" if stale else f"{what} were current")
    return 0
