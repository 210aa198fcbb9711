"""FedMD: federated distillation of the domain experts; clients send logits on a public set, never weights.

Li & Wang (NeurIPS 2019 FL workshop), "FedMD: Heterogenous Federated Learning via Model
Distillation", arXiv 1910.03581. Each industry keeps its own network and architecture across
rounds (its expert). A round, per client: *digest* the consensus of the previous round (soft
targets on the public rows) and *revisit* its private labelled rows, in one pass of the training
loop over both; then *communicate* its logits on the public rows. The server averages the logits
into the new consensus, and the large model learns from it: it distils the consensus on the
public rows while keeping its general labelled data, so what the industries know reaches the
large model although no weight and no private row ever left a client.

The public set is unlabelled here (FedMD's is labelled): the general domain's rows
(``public="general"``, labels unused) or the experts' field data (``"field"``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.feedback._base import FeedbackContext, flat, register
from crossfeed.feedback._params import Param
from crossfeed.feedback._rounds import Failure, LocalTask, LocalUpdate, RoundsStrategy, RoundState, client_data
from crossfeed.feedback.feddf import average_logits, teacher_probabilities, unlabelled_rows
from crossfeed.training import seeded_rng, train

__all__ = ["FedMD", "consensus"]

PUBLIC = ("general", "field")


def consensus(logits: list[torch.Tensor], weights: list[float]) -> np.ndarray:
    """The weighted mean of the clients' logits on the public rows (FedMD's consensus).

    Example
    -------
    >>> consensus([torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])], [1.0, 3.0])
    array([[1.5, 0.5]], dtype=float32)
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return sum(float(wi) * z.double().numpy() for wi, z in zip(w, logits, strict=True)).astype(np.float32)


def _onehot(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.eye(len(classes), dtype=np.float32)[np.searchsorted(classes, y)]


@register("fedmd")
class FedMD(RoundsStrategy):
    """Federated distillation: clients keep their own networks and send logits on the public rows.

    Parameters
    ----------
    rounds : int >= 1, communication rounds; each client trains ``settings.epochs`` epochs per
        round over its private rows plus the public rows (from round 2, with the consensus).
    temperature : float > 0, softening of the consensus used as soft targets.
    public : "general" or "field", the unlabelled public rows every party can read.
    server_epochs : int >= 1, passes of the large model over the public rows (consensus targets)
        plus its general labelled rows per round.

    Clients are the experts' domains; each starts from its own expert's network (a torch expert;
    otherwise a copy of the large model's) and keeps it across rounds.
    """

    data_free = False  # clients train on their own labels, locally
    persistent_clients = True
    params: ClassVar[dict[str, Param]] = {
        **RoundsStrategy.params,
        "temperature": Param(float, low=0.0, low_open=True, help="softening of the consensus"),
        "public": Param(str, choices=PUBLIC, help="the unlabelled public rows"),
        "server_epochs": Param(int, low=1, help="passes of the large model per round"),
    }

    def __init__(self, rounds: int = 5, temperature: float = 1.0, public: str = "general",
                 server_epochs: int = 2) -> None:
        self.rounds = rounds
        self.temperature = temperature
        self.public = public
        self.server_epochs = server_epochs
        self._consensus: np.ndarray | None = None

    def public_data(self, ctx: FeedbackContext) -> np.ndarray:
        """The public rows every party reads (unlabelled)."""
        return unlabelled_rows(ctx, self.public, "fedmd: public")

    def client_start(self, ctx: FeedbackContext, client: str) -> nn.Module:
        own = getattr(ctx.experts.get(client), "module_", None)
        return copy.deepcopy(own if isinstance(own, nn.Module) else ctx.large.module_).cpu()

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        ctx = state.ctx
        if round == 1:
            self._consensus = None
            self._public = self.public_data(ctx)
            self._ctx = ctx
        if self._consensus is not None:  # the digest targets, the same for every client this round
            public_soft = teacher_probabilities(self._consensus, self.temperature)
            placeholder = ctx.classes[public_soft.argmax(axis=1)]
        tasks = []
        for name, X, y in client_data(ctx):
            if name == ctx.general:
                continue  # the general domain is the server's own data
            X = flat(X)
            y = np.asarray(y)
            if self._consensus is None:
                tasks.append(LocalTask(name, X, y, weight=len(y)))
                continue
            soft = np.concatenate([public_soft, _onehot(ctx.classes, y)])
            tasks.append(LocalTask(name, np.concatenate([self._public, X]), np.concatenate([placeholder, y]),
                                   weight=len(y), soft_targets=soft))
        return tasks

    def reply(self, module: nn.Module, task: LocalTask) -> dict[str, torch.Tensor]:
        """Logits on the public rows: the only thing a FedMD client sends."""
        return {"logits": torch.as_tensor(average_logits([module], self._public))}

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        # only what the clients sent (their logits) is read here, never u.module
        weights = [u.weight for u in updates]
        self._consensus = consensus([u.arrays["logits"] for u in updates], weights)
        ctx = self._ctx
        X, soft = self._public, teacher_probabilities(self._consensus, self.temperature)
        if ctx.suite.meta.get("server_labelled", True):  # the large model keeps its general labelled rows
            X_gen, y_gen = flat(ctx.suite[ctx.general].X_train), np.asarray(ctx.suite[ctx.general].y_train)
            X, soft = np.concatenate([X, X_gen]), np.concatenate([soft, _onehot(ctx.classes, y_gen)])
        config = dataclasses.replace(ctx.settings.train_config(7919 * round), epochs=self.server_epochs)
        new = copy.deepcopy(start)
        with seeded_rng(config.seed):
            train(new, X, soft.argmax(axis=1), config=config, soft_targets=soft)
        return new.eval()
