"""Jobs: the demo, and experiments from YAML configs (``crossfeed run``)."""

from crossfeed.experiments._config import (
    ExperimentConfig,
    ExpertsConfig,
    FeedbackConfig,
    LargeConfig,
    StrategyConfig,
    SuiteConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from crossfeed.experiments._demo import DemoResult, run_demo
from crossfeed.experiments._progress import Progress, SilentProgress
from crossfeed.experiments._runner import ExperimentResult, run_experiment

__all__ = [
    "DemoResult",
    "ExperimentConfig",
    "ExperimentResult",
    "ExpertsConfig",
    "FeedbackConfig",
    "LargeConfig",
    "Progress",
    "SilentProgress",
    "StrategyConfig",
    "SuiteConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "run_demo",
    "run_experiment",
    "save_config",
]
