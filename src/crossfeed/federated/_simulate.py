"""In-process federated simulation: many clients (partitions of a suite), one server, one process.

The fast engine for tests, CI and sweeps: the rounds driver of :mod:`crossfeed.feedback` runs a
federated strategy (``fedavg``, ``fedprox``, ``feddf``, ``fedmd``) over :class:`Client` s instead of
a suite's domains. Every client's rows stay inside its local training task; only what the
strategy's ``reply`` sends (weights, or FedMD's logits) reaches ``aggregate``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from crossfeed.exceptions import EmptyDataError, LabelMismatchError, ValidationError
from crossfeed.feedback import (
    FeedbackContext,
    RoundLog,
    RoundsStrategy,
    TrainSettings,
    run_rounds,
)
from crossfeed.models import TorchClassifier, fitted_copy
from crossfeed.training import torch_threads

__all__ = ["Client", "FederatedRun", "clients_from_parts", "simulate"]


@dataclass(frozen=True)
class Client:
    """One client: a name and the labelled rows that never leave it."""

    name: str
    X: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.X) != len(self.y):
            raise ValidationError(f"client {self.name!r}: X has {len(self.X)} rows but y has {len(self.y)} labels")
        if len(self.y) == 0:
            raise EmptyDataError(f"client {self.name!r} holds no rows; drop it or redraw the partition "
                                 "(dirichlet_partition(..., min_samples=k) guarantees k rows per client)")


def clients_from_parts(X: Any, y: Any, parts: Sequence[np.ndarray], prefix: str = "client") -> list[Client]:
    """One :class:`Client` per index array of ``parts`` (e.g. from :func:`dirichlet_partition`).

    Example
    -------
    >>> X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    >>> [c.name for c in clients_from_parts(X, y, [np.array([0, 1]), np.array([2, 3])])]
    ['client_0', 'client_1']
    """
    X, y = np.asarray(X), np.asarray(y)
    width = len(str(max(len(parts) - 1, 0)))
    return [Client(f"{prefix}_{i:0{width}d}", X[p], y[p]) for i, p in enumerate(parts)]


@dataclass
class FederatedRun:
    """What :func:`simulate` and :func:`~crossfeed.federated.run_flower` return.

    Attributes
    ----------
    model : the global model after the last round (a fitted :class:`TorchClassifier`).
    rounds : one :class:`~crossfeed.feedback.RoundLog` per round (clients, failures, seconds,
        bytes the clients sent).
    accuracy : test accuracy of the global model after every round (empty without test data).
    seconds : wall time of the whole run.
    epsilon : the differential-privacy epsilon the run spent (strategies with an ``epsilon(rounds)``
        method, such as ``DPFedAvg``; None for the others).
    """

    model: TorchClassifier
    rounds: list[RoundLog]
    accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    epsilon: float | None = None

    def rounds_to(self, target: float) -> int | None:
        """The first round whose test accuracy reaches ``target`` (None if none did)."""
        return next((i + 1 for i, a in enumerate(self.accuracy) if a >= target), None)

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.rounds)


def simulate(strategy: RoundsStrategy, model: TorchClassifier, clients: Sequence[Client], *,
             settings: TrainSettings | None = None, server_X: Any = None, server_y: Any = None,
             server_val: tuple[Any, Any] | None = None, test: tuple[Any, Any] | None = None,
             timeout_s: float | None = None) -> FederatedRun:
    """Run a federated strategy over ``clients`` in this process, starting from ``model``.

    Parameters
    ----------
    strategy : a :class:`~crossfeed.feedback.RoundsStrategy` (``FedAvg``, ``FedProx``, ``FedDF``,
        ``FedMD``, ...); ``strategy.rounds`` rounds run.
    model : a fitted :class:`TorchClassifier`: its network is the initial global network and its
        ``classes_`` the label space (train it for 0 epochs-worth, e.g. ``fit`` with ``epochs=1`` on
        a few rows, to start from a fresh network). Never modified.
    clients : the clients; names unique, labels within ``model.classes_``.
    settings : local training settings (``epochs`` local epochs per round, lr, batch size, seed).
    server_X, server_y : the server's own rows: FedDF's unlabelled transfer data and FedMD's public
        rows (``server_X``); with ``server_y`` they are labelled and FedMD's large model keeps them.
    server_val : ``(X, y)``, labelled validation rows the server holds (FedDF's ``early_stopping``).
    test : ``(X, y)`` to evaluate the global model after every round.
    timeout_s : a client whose local training takes longer is dropped for the round.
    """
    settings = settings or TrainSettings()
    _check_inputs(model, clients, "simulate")
    classes = model.classes_
    suite = _suite(clients, classes, server_X, server_y, server_val)
    ctx = FeedbackContext(large=model, experts={c.name: None for c in clients}, suite=suite, settings=settings)
    accuracy: list[float] = []

    def evaluate(round: int, module: torch.nn.Module) -> None:
        if test is not None:
            accuracy.append(float(fitted_copy(model, copy.deepcopy(module)).score(*test)))

    t0 = time.perf_counter()
    with torch_threads(settings.threads):
        module, log = run_rounds(strategy, ctx, model.module_, timeout_s=timeout_s, on_round=evaluate)
    epsilon = strategy.epsilon(len(log)) if callable(getattr(strategy, "epsilon", None)) else None
    return FederatedRun(fitted_copy(model, module), log, accuracy, time.perf_counter() - t0, epsilon)


@dataclass(frozen=True)
class _Site:
    """A client's (or the server's) rows as the rounds driver reads a domain: training rows only."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_field: np.ndarray | None = None
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


