"""Federated averaging: every domain trains the global network where its data lives; the server
averages the trained weights, weighted by each client's number of samples.

McMahan, Moore, Ramage, Hampson & Agüera y Arcas (AISTATS 2017), "Communication-Efficient
Learning of Deep Networks from Decentralized Data", arXiv 1602.05629. Clients are the general
domain and every expert's domain (their labelled training splits); only weights travel.
A strategy on the rounds driver (:mod:`crossfeed.feedback._rounds`): ``local_tasks`` hands each
client the global network, ``aggregate`` is :func:`~crossfeed.feedback.average_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
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
    fraction : float in (0, 1], the share of the clients that train each round (McMahan et al.'s
        C): ``max(1, round(fraction * n))`` clients drawn without replacement, seeded by the step's
        seed and the round, the same on every engine. 1 (default): every client, every round.

    Reports ``rounds`` (per round: clients, failures, seconds, bytes sent) in the feedback report.
    """

    data_free = False  # clients train on their own labels, locally
    params: ClassVar[dict[str, Param]] = {
        **RoundsStrategy.params,
        "fraction": Param(float, low=0.0, high=1.0, low_open=True, help="share of the clients sampled each round"),
    }

    def __init__(self, rounds: int = 5, fraction: float = 1.0) -> None:
        self.rounds = rounds
        self.fraction = fraction

    def sampled(self, r: int, seed: int, clients: Sequence[Any]) -> list[Any]:
        """Round ``r``'s clients: all of them, or ``max(1, round(fraction * n))`` drawn without
        replacement from ``seed`` and ``r`` (kept in their given order).

        Example
        -------
        >>> FedAvg(fraction=0.5).sampled(1, 0, ["a", "b", "c", "d"])
        ['b', 'c']
        >>> FedAvg().sampled(1, 0, ["a", "b"])
        ['a', 'b']
        """
        if self.fraction >= 1.0:
            return list(clients)
        k = max(1, int(round(self.fraction * len(clients))))
        chosen = np.random.default_rng([int(seed), int(r), 7]).choice(len(clients), size=k, replace=False)
        return [clients[i] for i in sorted(chosen)]

    def client_hooks(self, global_module: nn.Module) -> list[TrainingHook]:
        """Hooks every client trains with (none for FedAvg; FedProx adds its proximal term)."""
        return []

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        return [LocalTask(name, X, y, weight=len(y), hooks=self.client_hooks(state.module))
                for name, X, y in self.sampled(round, state.ctx.settings.seed, client_data(state.ctx))]

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        states = [u.state() for u in updates]
        return module_with_state(start, average_weights(states, [u.weight for u in updates]))
