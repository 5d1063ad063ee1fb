"""The notebooks' contract: clean, numbered without gaps, one parameters cell, valid profiles."""

import json
import re
from pathlib import Path

import pytest

from emgeo_utils.notebook import session as notebook
from emgeo_utils.core import paths
from emgeo_utils.report import profiles, run_notebooks

NOTEBOOKS = run_notebooks.notebooks()
PROFILES = sorted(p.name for p in paths.params_dir().iterdir() if p.is_dir())


def test_notebooks_exist_numbered_without_gaps():
    numbers = [int(nb.name[:2]) for nb in NOTEBOOKS]
    assert numbers == list(range(len(numbers))), [nb.name for nb in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", nb.name) for nb in NOTEBOOKS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb: Path):
    cells = json.loads(nb.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{nb.name}: strip outputs"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_contract_cells(nb: Path):
    cells = json.loads(nb.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown", "a notebook opens with its claim, inputs, outputs and timing"
    header = "".join(cells[0]["source"]).lower()
    for word in ("claim", "reads", "writes", "figures", "time"):
        assert word in header, f"{nb.name}: the opening cell should say {word!r}"
    defaults = notebook.parameter_defaults(nb)
    assert {"profile", "seed", "threads"} <= set(defaults)
    assert defaults["profile"] == "default"
    start = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    assert "start(" in "".join(cells[start + 1]["source"]), "the cell after parameters validates them"
    assert "environment_report" in "".join(cells[-2]["source"]), "the last cell but one reports the environment"
    assert "".join(cells[-1]["source"]).startswith("nb.finish()"), "the last cell fails the run on a flipped claim"
    assert "".join(cells[start + 1]["source"]).startswith("import emgeo_utils"), \
        "emgeo_utils is imported first: it pins the numerics before numpy and torch load"


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_name_real_parameters(profile):
    folder = paths.params_dir() / profile
    stems = {nb.stem for nb in NOTEBOOKS}
    for file in folder.glob("*.yaml"):
        assert file.stem in stems | {"profile", "expectations"}, f"params/{profile}/{file.name} names no notebook"
    assert set(profiles.profile_notebooks(profile) or []) <= {nb.stem[:2] for nb in NOTEBOOKS}
    for nb in NOTEBOOKS:
        profiles.profile_parameters(nb, profile)  # raises on unknown names or wrong types


def test_bad_parameters_are_refused(tmp_path):
    nb = NOTEBOOKS[0]
    defaults = notebook.parameter_defaults(nb)
    with pytest.raises(notebook.ParameterError, match="did you mean 'seed'"):
        notebook.check_parameters(nb.stem, {"sed": 1}, source="x.yaml")
    with pytest.raises(notebook.ParameterError, match="must be int"):
        notebook.check_parameters(nb.stem, {"seed": "1"})
    assert notebook.check_parameters(nb.stem, {})["seed"] == defaults["seed"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameter_comments_papermill_can_parse(nb: Path):
    """papermill reads `name = value  # comment` lines; an '=' inside the comment makes it skip the
    line ("Passed unknown parameter") and warn on every injected run."""
    cells = json.loads(nb.read_text())["cells"]
    source = "".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"])
    for line in source.splitlines():
        code, _, comment = line.partition("#")
        assert not (code.strip() and "=" in comment), f"{nb.name}: no '=' in the comment of {line!r}"


def test_no_notebook_parameter_is_an_expectation():
    """Expectations live in params/<profile>/expectations.yaml, never in a notebook's parameters."""
    for nb in NOTEBOOKS:
        assert not [k for k in notebook.parameter_defaults(nb.stem) if k.startswith("expect")], nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_short_and_claims_are_one_call_each(nb: Path):
    """A cell a teacher can read aloud: at most 40 non-blank lines. Claims are declared in the claims file,
    so a notebook only hands statistics to the record: no claim statements, predictions or registrations."""
    cells = [("".join(c["source"])) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    long = [len([x for x in c.splitlines() if x.strip()]) for c in cells]
    assert max(long) <= 40, f"{nb.name}: a code cell of {max(long)} non-blank lines"
    code = "\n".join(cells)
    for word in ("statement=", "predicts=", "registered=", "paper=", "expected="):
        assert word not in code, f"{nb.name}: {word} belongs in notebooks/claims/{nb.stem}.yaml or the profile's expectations"
