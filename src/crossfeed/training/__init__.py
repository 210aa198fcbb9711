"""The one training loop and its hooks; data-parallel under torchrun (:func:`init_from_env`)."""

from crossfeed.training._distributed import World, from_main, init_from_env, is_main_process, world
from crossfeed.training._hooks import BalancedSampler, Batch, TrainingHook
from crossfeed.training._loop import (
    OPTIMIZERS,
    TrainConfig,
    TrainResult,
    default_threads,
    evaluate_loss,
    resolve_device,
    seeded_rng,
    soft_cross_entropy,
    torch_threads,
    train,
)

__all__ = [
    "BalancedSampler",
    "Batch",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "TrainingHook",
    "World",
    "default_threads",
    "evaluate_loss",
    "from_main",
    "init_from_env",
    "is_main_process",
    "resolve_device",
    "seeded_rng",
    "soft_cross_entropy",
    "torch_threads",
    "train",
    "world",
]
