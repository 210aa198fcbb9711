"""Experiment configs: YAML <-> typed dataclasses, with errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossfeed.config import RLExperimentConfig
from crossfeed.exceptions import UnknownNameError, ValidationError
from crossfeed.experiments import (
    ExperimentConfig,
    FeedbackConfig,
    StrategyConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_defaults_and_round_trip(tmp_path):
    config = config_from_dict({"name": "x", "seeds": [0, 1], "large": {"lr": "3e-3"},  # YAML 1.1 reads 3e-3 as a string
                               "feedback": {"strategy": "data_feedback", "kwargs": {"threshold": 0.7},
                                            "compare": [{"strategy": "multi_teacher_kd"}]}})
    assert config.large.lr == 0.003 and config.large.module == "cnn1d"
    assert config.feedback == FeedbackConfig(strategy="data_feedback", kwargs={"threshold": 0.7},
                                             compare=[StrategyConfig("multi_teacher_kd", {})])
    assert config_from_dict(config_to_dict(config)) == config
    assert load_config(save_config(config, tmp_path / "c.yaml")) == config
    assert config_from_dict({}) == ExperimentConfig()


@pytest.mark.parametrize("data, error, message", [
    ({"feedbak": {}}, ValidationError, "unknown key 'feedbak'; did you mean 'feedback'"),
    ({"feedback": {"epoch": 3}}, ValidationError, r"config.feedback: unknown key 'epoch'; did you mean 'epochs'"),
    ({"feedback": {"strategy": "multi_teacher"}}, UnknownNameError, "feedback.strategy.*did you mean 'multi_teacher_kd'"),
    ({"feedback": {"compare": [{"strategy": "data_feedbak"}]}}, UnknownNameError, r"compare\[0\].*'data_feedback'"),
    ({"feedback": {"strategy": "data_feedback", "kwargs": {"treshold": 0.5}}}, ValidationError, "feedback.kwargs.*treshold"),
    ({"suite": {"name": "mnist"}}, UnknownNameError, "suite.name.*did you mean 'mnist1d'"),
    ({"large": {"module": "cnn"}}, UnknownNameError, "large.module"),
    ({"generations": "two"}, ValidationError, "config.generations: expected an integer; got 'two'"),
    ({"large": {"lr": "fast"}}, ValidationError, "config.large.lr: expected a number"),
    ({"seeds": 3}, ValidationError, "config.seeds: expected a list"),
    ({"seeds": [0, 0]}, ValidationError, "distinct"),
    ({"generations": 0}, ValidationError, "at least 1"),
    ({"experts": {"method": "copy"}}, ValidationError, "'distill', 'finetune', 'search' or 'forest'"),
    ({"feedback": {"gate": "yes"}}, ValidationError, "expected true or false"),
    ([1, 2], ValidationError, "expected a mapping"),
])
def test_bad_configs_name_the_problem(data, error, message):
    with pytest.raises(error, match=message):
        config_from_dict(data)


def test_bad_files(tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_config(broken)


def test_there_are_examples_for_the_demo_and_every_strategy():
    from crossfeed.feedback import STRATEGIES

    names = {p.stem for p in EXAMPLES}
    assert "demo" in names
    configs = [load_config(p) for p in EXAMPLES]
    covered = {c.feedback.strategy for c in configs if isinstance(c, ExperimentConfig)}
    baselines = {"continued_training", "sequential_kd"}  # controls, measured in benchmarks/feedback.py
    assert set(STRATEGIES.names()) - baselines <= covered


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_loads(path):
    assert isinstance(load_config(path), (ExperimentConfig, RLExperimentConfig))


def test_compared_strategies_need_distinct_names():
    with pytest.raises(ValidationError, match="different strategies"):
        config_from_dict({"feedback": {"strategy": "merge", "compare": [{"strategy": "merge"}]}})


def test_round_one_gate_keys_translate_to_the_gate_section():
    old = config_from_dict({"feedback": {"gate": True, "tolerance": 0.03}})
    assert (old.gate.test, old.gate.margin, old.gate.route, old.gate.holdout, old.gate.advance) == (
        "tolerance", 0.03, False, 0.0, "all")
    assert config_from_dict({"feedback": {"gate": False}}).gate.test == "none"
    default = config_from_dict({})
    assert (default.gate.test, default.gate.route, default.field_data.source) == ("bootstrap", True, "suite")
