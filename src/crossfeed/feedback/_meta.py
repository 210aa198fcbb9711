"""The maths of model-agnostic meta-learning, as pure functions over parameter dictionaries.

A network's parameters travel as a dict ``name -> Tensor`` and the network is called with
:func:`torch.func.functional_call`, so an inner loop is a few functional SGD steps that leave the
module's own parameters untouched:

- :func:`inner_adapt`: ``steps`` SGD steps on a support set (the graph kept only for second order);
- :func:`fomaml_gradient`: first-order MAML, the query-set gradient at the adapted parameters;
- :func:`maml_gradient`: second-order MAML, the gradient of the query loss through the inner loop;
- :func:`support_query`: disjoint, class-balanced support and query rows of one task;
- :func:`adapt_k_shot`: the same functional SGD steps that fine-tune any initialisation of a
  fitted :class:`~crossfeed.models.TorchClassifier` on k shots (the k-shot benchmark's
  adaptation, identical for every initialisation).

Finn, Abbeel & Levine (ICML 2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", arXiv 1703.03400 (MAML and its first-order approximation, section 5.2).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from crossfeed._validation import check_features, check_int, check_labels, encode_labels
from crossfeed.exceptions import ValidationError
from crossfeed.models import TorchClassifier, check_torch_model, fitted_copy

__all__ = ["adapt_k_shot", "fomaml_gradient", "inner_adapt", "maml_gradient", "support_query", "task_loss"]

Params = dict[str, torch.Tensor]


def task_loss(module: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
              update_buffers: bool = False) -> torch.Tensor:
    """Mean cross-entropy of ``module`` called with ``params`` on ``x`` (shape (n, ...)) against class indices ``y``.

    ``update_buffers``: let the call update the module's buffers as a forward pass does (BatchNorm's
    running statistics in train mode). False (default) hands the call copies of them, so that the
    statistics of adapted parameters on one task's few rows do not leak into the module.
    """
    buffers = {} if update_buffers else {n: b.clone() for n, b in module.named_buffers()}
    return F.cross_entropy(functional_call(module, {**params, **buffers}, (x,)), y)


def _check_lr(lr: Any, name: str = "lr") -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValidationError(f"{name} must be a finite number > 0; got {lr!r}. Try 0.01 to 0.5 for SGD steps")
    return float(lr)


def inner_adapt(module: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                steps: int, lr: float, *, create_graph: bool = False, update_buffers: bool = False) -> Params:
    """``steps`` full-batch SGD steps ``theta <- theta - lr · grad L_support(theta)`` from ``params``.

    Parameters
    ----------
    module : the network; called with :func:`torch.func.functional_call`, its parameters unused
        (its buffers, e.g. BatchNorm running statistics, are left alone unless ``update_buffers``).
    params : dict name -> Tensor, the starting point (e.g. ``dict(module.named_parameters())``).
    x : Tensor of shape (n_support, ...); y : Tensor of shape (n_support,), class indices.
    steps : int >= 0; 0 returns ``params`` as a dict, unchanged.
    lr : float > 0, the inner learning rate.
    create_graph : keep the graph of every step, so that the result can be differentiated
        with respect to ``params`` (which must then require grad) through the inner loop
        (second-order MAML). False: every step
        starts from detached tensors (first order, no graph kept).
    update_buffers : see :func:`task_loss`; True for a fine-tuning, False inside meta-training.

    Returns
    -------
    dict name -> Tensor, the adapted parameters.

    Example
    -------
    >>> net = nn.Linear(2, 2, bias=False)
    >>> p = {"weight": torch.zeros(2, 2)}
    >>> x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    >>> inner_adapt(net, p, x, y, steps=1, lr=1.0)["weight"]   # -lr · (softmax - onehot) x^T
    tensor([[ 0.5000,  0.0000],
            [-0.5000,  0.0000]])
    """
    steps = check_int(steps, "steps", 0)
    lr = _check_lr(lr)
    names = list(params)
    current = dict(params)
    for _ in range(steps):
        if not create_graph:
            current = {n: t.detach().requires_grad_(True) for n, t in current.items()}
        loss = task_loss(module, current, x, y, update_buffers=update_buffers)
        grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=create_graph)
        current = {n: current[n] - lr * g for n, g in zip(names, grads, strict=True)}
    return current if create_graph or steps == 0 else {n: t.detach() for n, t in current.items()}


def fomaml_gradient(module: nn.Module, params: Mapping[str, torch.Tensor], support: tuple[torch.Tensor, torch.Tensor],
                    query: tuple[torch.Tensor, torch.Tensor], steps: int, lr: float) -> tuple[Params, torch.Tensor]:
    """First-order MAML: the query loss's gradient at the adapted parameters, and that loss.

    The meta-gradient of MAML is ``(I - lr · H_1) ... (I - lr · H_steps) · g_query(theta')``;
    first-order MAML drops the Hessian products and applies ``g_query(theta')`` to the
    meta-parameters ``theta`` (Finn et al. 2017, arXiv 1703.03400, section 5.2).

    Parameters
    ----------
    support, query : pairs ``(x, y)`` of one task (x of shape (n, ...), y class indices).
    steps, lr : of :func:`inner_adapt`.

    Returns
    -------
    (dict name -> Tensor of each parameter's shape, detached; the query loss at ``theta'``, detached)

    Example
    -------
    >>> net = nn.Linear(2, 2)
    >>> p = {n: torch.zeros_like(t) for n, t in net.named_parameters()}
    >>> xy = (torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    >>> grad, loss = fomaml_gradient(net, p, xy, xy, steps=0, lr=0.1)
    >>> round(loss.item(), 4), grad["bias"].tolist()     # log 2; softmax - onehot
    (0.6931, [-0.5, 0.5])
    """
    adapted = {n: t.detach().requires_grad_(True) for n, t in inner_adapt(module, params, *support, steps, lr).items()}
    loss = task_loss(module, adapted, *query)
    grads = torch.autograd.grad(loss, list(adapted.values()))
    return dict(zip(adapted, grads, strict=True)), loss.detach()


def maml_gradient(module: nn.Module, params: Mapping[str, torch.Tensor], support: tuple[torch.Tensor, torch.Tensor],
                  query: tuple[torch.Tensor, torch.Tensor], steps: int, lr: float) -> tuple[Params, torch.Tensor]:
    """Second-order MAML: the gradient of ``L_query(inner_adapt(theta))`` with respect to ``theta``.

    Differentiates through the ``steps`` inner SGD steps (Hessian-vector products included);
    it agrees with :func:`fomaml_gradient` to first order in ``lr`` and equals it for ``steps=0``.
    Same arguments and returns as :func:`fomaml_gradient`.
    """
    start = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    loss = task_loss(module, inner_adapt(module, start, *support, steps, lr, create_graph=True), *query)
    grads = torch.autograd.grad(loss, list(start.values()))
    return dict(zip(start, grads, strict=True)), loss.detach()


def support_query(y: Any, support_shots: int, query_shots: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint row indices: ``support_shots`` and ``query_shots`` rows of every class of ``y``.

    Raises ``ValidationError`` when a class has fewer than ``support_shots + query_shots`` rows.

    Example
    -------
    >>> s, q = support_query(np.array([0, 0, 0, 1, 1, 1]), 1, 2, np.random.default_rng(0))
    >>> len(s), len(q), len(set(s) | set(q))
    (2, 4, 6)
    """
    support_shots = check_int(support_shots, "support_shots", 1)
    query_shots = check_int(query_shots, "query_shots", 1)
    y = np.asarray(y)
    need = support_shots + query_shots
    support, query = [], []
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        if len(where) < need:
            raise ValidationError(
                f"a task needs support_shots + query_shots = {need} rows of every class, but class {c!r} has only "
                f"{len(where)}; choose support_shots + query_shots <= {len(where)}")
        chosen = rng.choice(where, size=need, replace=False)
        support.append(chosen[:support_shots])
        query.append(chosen[support_shots:])
    return np.concatenate(support), np.concatenate(query)


def adapt_k_shot(model: TorchClassifier, X: Any, y: Any, steps: int, lr: float) -> TorchClassifier:
    """Fine-tune ``model``'s network on the shots ``(X, y)`` with ``steps`` full-batch SGD steps.

    The adaptation of the k-shot protocol: every initialisation (a meta-learned one, a pooled or
    general model, random weights wrapped with :func:`~crossfeed.models.fitted_copy`) gets the
    same :func:`inner_adapt` steps at the same ``lr``, in train mode, as a fine-tuning does: BatchNorm
    uses the shots' statistics and updates its running ones. ``model`` is not modified.

    Parameters
    ----------
    model : fitted TorchClassifier, the initialisation.
    X : array of shape (n_shots, n_features); y : array of shape (n_shots,), labels in ``model.classes_``.
    steps : int >= 0; lr : float > 0.

    Returns
    -------
    a new fitted TorchClassifier with the adapted weights.
    """
    model = check_torch_model(model, owner="adapt_k_shot")
    X = check_features(X, name="X", n_features=int(model.n_features_in_), owner="adapt_k_shot's model")
    y = encode_labels(check_labels(y, len(X)), model.classes_, context="the model's classes")
    module = copy.deepcopy(model.module_).cpu().train()
    x = torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32)
    adapted = inner_adapt(module, dict(module.named_parameters()), x, torch.as_tensor(y), steps, lr, update_buffers=True)
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(adapted[name])
    return fitted_copy(model, module)
