"""FedDF: federated averaging, then server-side ensemble distillation of the clients' networks.

Lin, Kong, Stich & Jaggi (NeurIPS 2020), "Ensemble Distillation for Robust Model Fusion in
Federated Learning", arXiv 2006.07242. Every round the clients train as in FedAvg; the server
averages the updates of each architecture into that architecture's *prototype*, then distils the
ensemble of all the clients' networks (the mean of their logits, the paper's AVGLOGITS) into every
prototype on unlabelled transfer data the server holds. Only weights travel; the server never
sees a client's rows.

Two choices the paper leaves to its code, as parameters: the ensemble teacher is the mean of the
clients' logits (``teacher="logits"``, AVGLOGITS) or of their probabilities (``"probabilities"``:
on label-skewed clients a client that never saw a class does not outvote the one that did with a
large logit); and ``early_stopping`` keeps, per round, the server epoch (the averaged network,
epoch 0, included) most accurate on the server's labelled validation rows, as the paper stops its
distillation on a validation set: distillation then never makes the round's network worse there.

Clients of different architectures (the paper's heterogeneous setting): with
``client_models="experts"`` every domain client trains a network of its own expert's
architecture (a prototype per architecture, started from the first expert of that architecture),
the general domain trains the large model's; the ensemble of all of them teaches every prototype,
and the large model's prototype is the result.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.exceptions import EmptyDataError, LabelMismatchError, ValidationError
from crossfeed.feedback._base import FeedbackContext, flat, register
from crossfeed.feedback._merging import average_weights
from crossfeed.feedback._params import Param
from crossfeed.feedback._rounds import Failure, LocalTask, LocalUpdate, RoundState, client_data, module_with_state
from crossfeed.feedback.ensemble_distill import ensemble_logits
from crossfeed.feedback.fedavg import FedAvg
from crossfeed.training import TrainConfig, TrainingHook, seeded_rng, train

__all__ = ["FedDF", "architecture_key", "average_logits", "average_probabilities", "distill_into",
           "teacher_probabilities", "unlabelled_rows"]

TRANSFER = ("general", "field")
CLIENT_MODELS = ("large", "experts")
TEACHERS = ("logits", "probabilities")


def architecture_key(module: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """What decides whether two networks can be averaged: their state's names and shapes.

    Example
    -------
    >>> architecture_key(nn.Linear(3, 2))
    (('weight', (2, 3)), ('bias', (2,)))
    """
    return tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())


@torch.no_grad()
def average_logits(modules: list[nn.Module], X: np.ndarray, weights: list[float] | None = None,
                   batch_size: int = 1024) -> np.ndarray:
    """The (weighted) mean of the networks' logits on ``X``: the ensemble teacher of FedDF.

    Example
    -------
    >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> X = np.ones((3, 2), dtype=np.float32)
    >>> np.allclose(average_logits([a, b], X), (a(torch.ones(3, 2)) + b(torch.ones(3, 2))).detach().numpy() / 2, atol=1e-6)
    True
    """
    if not modules:
        raise EmptyDataError("average_logits needs at least one network")
    w = np.full(len(modules), 1.0 / len(modules)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(modules),) or (w < 0).any() or w.sum() <= 0:
        raise ValidationError(f"weights must be {len(modules)} non-negative numbers, not all zero; got {weights!r}")
    w = w / w.sum()
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    total = None
    for wi, m in zip(w, modules, strict=True):
        was_training = m.training
        m.eval()
        z = torch.cat([m(Xt[i:i + batch_size]).float() for i in range(0, len(Xt), batch_size)])
        m.train(was_training)
        total = wi * z if total is None else total + wi * z
    return total.numpy().astype(np.float32)


def average_probabilities(modules: list[nn.Module], X: np.ndarray, weights: list[float] | None = None,
                          temperature: float = 1.0, batch_size: int = 1024) -> np.ndarray:
    """An ensemble teacher whose ``softmax(out / temperature)`` is the (weighted) mean of the
    networks' ``softmax(logits / temperature)`` on ``X``
    (:func:`~crossfeed.feedback.ensemble_logits` with ``"probabilities"``).

    Example
    -------
    >>> a, b = nn.Linear(2, 3), nn.Linear(2, 3)
    >>> X = np.ones((4, 2), dtype=np.float32)
    >>> p = teacher_probabilities(average_probabilities([a, b], X, temperature=3.0), 3.0)
    >>> q = (teacher_probabilities(average_logits([a], X), 3.0) + teacher_probabilities(average_logits([b], X), 3.0)) / 2
    >>> np.allclose(p, q, atol=1e-6)
    True
    """
    if not modules:
        raise EmptyDataError("average_probabilities needs at least one network")
    members = np.stack([average_logits([m], X, batch_size=batch_size) for m in modules])
    return ensemble_logits(members, "probabilities", temperature, weights)


def teacher_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` row by row: soft targets from a teacher's logits."""
    return torch.softmax(torch.as_tensor(np.asarray(logits, dtype=np.float32)) / temperature, dim=-1).numpy()


