"""The strategies' example configs run through the cycle (shrunk to seconds: tiny suite, 1 generation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from crossfeed.experiments import config_from_dict, run_experiment

EXAMPLES = Path(__file__).parents[2] / "examples"
STRATEGY_EXAMPLES = ["dann", "coral", "mmd", "irm", "vrex", "attribution_mask", "maml", "self_supervised",
                     "hierarchical", "feddf", "fedmd", "dp_fedavg"]
# every knob that sets how long a strategy trains, and its shrunk value
SHORT = {"rounds": 1, "pretrain_epochs": 1, "ig_rows": 16, "ig_steps": 4, "anneal_steps": 2, "server_epochs": 1,
         "support_shots": 2, "query_shots": 3}


def shrunk(name: str) -> dict:
    config = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    config["seeds"], config["generations"] = [0], 1
    config["suite"]["kwargs"]["n_per_domain"] = 400 if config["suite"]["name"] == "colored_fashion" else 200
    config["large"].update(epochs=2, patience=None)
    config["experts"].update(epochs=1, finetune_epochs=1)
    feedback = config["feedback"]
    feedback["epochs"] = min(feedback.get("epochs", 2), 2)
    feedback.pop("compare", None)
    feedback.pop("batch_size", None)
    feedback["kwargs"] = {k: SHORT.get(k, v) for k, v in feedback.get("kwargs", {}).items()}
    return config


@pytest.mark.parametrize("name", STRATEGY_EXAMPLES)
def test_the_example_runs_through_the_cycle(name, tmp_path):
    config = config_from_dict(shrunk(name))
    assert config.feedback.strategy == name
    run_experiment(config, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    gen1 = data["seeds"][0]["generations"][1]
    assert set(gen1["accuracy"]["large"]) == set(data["summary"]["large_accuracy"]["gen-0"])
    assert all(0.0 <= a <= 1.0 for a in gen1["accuracy"]["large"].values())
    assert (tmp_path / "seed-0" / "gen-001" / "large" / "model.safetensors").exists()
