"""`.ci/run` times every stage against its own budget (`.ci/budget.csv`): the two name the same stages."""

import re
import subprocess
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_every_ci_stage_has_a_budget_and_every_budget_a_stage():
    staged = re.findall(r'^stage "([^"]+)"', (ROOT / ".ci/run").read_text(), flags=re.M)
    budget = pd.read_csv(ROOT / ".ci/budget.csv")
    assert staged == list(budget.stage)
    assert budget.seconds.sum() <= 75 * 60, "the stages' budgets leave no room under the 75-minute target"


def test_a_stage_over_its_budget_says_so():
    run = (ROOT / ".ci/run").read_text()
    stage = re.search(r"^stage\(\) \{.*?^\}", run, flags=re.M | re.S).group(0)
    script = f'budget=4500; start=$(( $(date +%s) - 1000 )); stage_start=$start\n{stage}\nstage "make check-snapshot"\n' \
             'stage_start=$(date +%s); stage "make check-screen"'
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert "took 1000 s" in out[0] and "its own budget 30 s" in out[0] and "OVER IT" in out[0]
    assert "took 0 s" in out[1] and "OVER IT" not in out[1]
