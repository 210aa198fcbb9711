"""The rounds driver: strategies with an outer loop (federated averaging, FedProx, Reptile).

A :class:`RoundsStrategy` describes one round in two hooks, the way Flower's ``Strategy`` does
(``configure_fit`` / ``aggregate_fit``):

``local_tasks(round, state) -> list[LocalTask]``
    What each client (a domain, where its data lives) trains this round: its data, the network
    it starts from (default: the current global network ``state.module``), hooks (FedProx's
    proximal term) and settings. An empty list ends training early.
``aggregate(round, start, updates, failures) -> nn.Module | None``
    The next global network from what the clients sent. ``start`` is the global network the
    round began from; ``updates`` are the tasks that finished in time with finite weights;
    ``failures`` the ones that raised, ran past the timeout or returned NaN / inf (dropped and
    reported). Returning None keeps ``start`` (a round with no usable update changes nothing).
``reply(module, task) -> dict[str, Tensor]`` (optional)
    What a client sends back after training: by default its weights (``state_dict``); a
    distillation strategy such as FedMD sends logits on a public set instead. Only these arrays
    count as sent bytes, and an aggregate that reads only ``LocalUpdate.arrays`` runs unchanged
    on an engine where the trained network never leaves the client.

With ``persistent_clients = True`` every client keeps its own network from round to round (FedMD:
each industry its own architecture): a round starts each client from its previous network
(``RoundState.clients``; round 1 from :meth:`RoundsStrategy.client_start`), not the global one.

:func:`run_rounds` runs them: every task trains a private copy through the one training loop;
only trained weights reach ``aggregate`` (raw data stays inside its task). The log of every round
(clients, failures, seconds, bytes a client would send) lands in the feedback report.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import FeedbackContext, FeedbackStrategy, TrainSettings, flat
from crossfeed.feedback._params import Param
from crossfeed.training import TrainingHook, seeded_rng, train

__all__ = ["Exchange", "Failure", "LocalTask", "LocalUpdate", "RoundLog", "RoundState", "RoundsStrategy",
           "checked_aggregate", "finite_arrays", "keep_update", "run_rounds", "screen_update", "train_here"]

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
    soft_targets : array of shape (n_samples, n_classes), optional; probability targets that
        replace the one-hot labels (FedMD: the consensus on the public rows).
    """

    client: str
    X: np.ndarray
    y: np.ndarray
    weight: float = 1.0
    start: nn.Module | None = None
    hooks: Sequence[TrainingHook] = ()
    settings: TrainSettings | None = None
    soft_targets: np.ndarray | None = None


