"""``gate: {compose: 1, compose_method: wemoe}``: each generation merges its fine-tuned experts into
the large model they came from as a weight-ensembling MoE and measures it on every domain."""

import pytest

from crossfeed.cycle._cycle import run_fingerprint
from crossfeed.exceptions import ValidationError
from crossfeed.experiments import config_from_dict, run_experiment

TINY = {
    "name": "wemoe",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 300, "domains": ["default", "shifted", "scaled"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "small"}, "epochs": 6, "lr": 0.005, "patience": None},
    "experts": {"method": "finetune", "finetune_epochs": 6},
    "feedback": {"strategy": "merge", "kwargs": {"method": "ties"}, "epochs": 0},
    "gate": {"compose": 1, "compose_method": "wemoe"},
    "generations": 1,
}


def test_the_weight_ensembled_model_is_measured_every_generation(tmp_path):
    g0, g1 = run_experiment(config_from_dict(TINY), tmp_path).cycles[0].generations
    composed, parent = g1.accuracy["composed"], g0.accuracy["large"]
    assert set(composed) == {"default", "shifted", "scaled"}
    # the merged model carries the experts' task vectors: on the shifted domains it beats the large model it
    # was merged into (generation 0's), which a no-op merge (the base alone) would not
    assert composed["shifted"] + composed["scaled"] > parent["shifted"] + parent["scaled"] + 0.05, (composed, parent)
    assert g1.seconds["compose"] > 0


def test_wemoe_needs_fine_tuned_experts_and_its_default_keeps_fingerprints():
    with pytest.raises(ValidationError, match="wemoe merges fine-tuned copies"):
        config_from_dict({**TINY, "experts": {"method": "distill", "epochs": 1}, "feedback": {"strategy": "multi_teacher_kd"}})
    with pytest.raises(ValidationError, match="compose_method must be 'gated' or 'wemoe'"):
        config_from_dict({**TINY, "gate": {"compose": 1, "compose_method": "ties"}})
    gated = {**TINY, "gate": {"compose": 1}}
    assert "compose_method" not in run_fingerprint(config_from_dict(gated), 0)["config"]["gate"]
    assert run_fingerprint(config_from_dict(TINY), 0)["config"]["gate"]["compose_method"] == "wemoe"


@pytest.mark.parametrize("method", ["gated", "wemoe"])
def test_composing_measures_without_moving_the_runs_own_random_draws(tmp_path, method):
    """The composed model is a measurement: with it or without it, every generation's large model
    and experts get the same weights (dropout masks included)."""
    two = {**TINY, "generations": 2, "large": {**TINY["large"], "module_kwargs": {"size": "small", "dropout": 0.3}},
           "feedback": {**TINY["feedback"], "epochs": 2}}  # the merge then trains, with dropout
    plain = run_experiment(config_from_dict({**two, "gate": {}}), tmp_path / "plain").cycles[0]
    composed = run_experiment(config_from_dict({**two, "gate": {"compose": 1, "compose_method": method}}),
                              tmp_path / method).cycles[0]
    for a, b in zip(plain.generations[1:], composed.generations[1:]):
        assert a.lineage["large"]["sha256"] == b.lineage["large"]["sha256"]
        assert a.lineage["expert_sha256"] == b.lineage["expert_sha256"]
        assert "composed" in b.accuracy and "composed" not in a.accuracy
