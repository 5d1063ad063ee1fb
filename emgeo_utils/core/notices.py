"""Library notices that ask nothing of the reader, kept out of the logs and the executed notebooks.

Real warnings still show: each filter matches one known message exactly.
"""

from __future__ import annotations

import functools
import logging
import os

QUIET = (
    # transformers 5 on models whose config predates `loss_type`: the default causal-LM loss is the right one
    "`loss_type=None` was set in the config but it is unrecognized",
)


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(q in message for q in QUIET)


def quiet_library_notices() -> None:
    """Install the filters on transformers' loggers (idempotent)."""
    for name in ("transformers", "transformers.modeling_utils"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop())


def quiet_progress_bars() -> None:
    """With TQDM_DISABLE=1 (set by `run_notebooks`), also silence tqdm's notebook bars, which ignore
    that variable: in an executed notebook they become pages of half-drawn widgets, while
    `jobs.run_all` already prints a line per finished job. An interactive session keeps its bars."""
    if os.environ.get("TQDM_DISABLE") != "1":
        return
    from tqdm import notebook

    if not getattr(notebook.tqdm, "_emgeo_quiet", False):
        notebook.tqdm.__init__ = functools.partialmethod(notebook.tqdm.__init__, disable=True)
        notebook.tqdm._emgeo_quiet = True


def _short_path(filename: str) -> str:
    """A warning's source file without this machine's folders: `site-packages/scipy/stats/_axis.py`,
    or the file's path inside the project."""
    from emgeo_utils.core import paths

    parts = filename.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker):])
    return paths.display_path(filename) if os.path.isabs(filename) else filename


def warnings_without_paths() -> None:
    """Show library warnings with environment-relative file names: an executed notebook never
    holds an absolute path of the machine that ran it (and a warning never fails a run)."""
    import warnings

    if getattr(warnings.formatwarning, "_emgeo", False):
        return
    original = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        return original(message, category, _short_path(filename), lineno, "")

    formatwarning._emgeo = True
    warnings.formatwarning = formatwarning