@dataclass(frozen=True)
class _Federation:
    """The clients and the server in the shape of a :class:`DomainSuite` (the parts the rounds
    driver reads). Not a DomainSuite: non-IID clients need not hold every class, nor val/test rows."""

    sites: tuple[_Site, ...]
    classes: np.ndarray
    meta: dict
    name: str = "federated"
    general_domain: str = "server"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    def __getitem__(self, name: str) -> _Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


def _check_inputs(model: Any, clients: Sequence[Client], what: str) -> None:
    """The checks of :func:`~crossfeed.federated.simulate`: a fitted model, unique clients, one label space."""
    if not isinstance(model, TorchClassifier) or not hasattr(model, "module_"):
        raise ValidationError(f"{what} needs a fitted TorchClassifier as the initial global model; got "
                              f"{type(model).__name__}. Fit it first (a few rows are enough for a fresh network)")
    if not clients:
        raise EmptyDataError(f"{what} needs at least one client")
    if not all(isinstance(c, Client) for c in clients):
        raise ValidationError(f"{what} needs crossfeed.federated.Client objects (see clients_from_parts)")
    names = [c.name for c in clients]
    if len(set(names)) != len(names):
        raise ValidationError(f"client names must be unique; got {len(names) - len(set(names))} duplicates")
    for c in clients:
        unknown = np.setdiff1d(np.asarray(c.y), model.classes_)
        if len(unknown):
            raise LabelMismatchError(f"client {c.name!r} holds labels {unknown.tolist()} that the global model "
                                     f"does not predict (its classes: {model.classes_.tolist()}); a federated run "
                                     "needs one label space: refit the model on every class or relabel the client")


def _suite(clients: Sequence[Client], classes: np.ndarray, server_X: Any, server_y: Any,
           server_val: tuple[Any, Any] | None = None) -> _Federation:
    shape = np.asarray(clients[0].X).shape[1:]
    if server_X is None:
        sX, sy = np.zeros((0, *shape), dtype=np.float32), np.zeros(0, dtype=classes.dtype)
    else:
        sX = np.asarray(server_X, dtype=np.float32)
        sy = np.full(len(sX), classes[0]) if server_y is None else np.asarray(server_y)
        if len(sy) != len(sX):
            raise ValidationError(f"server_X has {len(sX)} rows but server_y has {len(sy)} labels")
        if sX.shape[1:] != shape:
            raise ValidationError(f"server_X rows have shape {sX.shape[1:]}, the clients' {shape}")
    vX = vy = None
    if server_val is not None:
        if not isinstance(server_val, (tuple, list)) or len(server_val) != 2:
            raise ValidationError("server_val must be a pair (X, y) of labelled validation rows")
        vX, vy = np.asarray(server_val[0], dtype=np.float32), np.asarray(server_val[1])
        if len(vX) != len(vy) or vX.shape[1:] != shape:
            raise ValidationError(f"server_val: {len(vX)} rows of shape {vX.shape[1:]} and {len(vy)} labels; "
                                  f"expected as many labels as rows, rows of the clients' shape {shape}")
    sites = [_Site("server", sX, sy, X_val=vX, y_val=vy)]
    sites += [_Site(c.name, np.asarray(c.X, dtype=np.float32), np.asarray(c.y)) for c in clients]
    return _Federation(tuple(sites), np.asarray(classes),
                       meta={"general_domain": "server", "general_is_server": True,
                             "server_labelled": server_y is not None})
