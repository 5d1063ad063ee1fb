"""The notebooks' real-model path, end to end, on a tiny random Llama built from a config.

What it covers: the model and its SAE come from a user registry (`EMGEO_REGISTRY`, kind
`local`), the data from public-format files (system prompts included), and the LLM judge is a
real OpenAI-compatible server on loopback; every notebook of the real path runs, and the
screening command reads the feature sets notebook 02 wrote for the real run.

What it does not cover: it runs in float32 on the CPU with no device map, with the organism's
word-level tokenizer and chat template (which has an end-of-turn token and, like Gemma-2's,
no system role), on random weights. Device placement, real templates and end-of-turn ids are
tested apart (`test_device.py`, `test_templates.py`); bf16 on a GPU, `device_map: auto`, a
real tokenizer and memory are only exercised by `scripts/gpu_smoke.py` on a GPU. Nothing here
is a result.
"""

from pathlib import Path

import papermill as pm
import pytest

from emgeo_utils.models import registry as model_registry

from fake_judge import FakeServer
from tiny_models import build, write_real_data

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV, PLANTED = "EMGEO_TEST_REAL_PATH_KEY", "sk-test-PLANTED-real-path-51c9e0"
NAMES = ["00_model_organism", "02_feature_extraction", "03_geometry_tests", "04_cross_domain", "05_filtering"]
# the tiny model is random: its profile ("tiny") has no expectations file, so every claim is recorded, none checked


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real-path")
    registry = build(folder)
    files = write_real_data(folder)
    server = FakeServer()
    yield folder, registry, files, server
    server.httpd.shutdown()
    server.httpd.server_close()


def parameters(name: str, files: dict, server) -> dict:
    data = {"domains": files["domains"], "harmful": files["harmful"], "helpful": files["helpful"]}
    judge = {"base_url": server.url, "model": "judge", "api_key_env": KEY_ENV, "samples_scale": 1.0, "max_new_tokens": 6}
    common = {"model": "tiny-llama", "profile": "tiny", "workers": 1}
    per = {
        "00_model_organism": dict(data=data, judge=judge, questions_file=files["questions_file"], finetune_domain="code",
                                  conditions=["inducing", "non_inducing", "risky_neutral"], finetune_seeds=[0, 1],
                                  n_finetune_samples=8, primary_step=2),
        "02_feature_extraction": dict(data=data | {"domain": "code"}, n_per_set=8, k=8, n_cards=1, n_contexts=2),
        "03_geometry_tests": dict(data=data | {"domain": "code"}, n_per_set=8, primary_k=8, variant_ks=[8],
                                  variant_contrasts=["mean_diff"], variant_readouts=["assistant_mean", "next_turn"],
                                  n_perm=100, n_perm_grid=20, n_boot=20, n_random=20),
        # 5 new tokens, not 6: answers 00 already had judged would be served from the judge's cache
        "04_cross_domain": dict(data=data, judge=judge | {"max_new_tokens": 5}, questions_file=files["questions_file"], n_per_set=8, primary_k=8,
                                n_perm=100, finetune_seeds=[0], n_finetune_samples=8, primary_step=2,
                                em_measure="ood_misaligned", explored_domains=[]),
        "05_filtering": dict(data=data | {"domain": "code"}, judge=judge, questions_file=files["questions_file"],
                             domain="code", n_samples=16, fractions=[0.5], finetune_seeds=[0, 1], curve_seeds=1, steps=2, k=8,
                             n_per_set=8, variant_readouts=["next_turn"]),
    }[name]
    return common | per


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_a_real_model_path(name, setup, monkeypatch):
    folder, registry, files, server = setup
    monkeypatch.setenv(model_registry.USER_REGISTRY_ENV, str(registry))
    monkeypatch.setenv("EMGEO_FIGURES", str(folder / "figures"))
    monkeypatch.setenv("EMGEO_CACHE", str(folder / "cache"))
    monkeypatch.setenv(KEY_ENV, PLANTED)
    out = folder / f"{name}.ipynb"
    calls_before = server.count
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=parameters(name, files, server),
                        kernel_name="python3", cwd=str(folder), progress_bar=False)
    text = out.read_text()
    assert '"output_type": "error"' not in text
    if name in ("00_model_organism", "04_cross_domain", "05_filtering"):
        assert server.count > calls_before, "the LLM judge was called over HTTP"
    assert (folder / "figures" / "tiny" / "claims" / f"{name}.json").exists()


def test_planted_key_reached_the_judge_and_nothing_else(setup):
    """The judge sent the key to the server; no executed notebook, figure, log or cache file holds it."""
    folder, _, _, server = setup
    assert f"Bearer {PLANTED}" in server.auth
    leaks = [p for p in folder.rglob("*") if p.is_file() and PLANTED.encode() in p.read_bytes()]
    assert not leaks, leaks
    executed = list(folder.glob("*.ipynb"))
    assert len(executed) == len(NAMES)
    for nb in executed:
        text = nb.read_text()
        assert '"output_type": "error"' not in text


def test_screen_reads_a_real_models_feature_sets(setup, monkeypatch):
    """`screen --harmful-features` finds notebook 02's entry for the real run (world `real`)."""
    import json
    import os
    import subprocess
    import sys

    folder, registry, files, _ = setup
    sets = folder / "figures" / "tiny" / "feature_sets.json"
    assert sets.exists(), "notebook 02 ran first in this module"
    assert {e["world"] for e in json.loads(sets.read_text())["entries"]} == {"real"}
    env = os.environ | {model_registry.USER_REGISTRY_ENV: str(registry), "EMGEO_CACHE": str(folder / "cache"),
                        "HF_HUB_OFFLINE": "1"}
    dataset = files["domains"]["code"]["inducing"]
    done = subprocess.run([sys.executable, "-m", "emgeo_utils.filtering.screen", dataset, "--model", "tiny-llama", "--method", "geometry",
                           "--harmful-features", str(sets), "--fraction", "0.25", "--out", str(folder / "screened")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (folder / "screened" / "ranked.csv").exists() and "removed" in done.stdout
