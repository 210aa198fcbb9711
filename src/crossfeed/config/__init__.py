"""Experiments as data: YAML configs <-> typed, frozen dataclasses, checked when they load.

:func:`load_config` reads a YAML file; every unknown key, wrong type, unknown registry name or bad
strategy parameter is an error that names the key's path and the closest valid choice, before any
training starts. :func:`config_to_dict` / :func:`config_from_dict` round-trip exactly.
"""

from crossfeed.config._config import (
    GATE_TESTS,
    ExperimentConfig,
    ExpertsConfig,
    FeedbackConfig,
    FieldConfig,
    GateConfig,
    LargeConfig,
    SearchConfig,
    StrategyConfig,
    SuiteConfig,
    config_diff,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from crossfeed.config._rl import RLExperimentConfig, rl_config_from_dict

__all__ = [
    "ExperimentConfig",
    "ExpertsConfig",
    "FeedbackConfig",
    "FieldConfig",
    "GATE_TESTS",
    "GateConfig",
    "LargeConfig",
    "RLExperimentConfig",
    "SearchConfig",
    "StrategyConfig",
    "SuiteConfig",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "rl_config_from_dict",
    "save_config",
]
