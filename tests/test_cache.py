import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emgeo_utils.core import cache

ROOT = Path(__file__).resolve().parents[1]


@cache.artifact("demo")
def make_numbers(n: int, scale: float = 1.0, *, out: Path) -> dict:
    (out / "numbers.json").write_text(json.dumps([i * scale for i in range(n)]))
    return {"total": sum(i * scale for i in range(n))}


@cache.result("demo-result")
def add(a: int, b: int) -> dict:
    return {"sum": a + b}


def test_key_changes_with_every_input(fresh_cache):
    base = make_numbers.key(n=3)
    assert make_numbers.key(n=3, scale=1.0) == base  # defaults are part of the key
    assert make_numbers.key(n=4) != base
    assert make_numbers.key(n=3, scale=2.0) != base


def test_key_follows_upstream_artifacts(fresh_cache):
    a, b = make_numbers(n=3), make_numbers(n=4)
    assert cache.hash_json({"x": a}) != cache.hash_json({"x": b})


def test_key_includes_source_code(fresh_cache, monkeypatch):
    assert cache.code_hash("emgeo_utils.core.cache") != cache.code_hash("emgeo_utils.claims.record")
    base = make_numbers.key(n=3)
    # the source of a module that `notebook.session` imports (claims.record) changes: its hash and keys change
    real_read, before = Path.read_text, cache.code_hash("emgeo_utils.notebook.session")

    def edited(path, *args, **kwargs):
        text = real_read(path, *args, **kwargs)
        return text + "\n# edited\n" if Path(path).name in ("record.py", "test_cache.py") else text

    monkeypatch.setattr(Path, "read_text", edited)
    cache.code_hash.cache_clear()
    try:
        assert cache.code_hash("emgeo_utils.notebook.session") != before
        assert make_numbers.key(n=3) != base
    finally:
        monkeypatch.undo()
        cache.code_hash.cache_clear()


def test_build_once_then_hit(fresh_cache):
    first = make_numbers(n=5)
    again = make_numbers(n=5)
    assert first == again
    assert cache.stats["build:demo"] == 1 and cache.stats["hit:demo"] == 1
    assert first.summary == {"total": 10.0}
    meta = first.meta
    assert meta["inputs"] == {"n": 5, "scale": 1.0} and meta["code_hash"]
    assert json.loads((first.path / "numbers.json").read_text()) == [0, 1, 2, 3, 4]


def test_result_cache(fresh_cache):
    assert add(a=1, b=2) == {"sum": 3}
    assert add(1, 2) == {"sum": 3}
    assert cache.stats["build:demo-result"] == 1


def test_paths_are_refused_as_inputs(fresh_cache):
    with pytest.raises(TypeError, match="file path"):
        cache.hash_json({"p": Path("x")})


def test_failed_build_leaves_nothing(fresh_cache):
    @cache.artifact("broken")
    def broken(*, out: Path) -> None:
        (out / "half.bin").write_bytes(b"123")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        broken()
    assert not list((fresh_cache / "broken").glob("*/meta.json"))
    assert not list((fresh_cache / "broken").glob(".tmp-*"))


MODULE = """
import json
from pathlib import Path
from emgeo_utils.core import cache

@cache.artifact("killed")
def slow(n: int, *, out: Path):
    (out / "data.json").write_text(json.dumps(list(range(n))))
"""

SCRIPT = """
import sys
sys.path[:0] = [{root!r}, {here!r}]
import killdemo
killdemo.slow(n=int(sys.argv[1]))
"""


def test_killed_write_leaves_no_partial_entry(fresh_cache, tmp_path, monkeypatch):
    """A real process killed after writing its temporary folder, before the rename."""
    (tmp_path / "killdemo.py").write_text(MODULE)
    script = tmp_path / "writer.py"
    script.write_text(SCRIPT.format(root=str(ROOT), here=str(tmp_path)))
    env = dict(os.environ, EMGEO_CACHE=str(fresh_cache))
    complete = subprocess.run([sys.executable, str(script), "3"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert complete.returncode == 0, complete.stderr
    proc = subprocess.Popen([sys.executable, str(script), "7"], env=dict(env, **{cache.PAUSE_ENV: "60"}))
    kind_dir = fresh_cache / "killed"
    deadline = time.time() + 60
    while time.time() < deadline and not list(kind_dir.glob(".tmp-*/meta.json")):
        time.sleep(0.05)
    assert list(kind_dir.glob(".tmp-*/meta.json")), "the temporary folder should be complete when the kill lands"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(kind_dir.glob(".tmp-*")), "SIGKILL leaves the temporary folder behind"

    # The next run: the complete entry is a hit, the killed one is rebuilt, never read half-written.
    monkeypatch.syspath_prepend(str(tmp_path))
    import killdemo

    cache.stats.clear()
    assert json.loads((killdemo.slow(n=3).path / "data.json").read_text()) == [0, 1, 2]
    rebuilt = killdemo.slow(n=7)
    assert json.loads((rebuilt.path / "data.json").read_text()) == list(range(7))
    assert cache.stats["hit:killed"] == 1 and cache.stats["build:killed"] == 1
    assert not list(kind_dir.glob(".tmp-*")), "the dead writer's temporary folder is swept"
