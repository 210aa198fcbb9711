"""The rounds driver: strategies with an outer loop (federated averaging, FedProx, Reptile).

A :class:`RoundsStrategy` describes one round in two hooks, the way Flower's ``Strategy`` does
(``configure_fit`` / ``aggregate_fit``):

``local_tasks(round, state) -> list[LocalTask]``
    What each client (a domain, where its data lives) trains this round: its data, the network
    it starts from (default: the current global network ``state.module``), hooks (FedProx's
    proximal term) and settings. An empty list ends training early.
``aggregate(round, start, updates, failures) -> nn.Module | None``
    The next global network from the clients' trained copies. ``start`` is the global network
    the round began from; ``updates`` are the tasks that finished with finite weights;
    ``failures`` the ones that raised or returned NaN / inf weights (dropped and reported).
    Returning None keeps ``start`` (a round with no usable update changes nothing).

:func:`run_rounds` runs them: every task trains a private copy through the one training loop;
only trained weights reach ``aggregate`` (raw data stays inside its task). The log of every round
(clients, failures, seconds, bytes a client would send) lands in the feedback report.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import FeedbackContext, FeedbackStrategy, TrainSettings
from crossfeed.feedback._params import Param
from crossfeed.training import TrainingHook, train

__all__ = ["Failure", "LocalTask", "LocalUpdate", "RoundLog", "RoundState", "RoundsStrategy", "run_rounds"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalTask:
    """One client's training in one round.

    Attributes
    ----------
    client : name of the client (a domain).
    X : array of shape (n_samples, n_features), the client's data; never leaves the task.
    y : array of shape (n_samples,), labels in the large model's classes.
    weight : this client's weight in the aggregation (FedAvg: its number of samples).
    start : the network to train from (None: the round's global network).
    hooks : extra training hooks (e.g. a proximal term), fresh per task.
    settings : overrides of the step's settings for this task (e.g. fewer local epochs).
    """

    client: str
    X: np.ndarray
    y: np.ndarray
    weight: float = 1.0
    start: nn.Module | None = None
    hooks: Sequence[TrainingHook] = ()
    settings: TrainSettings | None = None


@dataclass
class LocalUpdate:
    """A finished task: the client's trained network and what it cost."""

    client: str
    module: nn.Module
    weight: float
    n_samples: int
    seconds: float
    bytes_sent: int

    def state(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()


@dataclass(frozen=True)
class Failure:
    """A task that produced no usable update, and why."""

    client: str
    reason: str


@dataclass
class RoundState:
    """What ``local_tasks`` sees: the context, the current global network and the rounds so far."""

    ctx: FeedbackContext
    module: nn.Module
    history: list[RoundLog] = field(default_factory=list)


@dataclass(frozen=True)
class RoundLog:
    """One round as the report shows it."""

    round: int
    clients: tuple[str, ...]
    failures: tuple[Failure, ...]
    kept_previous: bool
    seconds: float
    bytes_sent: int


class RoundsStrategy(FeedbackStrategy):
    """Base class of strategies with rounds; subclasses implement ``local_tasks`` and ``aggregate``.

    ``rounds`` (a declared parameter of every subclass) is the number of rounds; each task trains
    ``settings.epochs`` local epochs unless it overrides them.
    """

    params: ClassVar[dict[str, Param]] = {"rounds": Param(int, low=1, help="outer rounds")}

    def __init__(self, rounds: int = 5) -> None:
        self.rounds = rounds

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        raise NotImplementedError

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        raise NotImplementedError


def run_rounds(strategy: RoundsStrategy, ctx: FeedbackContext, start: nn.Module) -> tuple[nn.Module, list[RoundLog]]:
    """Run ``strategy.rounds`` rounds from a copy of ``start``; return the final network and the log."""
    state = RoundState(ctx, copy.deepcopy(start).cpu())
    for r in range(1, strategy.rounds + 1):
        t0 = time.perf_counter()
        tasks = strategy.local_tasks(r, state)
        if not tasks:
            logger.info("round %d: no tasks; stopping", r)
            break
        updates, failures = [], []
        for i, task in enumerate(tasks):
            try:
                updates.append(_run_task(task, state.module, ctx, seed_offset=1000 * r + i))
            except Exception as exc:  # failure is part of the contract: dropped and reported
                logger.warning("round %d: client %r failed: %s", r, task.client, exc)
                failures.append(Failure(task.client, f"{type(exc).__name__}: {exc}"))
                continue
            if not _finite(updates[-1].module):
                failures.append(Failure(task.client, "non-finite weights (NaN or inf)"))
                updates.pop()
        new = strategy.aggregate(r, state.module, updates, failures) if updates else None
        if new is not None and not _finite(new):
            raise ValidationError(f"{strategy.name}: aggregate returned non-finite weights in round {r}")
        kept = new is None
        if not kept:
            state.module = new.cpu()
        state.history.append(RoundLog(r, tuple(u.client for u in updates), tuple(failures), kept,
                                      time.perf_counter() - t0, sum(u.bytes_sent for u in updates)))
    return state.module, state.history


def _run_task(task: LocalTask, global_module: nn.Module, ctx: FeedbackContext, seed_offset: int) -> LocalUpdate:
    settings = task.settings or ctx.settings
    classes = ctx.classes
    y = np.asarray(task.y)
    unknown = np.setdiff1d(y, classes)
    if len(unknown):
        raise ValidationError(f"client {task.client!r} holds labels {unknown.tolist()} the large model does not predict")
    module = copy.deepcopy(task.start if task.start is not None else global_module)
    t0 = time.perf_counter()
    if settings.epochs > 0:
        config = settings.train_config(seed_offset)
        X = np.asarray(task.X, dtype=np.float32).reshape(len(task.X), -1)
        train(module, X, np.searchsorted(classes, y), config=config, hooks=list(task.hooks))
    module = module.cpu().eval()
    sent = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return LocalUpdate(task.client, module, float(task.weight), len(y), time.perf_counter() - t0, sent)


def _finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())


def module_with_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``template`` carrying ``state``."""
    out = copy.deepcopy(template)
    out.load_state_dict(state)
    return out


def client_data(ctx: FeedbackContext, names: Sequence[str] | None = None) -> list[tuple[str, np.ndarray, Any]]:
    """``(domain, X_train, y_train)`` of the general domain and every expert's domain (the clients)."""
    chosen = list(names) if names is not None else [ctx.general, *[n for n in ctx.experts if n != ctx.general]]
    return [(n, ctx.suite[n].X_train, ctx.suite[n].y_train) for n in chosen]
