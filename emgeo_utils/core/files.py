"""The one atomic file writer: a reader sees the old file or the new one, never half of it."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `.<stem>.<pid>.<thread>.tmp` beside `path`, flush it to disk, then rename it
    into place.

    A writer killed mid-write leaves only its temporary file; the pid in the name lets a later
    run tell whether its writer is still alive (see `cache.pid_alive`); the thread id keeps two
    threads of one process off each other's file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path
