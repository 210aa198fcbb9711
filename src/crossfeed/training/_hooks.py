"""Hooks into the one training loop. Every hook does nothing by default and *returns* values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Batch:
    """One mini-batch as the loop sees it.

    Attributes
    ----------
    x : Tensor of shape (batch, n_features)
    y : Tensor of shape (batch,), class indices (0..n_classes-1)
    index : Tensor of shape (batch,), positions of these samples in the training arrays, so a
        hook can look up precomputed values (a teacher's logits, a domain id) without recomputing.
    weight : Tensor of shape (batch,) or None, sample weights.
    soft : Tensor of shape (batch, n_classes) or None, soft targets given to ``fit``.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    weight: torch.Tensor | None = None
    soft: torch.Tensor | None = None


class TrainingHook:
    """Base class of the plug-ins of :func:`crossfeed.training.train`.

    Override only what you need. Hooks return values instead of mutating the loop, so their order
    does not matter:

    - ``setup(module, device)`` -> extra trainable parameters (e.g. a FitNets projection) or None.
    - ``targets(batch, module)`` -> soft targets of shape (batch, n_classes) that replace the hard
      labels in the base cross-entropy, or None. At most one hook may return targets per batch.
    - ``extra_loss(batch, logits, module)`` -> a scalar added to the loss (a KD term, EWC's
      penalty, FedProx's proximal term, DANN's adversarial loss), or None.
    - ``on_epoch_end(epoch, logs)`` -> True to stop training early, else None.
    - ``teardown(module)`` -> None; release forward hooks and the like.
    """

    def setup(self, module: nn.Module, device: torch.device) -> Iterable[nn.Parameter] | None:
        return None

    def targets(self, batch: Batch, module: nn.Module) -> torch.Tensor | None:
        return None

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        return None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        return None

    def teardown(self, module: nn.Module) -> None:
        return None
