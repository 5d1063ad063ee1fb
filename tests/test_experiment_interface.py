"""What notebooks ask the experiment instead of branching on the model's kind."""

import numpy as np

from emgeo_utils.experiment.base import Run
from emgeo_utils.experiment.loader import open_experiment
from emgeo_utils.experiment.real import RealExperiment


def test_the_organism_answers_for_its_world():
    exp = open_experiment("organism-test")
    assert exp.main_world == "persona" and exp.world_label("control") == "control world"
    assert exp.target_domain("finance") == "finance"
    assert exp.select_domains(["finance", "nowhere", "health"]) == ["finance", "health"]
    assert exp.finetune_batch_size == exp.configs.finetune.batch_size
    assert exp.neuronpedia(0) is None


def test_the_organisms_judge_never_sees_the_filtered_domains_labels():
    exp = open_experiment("organism-test")
    run = Run("persona", 0)
    samples = exp.narrow("finance", "inducing", 4, 0, run) + exp.narrow("finance", "non_inducing", 4, 0, run)
    scores = exp.judge_scores(samples, "finance", "classifier", 0, run)
    assert scores.shape == (8,) and np.isfinite(scores).all()
    assert scores[:4].mean() > scores[4:].mean()  # edgy answers score as more harmful than helpful ones


def test_a_real_model_takes_its_domain_and_sae_from_its_files():
    spec = {"name": "tiny", "kind": "hub", "neuronpedia": "https://np/{layer}", "sae": {"release": "r", "id": "l{layer}"},
            "finetune": {"batch_size": 4}}
    exp = RealExperiment(spec, data={"domain": "code"})
    assert exp.target_domain("finance") == "code" and exp.select_domains(["finance"]) == ["code"]
    assert exp.main_world == "real" and exp.world_label("real") == "tiny"
    assert exp.finetune_batch_size == 4 and exp.neuronpedia(3) == "https://np/3"
    assert exp.sae_identity(Run("real"), 3) == {"release": "r", "id": "l{layer}", "path": None}
