"""Reptile: a meta-learned initialisation of the large model over the domains as tasks.

Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms", arXiv 1803.02999.
Each round, every domain adapts a copy of the current weights for ``settings.epochs`` epochs of
its labelled training data; the new weights move a step towards the mean of the adapted ones:
``theta <- theta + step_size · (mean_k theta_k - theta)``. The result is a network that adapts
to a domain in few steps (fine-tune it with :func:`crossfeed.spawn.finetune`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import register
from crossfeed.feedback._params import Param
from crossfeed.feedback._rounds import (
    Failure,
    LocalTask,
    LocalUpdate,
    RoundsStrategy,
    RoundState,
    client_data,
    module_with_state,
)

__all__ = ["Reptile", "reptile_update"]


def reptile_update(start: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]],
                   step_size: float) -> dict[str, torch.Tensor]:
    """``start + step_size · (mean(adapted) - start)`` for floating entries; others copied from ``start``.

    Example
    -------
    >>> reptile_update({"w": torch.tensor([0.0])}, [{"w": torch.tensor([2.0])}, {"w": torch.tensor([4.0])}], 0.5)["w"]
    tensor([1.5000])
    """
    if not adapted:
        raise ValidationError("reptile_update needs at least one adapted state")
    out = {}
    for key, value in start.items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        mean = torch.stack([a[key].to(value.dtype) for a in adapted]).mean(dim=0)
        out[key] = value + step_size * (mean - value)
    return out


@register("reptile")
class Reptile(RoundsStrategy):
    """Reptile over the general domain and every expert's domain.

    Parameters
    ----------
    rounds : int >= 1, meta-iterations.
    step_size : float in (0, 1], the outer step (1: jump to the mean of the adapted weights).
    """

    data_free = False  # each task adapts on its domain's labels
    params: ClassVar[dict[str, Param]] = {
        **RoundsStrategy.params,
        "step_size": Param(float, low=0.0, high=1.0, low_open=True, help="outer (meta) step"),
    }

    def __init__(self, rounds: int = 5, step_size: float = 0.5) -> None:
        self.rounds = rounds
        self.step_size = step_size

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        return [LocalTask(name, X, y) for name, X, y in client_data(state.ctx)]

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        return module_with_state(start, reptile_update(start.state_dict(), [u.state() for u in updates],
                                                       float(self.step_size)))
