"""The one training loop and its hooks."""

from crossfeed.training._hooks import Batch, TrainingHook
from crossfeed.training._loop import (
    TrainConfig,
    TrainResult,
    evaluate_loss,
    resolve_device,
    soft_cross_entropy,
    train,
)

__all__ = [
    "Batch",
    "TrainConfig",
    "TrainResult",
    "TrainingHook",
    "evaluate_loss",
    "resolve_device",
    "soft_cross_entropy",
    "train",
]
