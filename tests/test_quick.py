"""`make quick`: the runner's lanes (notebooks side by side) and the smoke banner of the page it writes."""

import threading
import time

import pytest

from emgeo_utils.core import paths
from emgeo_utils.report import page, profiles, run_notebooks


def test_the_test_and_quick_profiles_are_smoke_runs_and_their_page_says_so():
    assert profiles.is_smoke("test") and profiles.is_smoke("quick") and not profiles.is_smoke("default")
    assert "SMOKE RUN, NOT EVIDENCE" in page.smoke_banner(["quick"])
    assert page.smoke_banner(["default", "smollm2-135m"]) == ""


def test_lanes_run_notebooks_side_by_side_and_record_every_one(monkeypatch, tmp_path):
    """Two lanes: two notebooks are in flight at once, a failing one is named, every time row is kept."""
    monkeypatch.setenv("EMGEO_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("EMGEO_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("EMGEO_CACHE", str(tmp_path / "cache"))
    import papermill

    running, most, sockets = set(), [], set()
    lock = threading.Lock()

    def fake_execute(source, output, **kwargs):
        sockets.add(kwargs["config"].KernelManager.ip)  # kernels started at once must not share socket names
        with lock:
            running.add(source)
            most.append(len(running))
        time.sleep(0.3)
        with lock:
            running.discard(source)
        if "03_" in source:
            raise RuntimeError("cell 4 failed")
        (tmp_path / "build" / "test").mkdir(parents=True, exist_ok=True)
        output_path = tmp_path / "build" / "test" / source.rsplit("/", 1)[-1]
        output_path.write_text('{"cells": [], "metadata": {}}')

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(run_notebooks.claims_table, "gather", lambda profile: __import__("pandas").DataFrame())
    monkeypatch.setattr(run_notebooks.recorded, "stamp", lambda *a: None)
    status = run_notebooks.run("test", ["01", "02", "03", "04"], False, None, lanes=2)
    assert status == 1  # 03 failed, and the run says so
    assert max(most) == 2 and len(sockets) == 4
    times = (tmp_path / "figures" / "test" / "notebook_times.csv").read_text().splitlines()
    assert [line.split(",")[2][:2] for line in times[1:]] == ["01", "02", "03", "04"]
    assert ",failed," in times[3]


def test_a_profile_takes_its_base_and_sets_every_notebook_s_parameter(tmp_path, monkeypatch):
    """quick = test's files, then `every` (workers: 1 where a notebook has workers), then its own files."""
    import shutil

    import yaml

    params = tmp_path / "params"
    shutil.copytree(paths.params_dir() / "test", params / "test")
    (params / "child").mkdir()
    (params / "child" / "profile.yaml").write_text(yaml.safe_dump({"base": "test", "every": {"workers": 1, "seed": 3}}))
    (params / "child" / "03_geometry_tests.yaml").write_text(yaml.safe_dump({"n_perm": 7}))
    monkeypatch.setenv("EMGEO_PARAMS", str(params))
    base = profiles.profile_parameters("03_geometry_tests", "test")
    child = profiles.profile_parameters("03_geometry_tests", "child")
    assert child["n_perm"] == 7 and child["workers"] == 1 and child["seed"] == 3 and child["profile"] == "child"
    assert child["n_per_set"] == base["n_per_set"] == 8  # from the base's file
    assert profiles.profile_parameters("01_theory", "child")["workers"] == 1
