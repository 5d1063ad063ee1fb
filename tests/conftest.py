import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import emgeo_utils  # noqa: E402,F401  (first: it pins the numerics before numpy and torch load)
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Tests never touch the project's real cache or figures.
os.environ["EMGEO_CACHE"] = str(ROOT / "build" / "test-cache")
os.environ["EMGEO_FIGURES"] = str(ROOT / "build" / "test-figures")
torch.set_num_threads(1)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for tests that count builds and hits."""
    from emgeo_utils.core import cache

    monkeypatch.setenv("EMGEO_CACHE", str(tmp_path / "cache"))
    cache.stats.clear()
    return tmp_path / "cache"