def distill_into(module: nn.Module, X: np.ndarray, teacher_logits: np.ndarray, config: TrainConfig,
                 temperature: float = 1.0, validation: tuple[np.ndarray, np.ndarray] | None = None) -> nn.Module:
    """Train ``module`` in place toward ``softmax(teacher_logits / temperature)`` on ``X``; return it.

    Soft cross-entropy against the teacher's probabilities: the KL divergence of FedDF up to a
    constant. ``X`` needs no labels. ``validation``: ``(X_val, y_idx)`` with class indices; the
    weights of the epoch most accurate there are kept, the untrained ones (epoch 0) included.
    """
    if len(X) == 0:
        raise EmptyDataError("distillation needs transfer data; got 0 rows")
    soft = teacher_probabilities(teacher_logits, temperature)
    hooks = [] if validation is None else [_BestOnValidation(*validation)]
    with seeded_rng(config.seed):  # dropout masks from the config's seed: the same on every engine's server
        train(module, np.asarray(X, dtype=np.float32), soft.argmax(axis=1), config=config, soft_targets=soft,
              hooks=hooks)
    return module


class _BestOnValidation(TrainingHook):
    """Keeps the weights of the epoch (0: before training) with the highest accuracy on labelled rows."""

    def __init__(self, X: np.ndarray, y_idx: np.ndarray) -> None:
        self.X, self.y = torch.as_tensor(np.asarray(X, dtype=np.float32)), torch.as_tensor(np.asarray(y_idx))

    @torch.no_grad()
    def _accuracy(self) -> float:
        was = self.module.training
        self.module.eval()
        z = torch.cat([self.module(self.X[i:i + 1024].to(self.device)).cpu() for i in range(0, len(self.X), 1024)])
        self.module.train(was)
        return float((z.argmax(dim=1) == self.y).float().mean())

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self.module, self.device = module, device
        self.best, self.best_state = self._accuracy(), copy.deepcopy(module.state_dict())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        accuracy = self._accuracy()
        if accuracy > self.best:
            self.best, self.best_state = accuracy, copy.deepcopy(self.module.state_dict())

    def teardown(self, module: nn.Module) -> None:
        module.load_state_dict(self.best_state)


def unlabelled_rows(ctx: FeedbackContext, source: str, what: str) -> np.ndarray:
    """Rows the server may read without labels: the general domain's training rows (``"general"``)
    or the experts' domains' field data (``"field"``), flattened; a clear error when there are none."""
    if source == "general":
        parts = [ctx.suite[ctx.general].X_train]
    else:
        parts = [ctx.suite[n].X_field for n in ctx.experts if n != ctx.general and ctx.suite[n].X_field is not None]
    parts = [flat(p) for p in parts if len(p)]
    if not parts:
        raise EmptyDataError(f"{what}={source!r} gives no rows; the server needs unlabelled rows (use 'general', "
                             "pass server_X to crossfeed.federated.simulate, or give the domains field data)")
    return np.concatenate(parts)