@dataclass
class LocalUpdate:
    """A finished task: the client's trained network and what it cost."""

    client: str
    module: nn.Module
    weight: float
    n_samples: int
    seconds: float
    bytes_sent: int
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)

    def state(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()


@dataclass(frozen=True)
class Failure:
    """A task that produced no usable update, and why."""

    client: str
    reason: str


@dataclass
class RoundState:
    """What ``local_tasks`` sees: the context, the current global network and the rounds so far;
    ``clients``: each client's own network after its last round (``persistent_clients`` only)."""

    ctx: FeedbackContext
    module: nn.Module
    history: list[RoundLog] = field(default_factory=list)
    clients: dict[str, nn.Module] = field(default_factory=dict)


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
    #: every client trains its own network across rounds (see the module docstring)
    persistent_clients: ClassVar[bool] = False

    def __init__(self, rounds: int = 5) -> None:
        self.rounds = rounds

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        raise NotImplementedError

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        raise NotImplementedError

    def reply(self, module: nn.Module, task: LocalTask) -> dict[str, torch.Tensor]:
        """What the client sends after training ``module`` on ``task``: its weights by default."""
        return module.state_dict()

    def client_start(self, ctx: FeedbackContext, client: str) -> nn.Module | None:
        """A client's own network in round 1 (``persistent_clients`` only; None: the global one)."""
        return None


#: How a round's tasks reach the clients and their updates come back:
#: ``exchange(strategy, round, tasks, state, timeout_s) -> (updates, failures)``. The default,
#: :func:`train_here`, trains every task in this process; Flower's ServerApp sends them as messages.
Exchange = Callable[[RoundsStrategy, int, Sequence[LocalTask], RoundState, float | None],
                    tuple[list[LocalUpdate], list[Failure]]]


def run_rounds(strategy: RoundsStrategy, ctx: FeedbackContext, start: nn.Module, *,
               timeout_s: float | None = None, on_round: Callable[[int, nn.Module], None] | None = None,
               exchange: Exchange | None = None) -> tuple[nn.Module, list[RoundLog]]:
    """Run ``strategy.rounds`` rounds from a copy of ``start``; return the final network and the log.

    Every round: the strategy's tasks, the clients' updates (``exchange``; default
    :func:`train_here`), the checked aggregate (a round without a usable update keeps the old
    network), the round's log. ``timeout_s``: a client whose training takes longer is dropped for
    the round. ``on_round``: called after every round with the round and the global network (e.g.
    to evaluate it).
    """
    state = RoundState(ctx, copy.deepcopy(start).cpu())
    exchange = exchange or train_here
    for r in range(1, strategy.rounds + 1):
        t0 = time.perf_counter()
        tasks = strategy.local_tasks(r, state)
        if not tasks:
            logger.info("round %d: no tasks; stopping", r)
            break
        updates, failures = exchange(strategy, r, tasks, state, timeout_s)
        new = checked_aggregate(strategy, r, state.module, updates, failures)
        kept = new is None
        if not kept:
            state.module = new.cpu()
        state.history.append(RoundLog(r, tuple(u.client for u in updates), tuple(failures), kept,
                                      time.perf_counter() - t0, sum(u.bytes_sent for u in updates)))
        if on_round is not None:
            on_round(r, state.module)
    return state.module, state.history


def train_here(strategy: RoundsStrategy, r: int, tasks: Sequence[LocalTask], state: RoundState,
               timeout_s: float | None) -> tuple[list[LocalUpdate], list[Failure]]:
    """The in-process :data:`Exchange`: every task trains a private copy through the one training
    loop (task ``i`` of round ``r`` with seed offset ``1000 r + i``); a task that raises, runs past
    ``timeout_s`` (its late reply is discarded, as a server would) or returns NaN / inf is a
    :class:`Failure`. A ``persistent_clients`` strategy's clients keep their networks in ``state.clients``."""
    updates, failures = [], []
    for i, task in enumerate(tasks):
        if strategy.persistent_clients and task.start is None:
            own = state.clients.get(task.client) or strategy.client_start(state.ctx, task.client)
            task = dataclasses.replace(task, start=own)
        try:
            update = _run_task(task, state.module, state.ctx, seed_offset=1000 * r + i, reply=strategy.reply)
        except Exception as exc:  # failure is part of the contract: dropped and reported
            logger.warning("round %d: client %r failed: %s", r, task.client, exc)
            failures.append(Failure(task.client, f"{type(exc).__name__}: {exc}"))
            continue
        if keep_update(update, timeout_s, updates, failures) and strategy.persistent_clients:
            state.clients[task.client] = update.module
    return updates, failures


def _run_task(task: LocalTask, global_module: nn.Module, ctx: FeedbackContext, seed_offset: int,
              reply: Callable[[nn.Module, LocalTask], dict[str, torch.Tensor]]) -> LocalUpdate:
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
        with seeded_rng(config.seed):  # dropout too: the same step in this process, a Ray worker or a SuperNode
            train(module, flat(task.X), np.searchsorted(classes, y), config=config, hooks=list(task.hooks),
                  soft_targets=task.soft_targets)
    module = module.cpu().eval()
    arrays = {k: v.detach() for k, v in reply(module, task).items()}
    seconds = time.perf_counter() - t0
    sent = sum(t.numel() * t.element_size() for t in arrays.values())
    return LocalUpdate(task.client, module, float(task.weight), len(y), seconds, sent, arrays)


def finite_arrays(arrays: Mapping[str, torch.Tensor]) -> bool:
    """True when no floating array holds NaN or inf (integer arrays are not checked)."""
    return all(bool(torch.isfinite(t).all()) for t in arrays.values() if t.is_floating_point())


def screen_update(update: LocalUpdate, timeout_s: float | None) -> Failure | None:
    """Why an update that came back must still be dropped (every engine applies the same rules):
    its training ran past ``timeout_s``, or what it sent (or its network) holds NaN / inf. None: usable."""
    if timeout_s is not None and update.seconds > timeout_s:
        return Failure(update.client, f"timed out: {update.seconds:.2f} s > {timeout_s} s")
    if not finite_arrays(update.arrays) or (update.module is not None and not finite_arrays(update.module.state_dict())):
        return Failure(update.client, "non-finite weights (NaN or inf)")
    return None


def keep_update(update: LocalUpdate, timeout_s: float | None, updates: list[LocalUpdate],
                failures: list[Failure]) -> bool:
    """File a returned update under ``updates``, or under ``failures`` when :func:`screen_update`
    drops it; True when it was kept (every exchange sorts its replies this way)."""
    failure = screen_update(update, timeout_s)
    if failure is not None:
        failures.append(failure)
        return False
    updates.append(update)
    return True


def checked_aggregate(strategy: RoundsStrategy, round: int, start: nn.Module, updates: list[LocalUpdate],
                      failures: list[Failure]) -> nn.Module | None:
    """``strategy.aggregate`` of a round (None without updates: the old network stays); an error
    when the aggregate itself is not finite (a broken strategy, not a broken client)."""
    new = strategy.aggregate(round, start, updates, failures) if updates else None
    if new is not None and not finite_arrays(new.state_dict()):
        raise ValidationError(f"{strategy.name}: aggregate returned non-finite weights in round {round}")
    return new


def module_with_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``template`` carrying ``state``."""
    out = copy.deepcopy(template)
    out.load_state_dict(state)
    return out


def client_data(ctx: FeedbackContext, names: Sequence[str] | None = None) -> list[tuple[str, np.ndarray, Any]]:
    """``(domain, X_train, y_train)`` of the general domain and every expert's domain (the clients).

    In a suite whose ``meta["general_is_server"]`` is true (the suites that
    :func:`crossfeed.federated.simulate` builds from client partitions) the general domain holds
    the server's own data and is no client.
    """
    server_only = bool(ctx.suite.meta.get("general_is_server"))
    default = [n for n in ctx.experts if n != ctx.general] if server_only else \
        [ctx.general, *[n for n in ctx.experts if n != ctx.general]]
    chosen = list(names) if names is not None else default
    return [(n, ctx.suite[n].X_train, ctx.suite[n].y_train) for n in chosen]
