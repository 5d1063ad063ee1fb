"""The screen's methods on SmolLM2-135M: CPU seconds to score 1,000 chat rows with each, one thread.

Each method scores the planted check's 140 rows (`filtering/planted.py`) against the built-in reference
(160 rows), side by side in the same rounds; the per-1,000-row cost counts both, as a run of the screen does
(the reference is scored once per run, so a larger file costs less per row than this). The judge's sentence
embeddings are computed in every round (a fresh cache each time), as a first run on new rows computes them. `geometry` and `persona`
share one forward pass per row in `--method all`; alone, each pays its own. Needs SmolLM2's SAE in the cache
(`make figures` builds it): without it the geometry row says so and the others still run.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from emgeo_utils.core import paths
from emgeo_utils.experiment.loader import open_experiment
from emgeo_utils.filtering import methods, planted
from emgeo_utils.judges import text
from emgeo_utils.models.loading import load_model

from . import common

MODEL = "smollm2-135m"


def run() -> list[common.Row]:
    common.setup(seed=0, threads=1)
    experiment = open_experiment(MODEL)
    run_ = experiment.runs([0], ["real"])[0]
    layer = experiment.layer(-1)
    rows, _ = planted.unlike_rows()
    reference = methods.builtin_reference(experiment)
    probes = experiment.probes(rows)
    chosen = list(methods.METHODS) if experiment.sae_cached(layer) else ["persona", "judge"]
    if "geometry" in chosen:
        model, tokenizer, saes = experiment.load(run_, [layer])
    else:
        (model, tokenizer), saes = load_model(experiment.model_source(run_)), {}
    sae = saes.get(layer)
    def scored(method: str):
        if method == "judge":  # sentence embeddings are cached (in memory and on disk): time them computed
            text._EMBEDDINGS.clear()
            os.environ["EMGEO_CACHE"] = tempfile.mkdtemp(dir=scratch)
        try:
            return methods.score([method], model, tokenizer, sae, layer, "next_turn", "weighted_mean", rows, probes, reference, 32)
        finally:
            os.environ["EMGEO_CACHE"] = cache

    cache, scratch = str(paths.cache_dir()), tempfile.mkdtemp()
    paths_ = {m: (lambda m=m: scored(m)) for m in chosen}
    best, _ = common.side_by_side(paths_, 2)
    shutil.rmtree(scratch, ignore_errors=True)
    out = [common.Row("7 screen", f"{m}: CPU s per 1,000 rows (140 rows + a 160-row reference)", best[m] * 1000 / len(rows), "s")
           for m in chosen]
    if "geometry" not in chosen:
        out.append(common.Row("7 screen", "geometry: CPU s per 1,000 rows", None, "s", missing="no SAE cached",
                              note="make figures trains SmolLM2's SAE"))
    return out

