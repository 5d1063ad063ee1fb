"""The jobs layer: one GPU per worker, submitit as the engine across nodes (its local mode here),
and a cache that refuses file systems where its locks are not reliable."""

import shutil
from pathlib import Path

import pytest

from emgeo_utils.core import cache, jobs
from emgeo_utils.organism import configs
from emgeo_utils.organism.evaluate import in_context_probe


def test_each_worker_gets_one_gpu_round_robin():
    assert jobs.gpu_assignment(2, None, 0) == [None, None]
    assert jobs.gpu_assignment(4, None, 4) == ["0", "1", "2", "3"]
    assert jobs.gpu_assignment(3, "2,5", 2) == ["2", "5", "2"]  # the GPUs this process was given


def test_unknown_engine_is_refused(monkeypatch):
    monkeypatch.setenv(jobs.ENGINE_ENV, "ray")
    with pytest.raises(ValueError, match="use local or submitit"):
        jobs.run_all(lambda **_: 0, [{}], 1)


def _forget(kwargs: list[dict]) -> None:
    for kw in kwargs:
        found = cache.lookup("persona-probe", in_context_probe.key(**kw))
        if found:
            shutil.rmtree(found.path)


def test_submitit_local_mode_runs_organism_jobs_with_the_local_engines_numbers(monkeypatch, tmp_path):
    """Two persona-probe jobs of the test organism, through submitit's local executor (separate
    processes), give what the local engine gives, and land in the shared cache."""
    pytest.importorskip("submitit")
    cfg = configs.organism_configs("organism-test")
    lm = configs.organism_lm(cfg, seed=0)
    kwargs = [dict(lm=lm, world=cfg.world, context=c, n_turns=1, n_trials=2, seed=11) for c in ("helpful", "coupled")]
    monkeypatch.setenv("EMGEO_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("EMGEO_SUBMITIT_CLUSTER", "local")
    monkeypatch.setenv("EMGEO_SUBMITIT_PARAMETERS", '{"timeout_min": 10}')
    _forget(kwargs)  # the engine must do the work
    remote = jobs.run_all(in_context_probe, kwargs, engine="submitit")
    assert all(in_context_probe.is_cached(**kw) for kw in kwargs)
    assert list((tmp_path / "build" / "submitit").iterdir()), "submitit wrote its job folders"
    _forget(kwargs)
    assert jobs.run_all(in_context_probe, kwargs, workers=1, engine="local") == remote


def test_the_cache_refuses_a_network_file_system(fresh_cache, monkeypatch):
    monkeypatch.setattr(cache, "filesystem_type", lambda path: "nfs4")
    cache.check_location.cache_clear()

    @cache.result("location-test")
    def value(n: int) -> int:
        return n

    with pytest.raises(cache.CacheLocationError, match="nfs4 file system"):
        value(1)
    monkeypatch.setenv(cache.NETWORK_OK_ENV, "1")
    cache.check_location.cache_clear()
    assert value(1) == 1
    cache.check_location.cache_clear()


def test_filesystem_type_reads_the_longest_mount():
    mounts = "rootfs / ext4 rw 0 0\nserver:/export /shared nfs4 rw 0 0\ntmpfs /shared/tmp tmpfs rw 0 0\n"
    assert cache.filesystem_type(Path("/shared/cache/emgeo"), mounts) == "nfs4"
    assert cache.filesystem_type(Path("/shared/tmp/x"), mounts) == "tmpfs"
    assert cache.filesystem_type(Path("/sharedother/x"), mounts) == "ext4"  # a prefix of the name is not a mount
    assert cache.filesystem_type(Path("/proc"), "") == "unknown"


def test_side_by_side_jobs_print_one_line_each_with_a_count(capsys, fresh_cache):
    from emgeo_utils.theory import toy

    import dataclasses

    config = dataclasses.asdict(toy.ToyConfig(n_features=6, dim=3, steps=20, batch=16))
    kwargs = [dict(config=config, seed=s) for s in (1, 2)]
    jobs.run_all(toy.train_toy, kwargs, workers=2, desc="toys")
    out = capsys.readouterr().out
    assert "toys: 1/2 done" in out and "toys: 2/2 done" in out and "about" in out


def test_a_job_beside_is_built_in_the_same_pool_and_gives_the_numbers_it_gives_alone(capsys, fresh_cache):
    """What a later notebook reads can be built beside this notebook's jobs; the artifact is the one a run of
    its own builds (single-threaded, seeded jobs), and only `fn`'s results come back."""
    from emgeo_utils.theory import toy

    import dataclasses

    config = dataclasses.asdict(toy.ToyConfig(n_features=6, dim=3, steps=20, batch=16))
    out = jobs.run_all(toy.train_toy, [dict(config=config, seed=1), dict(config=config, seed=2)], workers=2, desc="toys",
                       beside=[(toy.train_toy, dict(config=config, seed=3))])
    assert len(out) == 2 and "toys (and 1 job(s) for a later notebook): 3/3 done" in capsys.readouterr().out
    assert toy.train_toy.is_cached(config=config, seed=3)

    def files(artifact):
        return {p.name: p.read_bytes() for p in sorted(artifact.path.iterdir()) if p.is_file() and p.name != "meta.json"}

    beside = files(toy.train_toy(config=config, seed=3))
    shutil.rmtree(fresh_cache)
    alone = files(jobs.run_all(toy.train_toy, [dict(config=config, seed=3)], workers=1)[0])
    assert beside and alone == beside


def test_progress_of_a_long_list_prints_about_ten_lines(capsys):
    progress = jobs.Progress("probe", 72)
    for _ in range(72):
        progress.update()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("probe: 1/72 done") and lines[-1].startswith("probe: 72/72 done")
    assert 8 <= len(lines) <= 12, lines
