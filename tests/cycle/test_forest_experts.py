"""``experts.method: forest``: every domain's expert is a meta decision forest grown on the other
domains and adapted to its own; saved as safetensors + JSON, it serves, teaches and reloads."""

import json

import numpy as np
import pytest

from crossfeed.cycle._cycle import run_fingerprint
from crossfeed.data import load_suite
from crossfeed.exceptions import ValidationError
from crossfeed.experiments import config_from_dict, run_experiment
from crossfeed.models import MetaForest, load_model

FOREST = {"n_estimators": 20, "n_fresh": 5, "meta_shots": [5], "prior_strengths": [1.0, 10.0],
          "mixtures": [0.0, 0.5]}
TINY = {
    "name": "forest",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 300, "domains": ["default", "noisy", "shifted"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "small"}, "epochs": 3, "lr": 0.005, "patience": None},
    "experts": {"method": "forest", "forest": FOREST},
    "feedback": {"strategy": "multi_teacher_kd", "epochs": 2},
    "generations": 1,
}


def test_forest_experts_are_grown_on_the_other_domains_saved_without_pickle_and_teach(tmp_path):
    result = run_experiment(config_from_dict(TINY), tmp_path)
    gen = result.cycles[0].generations[1]
    suite = load_suite("mnist1d", seed=0, **TINY["suite"]["kwargs"])
    for domain in ("noisy", "shifted"):
        folder = tmp_path / "seed-0" / "gen-001" / "experts" / domain
        assert json.loads((folder / "config.json").read_text())["format"] == "crossfeed.meta_forest"
        expert = load_model(folder)
        assert isinstance(expert, MetaForest) and expert.adapted_with_["n_samples"] > 0
        # the reloaded forest scores what the cycle measured for it
        d = suite[domain]
        assert np.isclose(expert.score(d.X_test.reshape(len(d.X_test), -1), d.y_test),
                          gen.accuracy[f"expert:{domain}"][domain])
    # the forests taught the large model through their probabilities: the feedback report measured them
    assert gen.feedback.strategy == "multi_teacher_kd"
    assert set(gen.feedback.domains) == {"default", "noisy", "shifted"}
    assert gen.lineage["expert_sha256"]["noisy"] != gen.lineage["expert_sha256"]["shifted"]
    # a second run resumes from the checkpoints (the forests reload) and changes nothing
    again = run_experiment(config_from_dict(TINY), tmp_path)
    assert again.cycles[0].generations[1].accuracy == gen.accuracy


def test_forest_settings_and_incompatible_options_are_refused_when_the_config_loads():
    def with_(**changes):
        data = json.loads(json.dumps(TINY))
        for path, value in changes.items():
            section, key = path.split("__")
            data[section][key] = value
        return data

    with pytest.raises(ValidationError, match="unknown MetaForest parameters \\['trees'\\]"):
        config_from_dict(with_(experts__forest={"trees": 3}))
    with pytest.raises(ValidationError, match="mixtures must lie in \\[0, 1\\]"):
        config_from_dict(with_(experts__forest={"mixtures": [2.0]}))
    with pytest.raises(ValidationError, match="random_state comes from the run's seed"):
        config_from_dict(with_(experts__forest={"random_state": 3}))
    with pytest.raises(ValidationError, match="experts.forest: .*max_features"):
        config_from_dict(with_(experts__forest={"max_features": "nope"}))
    with pytest.raises(ValidationError, match="experts.forest: "):
        config_from_dict(with_(experts__forest={"prior_strengths": 5}))
    with pytest.raises(ValidationError, match="use client_models: large"):
        config_from_dict(with_(feedback__strategy="feddf", feedback__kwargs={"client_models": "experts"}))
    with pytest.raises(ValidationError, match="cannot be composed"):
        config_from_dict({**with_(), "gate": {"compose": 1}})
    with pytest.raises(ValidationError, match="'transfer_init' reads its experts' networks"):
        config_from_dict(with_(feedback__strategy="transfer_init", feedback__kwargs={"layers": ["features"]}))
    distill = {**TINY, "experts": {"method": "distill", "epochs": 2}}
    assert "forest" not in run_fingerprint(config_from_dict(distill), 0)["config"]["experts"]
    assert run_fingerprint(config_from_dict(TINY), 0)["config"]["experts"]["forest"]["n_estimators"] == 20
