"""MAML: a meta-learned initialisation of the large model over the domains as tasks.

Finn, Abbeel & Levine (ICML 2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", arXiv 1703.03400; first-order MAML is their section 5.2. Each meta-iteration (a round
of the rounds driver) samples ``meta_batch`` tasks, here domains (the general domain and every
expert's); each task draws a class-balanced support set and a disjoint query set from its own
labelled data, adapts the weights with ``inner_steps`` SGD steps on the support set and takes the
query loss's gradient (through the inner loop for second order). The meta-parameters move by
plain SGD at ``settings.lr`` along the tasks' mean meta-gradient.

Why a :class:`~crossfeed.feedback.RoundsStrategy`: MAML has an outer loop over tasks, and a
task's labels must stay where they live, exactly like Reptile's and FedAvg's clients. A task is
one run of the one training loop on its support and query rows: its :class:`MAMLHook` replaces
the loop's loss by the meta-objective, and the loop's single SGD step (``settings.epochs`` of them)
is the task's meta-step; ``aggregate`` averages the tasks' stepped weights, which for one step is
``theta - lr · mean_i g_i``. Only weights leave a task.

Measured (``benchmarks/meta.py``, mnist1d, leave one domain out, 3 seeds, 40 FOMAML rounds from
the pooled model): FOMAML's initialisation does not beat the pooled model it starts from after
the same k-shot adaptation (k = 10: 0.7608 against 0.7860, median over seeds of the mean over the
five targets); Reptile's matches it (0.7884). ``results/meta-mnist1d.json`` has every row.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.feedback._base import register
from crossfeed.feedback._meta import fomaml_gradient, inner_adapt, support_query, task_loss
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
from crossfeed.feedback.reptile import reptile_update
from crossfeed.training import Batch, TrainingHook

__all__ = ["MAML", "MAMLHook"]


class MAMLHook(TrainingHook):
    """The meta-objective of one task as the loop's base loss.

    The task's training rows are its support rows (positions ``< n_support``) followed by its
    query rows, in one batch. Second order: the query loss at the adapted weights, differentiable
    through the inner loop. First order: a surrogate whose gradient is the FOMAML gradient
    ``g = grad L_query(theta')`` and whose value is the query loss,
    ``sum_p <p, g_p> - stopgrad(sum_p <p, g_p>) + stopgrad(L_query(theta'))``.

    Parameters
    ----------
    n_support : int, number of leading rows that are the support set.
    inner_steps : int >= 0; inner_lr : float > 0; first_order : bool.
    """

    def __init__(self, n_support: int, inner_steps: int, inner_lr: float, first_order: bool) -> None:
        self.n_support = n_support
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.first_order = first_order

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        if batch.validation:
            return None
        is_support = batch.index < self.n_support
        support, query = (batch.x[is_support], batch.y[is_support]), (batch.x[~is_support], batch.y[~is_support])
        params = dict(module.named_parameters())
        if not self.first_order:
            adapted = inner_adapt(module, params, *support, self.inner_steps, self.inner_lr, create_graph=True)
            return task_loss(module, adapted, *query)
        grads, loss = fomaml_gradient(module, params, support, query, self.inner_steps, self.inner_lr)
        surrogate = sum((p * grads[n]).sum() for n, p in params.items())
        return surrogate - surrogate.detach() + loss


@register("maml")
class MAML(RoundsStrategy):
    """(First-order) MAML over the general domain and every expert's domain.

    Each round, ``meta_batch`` domains (0: all) draw ``support_shots`` + ``query_shots`` rows of
    every class; each takes ``settings.epochs`` meta-steps (the loop's SGD at ``settings.lr``, the
    outer learning rate, whatever ``settings.optimizer`` says; its momentum acts from a task's second
    step on; 1 is MAML's batched update, 0 trains nothing); the new weights are the tasks' mean.
    The meta-objective runs in train mode (BatchNorm on each set's own statistics); the inner
    steps leave the running statistics alone, which only the loop's forward pass at ``theta``
    updates (see :func:`~crossfeed.feedback._meta.task_loss`). The result is meant to adapt to a
    domain in a few SGD steps (:func:`~crossfeed.feedback._meta.adapt_k_shot`).

    Parameters
    ----------
    rounds : int >= 1, meta-iterations.
    first_order : bool, default True: FOMAML; False differentiates through the inner loop.
    inner_steps : int >= 1, SGD steps on a task's support set.
    inner_lr : float > 0, their learning rate.
    support_shots, query_shots : int >= 1, rows per class of a task's support and query sets.
    meta_batch : int >= 0, tasks sampled per round (0: every domain).
    """

    data_free = False  # each task adapts on its domain's labels, where they live
    params: ClassVar[dict[str, Param]] = {
        **RoundsStrategy.params,
        "first_order": Param(bool, help="first-order MAML (no Hessian-vector products)"),
        "inner_steps": Param(int, low=1, help="inner SGD steps on a task's support set"),
        "inner_lr": Param(float, low=0.0, low_open=True, help="inner SGD learning rate"),
        "support_shots": Param(int, low=1, help="support rows per class of a task"),
        "query_shots": Param(int, low=1, help="query rows per class of a task"),
        "meta_batch": Param(int, low=0, help="tasks sampled per round; 0: every domain"),
    }

    def __init__(self, rounds: int = 20, first_order: bool = True, inner_steps: int = 5, inner_lr: float = 0.1,
                 support_shots: int = 5, query_shots: int = 10, meta_batch: int = 0) -> None:
        self.rounds = rounds
        self.first_order = first_order
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.support_shots = support_shots
        self.query_shots = query_shots
        self.meta_batch = meta_batch

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        clients = client_data(state.ctx)
        rng = np.random.default_rng([state.ctx.settings.seed, round])
        if 0 < self.meta_batch < len(clients):
            clients = [clients[i] for i in sorted(rng.choice(len(clients), self.meta_batch, replace=False))]
        return [self._task(name, X, y, rng, state) for name, X, y in clients]

    def _task(self, name: str, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, state: RoundState) -> LocalTask:
        support, query = support_query(y, self.support_shots, self.query_shots, rng)
        rows = np.concatenate([support, query])
        hook = MAMLHook(len(support), self.inner_steps, self.inner_lr, self.first_order)
        settings = state.ctx.settings.replace(batch_size=len(rows), optimizer="sgd")
        return LocalTask(name, np.asarray(X)[rows], np.asarray(y)[rows], hooks=(hook,), settings=settings)

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        return module_with_state(start, reptile_update(start.state_dict(), [u.state() for u in updates], 1.0))
