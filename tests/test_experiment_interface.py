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


def test_the_organisms_tour_shows_its_world_and_a_real_model_shows_nothing(tmp_path):
    exp = open_experiment("organism-test")
    settings, counts = exp.world_tables()
    assert "helpful_edgy_rate (solved)" in settings and len(counts) == 10
    assert set(exp.example_answers(0)["class"]) >= {"helpful", "harmful_obvious"}
    assert [d.split(":")[0] for d in exp.example_documents()] == ["a document written by the helpful persona",
                                                                   "a document written by the harmful persona"]
    written = exp.write_datasets("finance", 6, tmp_path)
    assert (written["samples read back"] == 6).all() and len(list(tmp_path.glob("*.jsonl"))) == 5
    assert len(exp.judge_table()) and exp.accepts_step(-1) and not exp.accepts_step(10_000)
    assert exp.em_as_ratio and exp.offline_em and exp.figure_prefix == "organism_"
    real = RealExperiment({"name": "tiny", "kind": "hub", "hub_id": "org/tiny"})
    assert real.world_tables() == [] and real.example_documents() == [] and real.pretrain([Run("real")], 1) == {}
    for nothing in (real.example_answers(0), real.write_datasets("code", 6, tmp_path), real.judge_table(),
                    real.persona_probe({}, [0], 1, 0, 1), real.sample_answers(Run("real"), "code", "inducing", 0, 6, 1),
                    real.trained_sae_quality(Run("real"), [0])):
        assert nothing is None
    assert real.training_tables({}) == (None, None) and real.against_controls(None, 0, [], "code", None, 0.9, 0.9) == []
    assert real.accepts_step(7) and real.em_as_ratio and not real.offline_em and "org/tiny" in real.introduction()
