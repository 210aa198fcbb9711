"""The one training loop and its hooks."""

from crossfeed.training._hooks import BalancedSampler, Batch, TrainingHook
from crossfeed.training._loop import (
    OPTIMIZERS,
    TrainConfig,
    TrainResult,
    default_threads,
    evaluate_loss,
    resolve_device,
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
    "default_threads",
    "evaluate_loss",
    "resolve_device",
    "soft_cross_entropy",
    "torch_threads",
    "train",
]
