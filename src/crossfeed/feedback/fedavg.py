"""Federated averaging: every domain trains the global network where its data lives; the server
averages the trained weights, weighted by each client's number of samples.

McMahan, Moore, Ramage, Hampson & Agüera y Arcas (AISTATS 2017), "Communication-Efficient
Learning of Deep Networks from Decentralized Data", arXiv 1602.05629. Clients are the general
domain and every expert's domain (their labelled training splits); only weights travel.
A strategy on the rounds driver (:mod:`crossfeed.feedback._rounds`): ``local_tasks`` hands each
client the global network, ``aggregate`` is :func:`~crossfeed.feedback.average_weights`.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from crossfeed.feedback._base import register
from crossfeed.feedback._merging import average_weights
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
from crossfeed.training import TrainingHook

__all__ = ["FedAvg"]


@register("fedavg")
class FedAvg(RoundsStrategy):
    """FedAvg over the domains as clients.

    Parameters
    ----------
    rounds : int >= 1, communication rounds; each client trains ``settings.epochs`` local
        epochs per round.

    Reports ``rounds`` (per round: clients, failures, seconds, bytes sent) in the feedback report.
    """

    data_free = False  # clients train on their own labels, locally
    params: ClassVar[dict[str, Param]] = {**RoundsStrategy.params}

    def __init__(self, rounds: int = 5) -> None:
        self.rounds = rounds

    def client_hooks(self, global_module: nn.Module) -> list[TrainingHook]:
        """Hooks every client trains with (none for FedAvg; FedProx adds its proximal term)."""
        return []

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        return [LocalTask(name, X, y, weight=len(y), hooks=self.client_hooks(state.module))
                for name, X, y in client_data(state.ctx)]

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        states = [u.state() for u in updates]
        return module_with_state(start, average_weights(states, [u.weight for u in updates]))
