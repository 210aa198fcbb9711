"""FedDF: federated averaging, then server-side ensemble distillation of the clients' networks.

Lin, Kong, Stich & Jaggi (NeurIPS 2020), "Ensemble Distillation for Robust Model Fusion in
Federated Learning", arXiv 2006.07242. Every round the clients train as in FedAvg; the server
averages the updates of each architecture into that architecture's *prototype*, then distils the
ensemble of all the clients' networks (the mean of their logits, the paper's AVGLOGITS) into every
prototype on unlabelled transfer data the server holds. Only weights travel; the server never
sees a client's rows.

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

from crossfeed.exceptions import EmptyDataError, ValidationError
from crossfeed.feedback._base import FeedbackContext, flat, register
from crossfeed.feedback._merging import average_weights
from crossfeed.feedback._params import Param
from crossfeed.feedback._rounds import Failure, LocalTask, LocalUpdate, RoundState, client_data, module_with_state
from crossfeed.feedback.fedavg import FedAvg
from crossfeed.training import TrainConfig, train

__all__ = ["FedDF", "architecture_key", "average_logits", "distill_into", "teacher_probabilities", "unlabelled_rows"]

TRANSFER = ("general", "field")
CLIENT_MODELS = ("large", "experts")


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


def teacher_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` row by row: soft targets from a teacher's logits."""
    return torch.softmax(torch.as_tensor(np.asarray(logits, dtype=np.float32)) / temperature, dim=-1).numpy()


def distill_into(module: nn.Module, X: np.ndarray, teacher_logits: np.ndarray, config: TrainConfig,
                 temperature: float = 1.0) -> nn.Module:
    """Train ``module`` in place toward ``softmax(teacher_logits / temperature)`` on ``X``; return it.

    Soft cross-entropy against the teacher's probabilities: the KL divergence of FedDF up to a
    constant. ``X`` needs no labels.
    """
    if len(X) == 0:
        raise EmptyDataError("distillation needs transfer data; got 0 rows")
    soft = teacher_probabilities(teacher_logits, temperature)
    train(module, np.asarray(X, dtype=np.float32), soft.argmax(axis=1), config=config, soft_targets=soft)
    return module


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

    Reports ``rounds`` like FedAvg.
    """

    params: ClassVar[dict[str, Param]] = {
        **FedAvg.params,
        "server_epochs": Param(int, low=1, help="server distillation passes per round"),
        "temperature": Param(float, low=0.0, low_open=True, help="softening of the ensemble"),
        "transfer": Param(str, choices=TRANSFER, help="the server's unlabelled transfer data"),
        "client_models": Param(str, choices=CLIENT_MODELS, help="which architecture each client trains"),
    }

    def __init__(self, rounds: int = 5, server_epochs: int = 2, temperature: float = 1.0,
                 transfer: str = "general", client_models: str = "large") -> None:
        self.rounds = rounds
        self.server_epochs = server_epochs
        self.temperature = temperature
        self.transfer = transfer
        self.client_models = client_models
        self._prototypes: dict[Any, nn.Module] = {}
        self._client_arch: dict[str, Any] = {}

    def transfer_data(self, ctx: FeedbackContext) -> np.ndarray:
        """The server's unlabelled transfer rows."""
        return unlabelled_rows(ctx, self.transfer, "feddf: transfer")

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        ctx = state.ctx
        if round == 1:
            self._prototypes, self._client_arch = {architecture_key(state.module): state.module}, {}
            self._transfer = self.transfer_data(ctx)
            self._server_config = dataclasses.replace(ctx.settings.train_config(), epochs=self.server_epochs)
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
        for name, X, y in client_data(ctx):
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
        teacher = average_logits([u.module for u in updates], self._transfer, [u.weight for u in updates])
        config = dataclasses.replace(self._server_config, seed=self._server_config.seed + 7919 * round)
        for key, prototype in self._prototypes.items():
            self._prototypes[key] = distill_into(prototype, self._transfer, teacher, config, self.temperature).eval()
        return self._prototypes[architecture_key(start)]
