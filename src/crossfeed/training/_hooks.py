"""Hooks into the one training loop. Every hook does nothing by default and *returns* values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crossfeed.exceptions import ValidationError


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
    validation : bool, True for the validation batches the loop shows ``base_loss`` (``x``, ``y``
        and ``index`` then refer to ``X_val`` / ``y_val``).
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    weight: torch.Tensor | None = None
    soft: torch.Tensor | None = None
    validation: bool = False


class TrainingHook:
    """Base class of the plug-ins of :func:`crossfeed.training.train`.

    Override only what you need. Hooks return values instead of mutating the loop, so their order
    does not matter:

    - ``setup(module, device)`` -> extra trainable parameters (e.g. a FitNets projection) or None.
    - ``targets(batch, module)`` -> soft targets of shape (batch, n_classes) that replace the hard
      labels in the base cross-entropy, or None. At most one hook may return targets per batch.
    - ``extra_loss(batch, logits, module)`` -> a scalar added to the loss (a KD term, EWC's
      penalty, FedProx's proximal term, DANN's adversarial loss), or None.
    - ``base_loss(batch, logits, module)`` -> per-sample loss of shape (batch,) that replaces the
      loop's cross-entropy (a ratings regression, a contrastive loss), or None. At most one hook
      may return a base loss per batch; ``targets`` and ``batch.weight`` then do not apply (the
      hook owns the base term). With validation data the loop also calls it, in eval mode and
      without gradients, on validation batches (``batch.validation`` True): their mean is the
      ``val_loss`` that is logged and that early stopping watches; None there keeps cross-entropy.
    - ``batches(epoch, n_samples, batch_size, generator)`` -> an iterable of index tensors, one per
      mini-batch (paired or balanced batches across domains), or None for the loop's shuffled
      order. At most one hook may return a sampler.
    - ``on_epoch_end(epoch, logs)`` -> True to stop training early, else None.
    - ``teardown(module)`` -> None; release forward hooks and the like.
    """

    def setup(self, module: nn.Module, device: torch.device) -> Iterable[nn.Parameter] | None:
        return None

    def targets(self, batch: Batch, module: nn.Module) -> torch.Tensor | None:
        return None

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        return None

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        return None

    def batches(self, epoch: int, n_samples: int, batch_size: int,
                generator: torch.Generator) -> Iterable[torch.Tensor] | None:
        return None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        return None

    def teardown(self, module: nn.Module) -> None:
        return None


class BalancedSampler(TrainingHook):
    """Mini-batches with the same number of rows from every group (domain), in random order.

    Each batch holds ``batch_size // n_groups`` rows of every group (the remainder goes to the
    first groups). A group is walked through in a fresh random order and started again when it
    runs out, so small groups are repeated; an epoch ends when the largest group has been seen
    once. Domain adaptation (source and target batches together) and balancing scarce field data
    against plentiful general data use it.

    Parameters
    ----------
    groups : array of shape (n_samples,), the group of each training row (any hashable labels).

    Example
    -------
    >>> import numpy as np, torch
    >>> sampler = BalancedSampler(np.array([0] * 8 + [1] * 2))
    >>> [sorted(int(i >= 8) for i in b) for b in sampler.batches(0, 10, 4, torch.Generator().manual_seed(0))]
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    """

    def __init__(self, groups: Any) -> None:
        labels = list(dict.fromkeys(list(groups)))
        codes = {g: i for i, g in enumerate(labels)}
        self._index = [torch.as_tensor([i for i, g in enumerate(groups) if codes[g] == k]) for k in range(len(labels))]
        self._n = len(groups)

    def batches(self, epoch: int, n_samples: int, batch_size: int,
                generator: torch.Generator) -> Iterator[torch.Tensor]:
        if n_samples != self._n:
            raise ValidationError(f"BalancedSampler got groups for {self._n} rows but the training data has {n_samples}")
        k = len(self._index)
        per = [batch_size // k + (1 if i < batch_size % k else 0) for i in range(k)]
        if min(per) == 0:
            raise ValidationError(f"batch_size {batch_size} is smaller than the number of groups ({k}); raise batch_size")
        orders = [g[torch.randperm(len(g), generator=generator)] for g in self._index]
        cursors = [0] * k
        n_batches = max(-(-len(g) // p) for g, p in zip(self._index, per, strict=True))
        for _ in range(n_batches):
            parts = []
            for i in range(k):
                take, got = [], 0
                while got < per[i]:
                    if cursors[i] == len(orders[i]):
                        orders[i], cursors[i] = self._index[i][torch.randperm(len(self._index[i]), generator=generator)], 0
                    step = min(per[i] - got, len(orders[i]) - cursors[i])
                    take.append(orders[i][cursors[i]: cursors[i] + step])
                    cursors[i] += step
                    got += step
                parts.append(torch.cat(take))
            yield torch.cat(parts)