@register("feddf")
class FedDF(FedAvg):
    """FedAvg plus ensemble distillation on the server.

    Parameters
    ----------
    rounds : int >= 1, communication rounds; each client trains ``settings.epochs`` local epochs.
    server_epochs : int >= 1, passes of the server's distillation over the transfer data per round.
    temperature : float > 0, softening of the ensemble (FedDF uses 1).
    transfer : "general" (the general domain's rows, labels unused) or "field" (the unlabelled
        field data of the experts' domains): the server's unlabelled transfer data.
    client_models : "large" (every client trains the large model's architecture) or "experts"
        (each domain client its expert's architecture; needs torch experts).
    teacher : "logits" (the mean of the clients' logits, FedDF's AVGLOGITS) or "probabilities"
        (the mean of their softmax).
    early_stopping : keep the server epoch most accurate on the server's labelled validation rows
        (epoch 0, the averaged network, included); needs them: the general domain's validation
        split in the cycle, ``server_val`` in :func:`crossfeed.federated.simulate`.
    fraction : share of the clients sampled each round (see :class:`FedAvg`).

    Reports ``rounds`` like FedAvg.
    """

    params: ClassVar[dict[str, Param]] = {
        **FedAvg.params,
        "server_epochs": Param(int, low=1, help="server distillation passes per round"),
        "temperature": Param(float, low=0.0, low_open=True, help="softening of the ensemble"),
        "transfer": Param(str, choices=TRANSFER, help="the server's unlabelled transfer data"),
        "client_models": Param(str, choices=CLIENT_MODELS, help="which architecture each client trains"),
        "teacher": Param(str, choices=TEACHERS, help="mean of the clients' logits or of their probabilities"),
        "early_stopping": Param(bool, help="keep the server epoch best on the server's labelled validation rows"),
    }

    def __init__(self, rounds: int = 5, server_epochs: int = 2, temperature: float = 1.0,
                 transfer: str = "general", client_models: str = "large", teacher: str = "logits",
                 early_stopping: bool = False, fraction: float = 1.0) -> None:
        self.rounds = rounds
        self.fraction = fraction
        self.server_epochs = server_epochs
        self.temperature = temperature
        self.transfer = transfer
        self.client_models = client_models
        self.teacher = teacher
        self.early_stopping = early_stopping
        self._prototypes: dict[Any, nn.Module] = {}
        self._client_arch: dict[str, Any] = {}

    def transfer_data(self, ctx: FeedbackContext) -> np.ndarray:
        """The server's unlabelled transfer rows."""
        return unlabelled_rows(ctx, self.transfer, "feddf: transfer")

    def validation_data(self, ctx: FeedbackContext) -> tuple[np.ndarray, np.ndarray]:
        """The server's labelled validation rows ``(X, class indices)`` for ``early_stopping``."""
        domain = ctx.suite[ctx.general]
        X, y = getattr(domain, "X_val", None), getattr(domain, "y_val", None)
        if X is None or y is None or len(y) == 0:
            raise EmptyDataError("feddf: early_stopping needs labelled validation rows on the server; pass "
                                 "server_val=(X, y) to crossfeed.federated.simulate / run_flower (in the cycle the "
                                 "general domain's validation split serves), or set early_stopping: false")
        unknown = np.setdiff1d(np.asarray(y), ctx.classes)
        if len(unknown):
            raise LabelMismatchError(f"feddf: the server's validation rows hold labels {unknown.tolist()} the large "
                                     f"model does not predict (its classes: {ctx.classes.tolist()})")
        return flat(X), np.searchsorted(ctx.classes, np.asarray(y))

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        ctx = state.ctx
        if round == 1:
            self._prototypes, self._client_arch = {architecture_key(state.module): state.module}, {}
            self._transfer = self.transfer_data(ctx)
            self._server_config = dataclasses.replace(ctx.settings.train_config(), epochs=self.server_epochs)
            self._validation = self.validation_data(ctx) if self.early_stopping else None
            if self.client_models == "experts":
                for name in ctx.experts:
                    expert = ctx.experts[name]
                    module = getattr(expert, "module_", None)
                    if name == ctx.general or not isinstance(module, nn.Module):
                        continue
                    key = architecture_key(module)
                    self._prototypes.setdefault(key, copy.deepcopy(module).cpu())
                    self._client_arch[name] = key
        own = architecture_key(state.module)
        self._prototypes[own] = state.module
        tasks = []
        for name, X, y in self.sampled(round, ctx.settings.seed, client_data(ctx)):
            key = self._client_arch.get(name, own)
            tasks.append(LocalTask(name, X, y, weight=len(y), start=self._prototypes[key],
                                   hooks=self.client_hooks(self._prototypes[key])))
        return tasks

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        groups: dict[Any, list[LocalUpdate]] = {}
        for u in updates:
            groups.setdefault(architecture_key(u.module), []).append(u)
        for key, group in groups.items():
            template = self._prototypes.get(key, group[0].module)
            states = [u.state() for u in group]
            self._prototypes[key] = module_with_state(template, average_weights(states, [u.weight for u in group]))
        networks, weights = [u.module for u in updates], [u.weight for u in updates]
        teacher = (average_logits(networks, self._transfer, weights) if self.teacher == "logits"
                   else average_probabilities(networks, self._transfer, weights, self.temperature))
        config = dataclasses.replace(self._server_config, seed=self._server_config.seed + 7919 * round)
        for key, prototype in self._prototypes.items():
            self._prototypes[key] = distill_into(prototype, self._transfer, teacher, config, self.temperature,
                                                 self._validation).eval()
        return self._prototypes[architecture_key(start)]
