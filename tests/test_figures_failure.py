"""`make figures` always ends in the report: a flipped expectation is recorded, the notebook runs to its
end, the tables and the page are written (the page says what failed), and the run exits non-zero
naming the claim, measured against expected."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_flipped_claim_still_writes_the_page_and_fails_naming_it(tmp_path):
    params = tmp_path / "params"
    shutil.copytree(ROOT / "params" / "test", params / "flipped")
    (params / "flipped" / "profile.yaml").write_text(yaml.safe_dump({"notebooks": ["01"]}))
    (params / "flipped" / "expectations.yaml").write_text(  # the identity always holds: this flips
        "01_theory:\n  exact_identity: {expect: false, set: 2026-12-05, registered: before}\n")
    env = os.environ | {"EMGEO_PARAMS": str(params), "EMGEO_FIGURES": str(tmp_path / "figures"),
                        "EMGEO_BUILD": str(tmp_path / "build"), "EMGEO_CACHE": str(ROOT / "build" / "test-cache")}
    done = subprocess.run(["make", "figures", "PROFILE=flipped"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "[flipped] 01_theory: claim 'exact_identity' holds (UNEXPECTED)" in out and "expected does not hold" in out
    executed = (tmp_path / "build" / "flipped" / "01_theory.ipynb").read_text()
    assert "environment_report" in executed and "ClaimMismatch" in executed  # ran to its last cell, failed there
    page = (tmp_path / "figures" / "report" / "index.html").read_text()
    assert "This run FAILED" in page and "exact_identity" in page
    assert (tmp_path / "figures" / "flipped" / "claims_by_model.md").is_file()


@pytest.mark.slow
def test_two_profiles_run_side_by_side_and_each_line_says_its_profile(tmp_path):
    """`make figures` runs its profiles side by side (FIGURES_JOBS): both run, each line of their shared log
    names its profile, and one profile's failure fails the run without stopping the other."""
    params = tmp_path / "params"
    for name in ("good", "flipped"):
        shutil.copytree(ROOT / "params" / "test", params / name)
        (params / name / "profile.yaml").write_text(yaml.safe_dump({"notebooks": ["01"]}))
    (params / "flipped" / "expectations.yaml").write_text(
        "01_theory:\n  exact_identity: {expect: false, set: 2026-12-05, registered: before}\n")
    env = os.environ | {"EMGEO_PARAMS": str(params), "EMGEO_FIGURES": str(tmp_path / "figures"),
                        "EMGEO_BUILD": str(tmp_path / "build"), "EMGEO_CACHE": str(ROOT / "build" / "test-cache")}
    done = subprocess.run(["make", "figures", "PROFILES=good flipped", "FIGURES_JOBS=2"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "[good] 01_theory ok in" in out and "[flipped] 01_theory failed in" in out, out[-3000:]
    assert "[flipped] FAILED notebooks: 01_theory" in out and "[good] FAILED" not in out
    summary = [line for line in out.splitlines() if line.startswith("[good] ") and "exact_identity" in line]
    assert summary and "sanity check passed" in summary[0]  # its claims table, every line tagged
    history = (tmp_path / "build" / "notebook_times_history.csv").read_text().splitlines()
    assert history[0].startswith("run,") and sum(line.startswith("run,") for line in history) == 1  # one header
    assert {line.split(",")[3] for line in history[1:]} == {"good", "flipped"}
    for name in ("good", "flipped"):
        assert (tmp_path / "build" / name / "01_theory.ipynb").is_file()
    assert (tmp_path / "figures" / "report" / "index.html").is_file()
