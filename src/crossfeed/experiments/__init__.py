"""Jobs: the demo, and experiments from YAML configs (``crossfeed run``)."""

from crossfeed._progress import Progress, SilentProgress
from crossfeed.config import (
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
from crossfeed.cycle import ExperimentResult
from crossfeed.experiments._demo import run_demo
from crossfeed.experiments._rl import run_rl_experiment
from crossfeed.experiments._runner import load_experiment, run_experiment
from crossfeed.report import DemoResult

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
    "load_experiment",
    "run_demo",
    "run_experiment",
    "run_rl_experiment",
    "save_config",
]
