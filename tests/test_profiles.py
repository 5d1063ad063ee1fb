"""A profile's parameters are merged and checked in one place (`report.profiles`), and the runner,
the report page and the estimates all read them from there."""

import shutil

import pytest

from emgeo_utils.core import paths
from emgeo_utils.notebook import session as notebook
from emgeo_utils.report import estimates, page, profiles, run_notebooks

NB = "00_model_organism"


@pytest.fixture
def params(tmp_path, monkeypatch):
    """A copy of params/ with a profile `p` whose notebook 00 runs SmolLM2 on fewer samples."""
    folder = tmp_path / "params"
    shutil.copytree(paths.params_dir(), folder)
    (folder / "p").mkdir()
    (folder / "p" / f"{NB}.yaml").write_text("n_finetune_samples: 7\nmodel: smollm2-135m\n")
    monkeypatch.setenv("EMGEO_PARAMS", str(folder))
    return folder


def test_the_three_readers_use_one_function():
    assert page.profile_parameters is estimates.profile_parameters is profiles.profile_parameters
    assert run_notebooks.profile_overrides is profiles.profile_overrides
    assert page.profile_notebooks is run_notebooks.profile_notebooks is profiles.profile_notebooks


def test_runner_page_and_estimates_see_the_same_model(params):
    merged = profiles.profile_parameters(NB, "p")
    defaults = notebook.parameter_defaults(NB)
    assert list(merged) == list(defaults), "every parameter, in the notebook's order"
    assert merged["model"] == "smollm2-135m" and merged["n_finetune_samples"] == 7 and merged["profile"] == "p"
    assert merged["seed"] == defaults["seed"]
    nb = paths.notebooks_dir() / f"{NB}.ipynb"
    assert profiles.profile_parameters(nb, "p") == merged  # a path or a stem
    # the runner injects only what the profile sets, with the merged values
    assert run_notebooks.profile_overrides(nb, "p") == {"n_finetune_samples": 7, "model": "smollm2-135m", "profile": "p"}
    # the page: the models of the notebooks a profile ran
    run = page.ProfileRun.__new__(page.ProfileRun)
    run.profile, run.claims = "p", {NB: []}
    assert run.models() == [merged["model"]]
    run.profile = "default"
    assert run.models() == [defaults["model"]]


def test_estimates_read_the_profiles_parameters(params):
    before = estimates.estimate("gemma-2-2b")
    (params / "gemma-2-2b" / f"{NB}.yaml").write_text(
        (params / "gemma-2-2b" / f"{NB}.yaml").read_text() + "n_finetune_samples: 1\n")
    after = estimates.estimate("gemma-2-2b")
    assert after["notebook 00 (h, est.)"] < before["notebook 00 (h, est.)"]


def test_errors_name_the_file_and_the_field(params):
    (params / "p" / f"{NB}.yaml").write_text("n_finetune_samples: many\n")
    with pytest.raises(notebook.ParameterError, match=rf"params/p/{NB}.yaml: parameter 'n_finetune_samples'"):
        profiles.profile_parameters(NB, "p")
    (params / "p" / f"{NB}.yaml").write_text("n_finetune_sample: 3\n")
    with pytest.raises(notebook.ParameterError, match=rf"params/p/{NB}.yaml: unknown parameter.*did you mean"):
        run_notebooks.profile_overrides(NB, "p")
    (params / "p" / f"{NB}.yaml").write_text("- 1\n")
    with pytest.raises(SystemExit, match=rf"params/p/{NB}.yaml: expected a mapping"):
        profiles.profile_parameters(NB, "p")
    with pytest.raises(SystemExit, match="unknown profile 'nope'"):
        profiles.profile_parameters(NB, "nope")
