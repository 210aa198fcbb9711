"""Causal invariance across domains as environments: the maths, the training hooks and the data.

The domains are the environments of invariant learning: a feature whose relation to the label
changes from one domain to the next is spurious; the large model should rely on the features whose
relation holds in all of them.

- IRMv1: Arjovsky, Bottou, Gulrajani & Lopez-Paz (2019), "Invariant Risk Minimization",
  arXiv 1907.02893: the squared gradient of each environment's risk with respect to a dummy
  classifier scale ``w = 1.0`` (:func:`irm_penalty`).
- V-REx: Krueger, Caballero, Jacobsen, Zhang, Binas, Zhang, Le Priol & Courville (ICML 2021),
  "Out-of-Distribution Generalization via Risk Extrapolation", arXiv 2003.00688: the variance of
  the environments' risks (:func:`vrex_penalty`).
- Integrated Gradients: Sundararajan, Taly & Yan (ICML 2017), "Axiomatic Attribution for Deep
  Networks", arXiv 1703.01365, computed with captum (:func:`integrated_gradients`; the optional
  extra ``crossfeed[explain]``).
- Right for the Right Reasons: Ross, Hughes & Doshi-Velez (IJCAI 2017), arXiv 1703.03717: a
  penalty on input gradients where the explanation should be silent (:func:`input_gradient_penalty`).

Penalties take tensors and return tensors; :class:`EnvironmentPenaltyHook` puts one on the one
training loop with the reference code's annealing and loss rescaling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed._validation import check_int
from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.feedback._base import FeedbackContext, FeedbackStrategy, TrainingData, flat, general_data
from crossfeed.feedback._params import Param
from crossfeed.training import BalancedSampler, Batch, TrainingHook

__all__ = [
    "EnvironmentData",
    "EnvironmentPenaltyHook",
    "InvarianceStrategy",
    "agreement_mask",
    "attribution_agreement",
    "check_environments",
    "input_gradient_penalty",
    "integrated_gradients",
    "irm_penalty",
    "penalty_schedule",
    "vrex_penalty",
]

#: A penalty over the environments of a batch: [(logits, y) of every environment] -> scalar.
EnvironmentPenalty = Callable[[Sequence[tuple[torch.Tensor, torch.Tensor]]], torch.Tensor]


# -- the penalties -------------------------------------------------------------------------------
def irm_penalty(logits: torch.Tensor, y: torch.Tensor, *, unbiased: bool = False) -> torch.Tensor:
    """IRMv1's penalty of one environment: ``|d/dw R(w · logits)|²`` at the dummy scale ``w = 1``.

    ``R`` is the mean cross-entropy. The default is the estimate of the authors' Colored MNIST
    reference code (the squared gradient of the whole batch's risk). ``unbiased=True`` is the
    estimate of the paper's appendix D: the product of the gradients of the risks of the
    even and the odd rows, an unbiased estimate of the squared gradient of the expected risk.
    The result keeps the graph, so the penalty trains the network.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
    y : Tensor of shape (n_samples,), class indices.

    Example
    -------
    >>> y = torch.tensor([0, 1])
    >>> float(irm_penalty(torch.tensor([[5.0, -5.0], [-5.0, 5.0]]), y).detach()) > 0   # over-confident
    True
    >>> round(float(irm_penalty(torch.zeros(2, 2), y).detach()), 6)                 # w has no effect on zero logits
    0.0
    """
    if logits.ndim != 2 or len(logits) != len(y):
        raise ValidationError(f"irm_penalty needs logits of shape (n_samples, n_classes) and n labels; got "
                              f"{tuple(logits.shape)} and {tuple(y.shape)}")
    scale = torch.ones((), device=logits.device, requires_grad=True)
    losses = F.cross_entropy(logits * scale, y, reduction="none")
    if not unbiased:
        (grad,) = torch.autograd.grad(losses.mean(), [scale], create_graph=True)
        return grad.pow(2)
    if len(y) < 2:
        raise ValidationError(f"the unbiased IRM penalty needs at least 2 rows per environment; got {len(y)}")
    (g_even,) = torch.autograd.grad(losses[0::2].mean(), [scale], create_graph=True)
    (g_odd,) = torch.autograd.grad(losses[1::2].mean(), [scale], create_graph=True)
    return g_even * g_odd


def vrex_penalty(risks: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """V-REx's penalty: the variance of the environments' risks (population variance, divided by
    the number of environments; for two environments ``(r1 - r2)² / 4``).

    Parameters
    ----------
    risks : Tensor of shape (n_environments,) or a sequence of scalar tensors, each one
        environment's mean loss.

    Example
    -------
    >>> float(vrex_penalty(torch.tensor([0.3, 0.3, 0.3])))
    0.0
    >>> float(vrex_penalty([torch.tensor(1.0), torch.tensor(3.0)]))
    1.0
    """
    r = risks if isinstance(risks, torch.Tensor) else torch.stack(list(risks))
    if r.ndim != 1 or len(r) < 2:
        raise ValidationError(f"vrex_penalty needs the risks of at least 2 environments, shape (n_environments,); "
                              f"got shape {tuple(r.shape)}")
    return r.var(unbiased=False)


def penalty_schedule(step: int, penalty_weight: float, anneal_steps: int) -> tuple[float, float]:
    """The reference code's annealing: ``(weight, divisor)`` of the penalty at optimizer ``step``.

    The weight is 1 for the first ``anneal_steps`` steps, then ``penalty_weight``; once it exceeds
    1 the whole loss is divided by it ("to keep gradients in a reasonable range"), so the loss is
    ``(risk + weight · penalty) / divisor``.

    Example
    -------
    >>> penalty_schedule(0, 1e4, 190), penalty_schedule(190, 1e4, 190), penalty_schedule(500, 0.0, 0)
    ((1.0, 1.0), (10000.0, 10000.0), (0.0, 1.0))
    """
    weight = 1.0 if step < anneal_steps else float(penalty_weight)
    return weight, max(weight, 1.0)


def check_environments(y: Any, environments: Any) -> list[Any]:
    """The distinct environments of ``environments`` (in order of appearance), after checking
    that every one holds at least two classes in ``y``.

    An environment with a single class has a risk that a constant classifier drives to zero, so
    its penalty says nothing about invariance: IRM and V-REx refuse it.

    Example
    -------
    >>> check_environments(np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"]))
    ['a', 'b']
    >>> check_environments(np.array([0, 1, 1, 1]), np.array(["a", "a", "b", "b"]))
    Traceback (most recent call last):
    ...
    crossfeed.exceptions.ValidationError: environment 'b' holds only class 1 (2 rows); ...
    """
    y, environments = np.asarray(y), np.asarray(environments)
    if y.shape != environments.shape or y.ndim != 1:
        raise ValidationError(f"y and environments must be 1-D of the same length; got shapes {y.shape} and "
                              f"{environments.shape}")
    names = list(dict.fromkeys(environments.tolist()))
    if len(names) < 2:
        raise ValidationError(f"invariance needs at least 2 environments (domains); got {names}. Give the strategy "
                              "experts of other domains than the general one")
    for name in names:
        present = np.unique(y[environments == name])
        if len(present) < 2:
            n_rows = int((environments == name).sum())
            raise ValidationError(
                f"environment {name!r} holds only class {present.tolist()[0]!r} ({n_rows} rows); every environment "
                "needs labels of at least two classes for IRM / V-REx. Add labelled rows of the other classes to "
                "that domain or leave its expert out")
    return names


# -- the hook on the one training loop -----------------------------------------------------------
@dataclass
class EnvironmentData(TrainingData):
    """Training data with the environment of every row: the typed channel from ``prepare`` to
    ``hooks`` of the invariance strategies.

    environments : array of shape (n_samples,), the environment (domain name) of each row.
    """

    environments: np.ndarray = field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.environments = np.asarray(self.environments)
        if self.environments.shape != (len(self.X),):
            raise ValidationError(f"environments must have shape (n_samples,) = ({len(self.X)},); got "
                                  f"{self.environments.shape}")


class EnvironmentPenaltyHook(BalancedSampler):
    """Batches with rows of every environment, and ``(risk + weight · penalty) / divisor`` as their loss.

    A :class:`~crossfeed.training.BalancedSampler` over the environments (so every batch holds
    each of them equally), whose base loss is the cross-entropy divided by the divisor of
    :func:`penalty_schedule` and whose extra loss is ``weight · penalty / divisor``, the penalty
    computed from the logits and labels of every environment in the batch. The schedule counts
    optimizer steps (batches).

    Parameters
    ----------
    y : array of shape (n_samples,), class indices of the training rows.
    environments : array of shape (n_samples,), the environment of every row (checked by
        :func:`check_environments`).
    penalty : callable [(logits, y) of each environment] -> scalar tensor.
    penalty_weight : float >= 0, the weight after annealing.
    anneal_steps : int >= 0, steps with weight 1 first.
    l2_weight : float >= 0, weight of the squared L2 norm of the network's parameters, added to
        the loss and divided with it (the reference code's ``l2_regularizer_weight``; unlike the
        optimizer's weight decay it fades with the divisor after annealing).
    """

    def __init__(self, y: Any, environments: Any, penalty: EnvironmentPenalty, penalty_weight: float,
                 anneal_steps: int, l2_weight: float = 0.0) -> None:
        names = check_environments(y, environments)
        super().__init__(environments)
        codes = {name: i for i, name in enumerate(names)}
        self._env = torch.as_tensor([codes[e] for e in np.asarray(environments).tolist()])
        self._penalty, self._weight, self._anneal = penalty, float(penalty_weight), int(anneal_steps)
        self._l2 = float(l2_weight)
        self.step = 0

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self._env = self._env.to(device)

    def batches(self, epoch: int, n_samples: int, batch_size: int,
                generator: torch.Generator) -> Iterator[torch.Tensor]:
        for idx in super().batches(epoch, n_samples, batch_size, generator):
            yield idx
            self.step += 1  # resumed after the loop trained on ``idx``

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        if batch.validation:
            return None
        _, divisor = penalty_schedule(self.step, self._weight, self._anneal)
        return F.cross_entropy(logits, batch.y, reduction="none") / divisor

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        weight, divisor = penalty_schedule(self.step, self._weight, self._anneal)
        terms = []
        if weight != 0.0:
            env = self._env[batch.index]
            groups = [(logits[env == k], batch.y[env == k]) for k in torch.unique(env)]
            terms.append(weight * self._penalty(groups))
        if self._l2 != 0.0:
            terms.append(self._l2 * sum(p.pow(2).sum() for p in module.parameters() if p.requires_grad))
        return sum(terms) / divisor if terms else None


class InvarianceStrategy(FeedbackStrategy):
    """Base of IRM and V-REx: the domains are the environments, a penalty ties them.

    The large model trains on the pooled *labelled* training data of the general domain and of
    every expert's domain (like ``joint_training``, so ``data_free`` is False: the domains'
    labels leave them; the experts themselves are not used). Every batch holds rows of each
    environment (``BalancedSampler`` over the domains); the loss is the mean cross-entropy plus
    ``penalty_weight`` times :meth:`penalty` over the environments of the batch, with the IRM
    reference code's annealing (weight 1 for the first ``anneal_steps`` optimizer steps) and
    rescaling (the loss divided by the weight once it exceeds 1), and optionally its L2 term
    (``l2_weight``, divided with the loss).

    Subclasses declare ``params`` (``penalty_weight``, ``anneal_steps`` and their own) and
    implement :meth:`penalty`. Reports ``info["train_samples"]`` per environment.
    """

    data_free = False
    params = {
        "penalty_weight": Param(float, low=0.0, help="weight of the invariance penalty after annealing; 0: ERM"),
        "anneal_steps": Param(int, low=0, help="optimizer steps with penalty weight 1 before penalty_weight"),
        "l2_weight": Param(float, low=0.0, help="squared L2 norm of the weights in the loss, rescaled with it"),
    }
    penalty_weight: float
    anneal_steps: int
    l2_weight: float

    def penalty(self, groups: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The penalty of one batch from the ``(logits, y)`` of each of its environments."""
        raise NotImplementedError

    def prepare(self, ctx: FeedbackContext) -> EnvironmentData:
        suite = ctx.suite
        general, _, _ = general_data(suite)
        names = [general, *(n for n in ctx.experts if n != general)]
        X, y = suite.pooled("train", names)
        environments = np.concatenate([np.full(len(suite[n].y_train), n, dtype=object) for n in names])
        check_environments(y, environments)
        return EnvironmentData(flat(X), np.asarray(y), environments=environments,
                               info={"train_samples": {n: len(suite[n].y_train) for n in names}})

    def hooks(self, ctx: FeedbackContext, data: EnvironmentData) -> list[TrainingHook]:
        y = np.searchsorted(ctx.classes, np.asarray(data.y))
        return [EnvironmentPenaltyHook(y, data.environments, self.penalty, self.penalty_weight, self.anneal_steps,
                                       self.l2_weight)]


# -- attributions and their agreement --------------------------------------------------------------
def _module_of(classifier: Any) -> nn.Module:
    module = classifier if isinstance(classifier, nn.Module) else getattr(classifier, "module_", None)
    if not isinstance(module, nn.Module):
        raise ValidationError(
            f"integrated gradients need a torch network: a fitted TorchClassifier or an nn.Module; got "
            f"{type(classifier).__name__}. Attribute a torch expert instead")
    return module


def integrated_gradients(classifier: Any, X: Any, target: Any = None, baseline: Any = None, n_steps: int = 32,
                         batch_size: int = 256) -> np.ndarray:
    """Integrated Gradients of ``classifier``'s logits (captum), one row per sample.

    ``IG_j(x) = (x_j - b_j) · ∫_0^1 ∂f_t(b + a (x - b)) / ∂x_j da``; by completeness a row sums
    to ``f_t(x) - f_t(b)`` (up to the quadrature error of ``n_steps``).

    Parameters
    ----------
    classifier : a fitted TorchClassifier (its ``module_``) or an nn.Module on flat input.
    X : array of shape (n_samples, n_features)
    target : None (each row's predicted class), an int, or an array of shape (n_samples,) of class
        indices (columns of the logits, i.e. positions in ``classes_``).
    baseline : None (zeros), or an array of shape (n_features,) or (n_samples, n_features).
    n_steps : int >= 1, quadrature points (captum's Gauss-Legendre).
    batch_size : int >= 1, rows attributed at once (each forward pass holds ``batch_size · n_steps`` rows).

    Returns
    -------
    array of shape (n_samples, n_features), float32.

    Example
    -------
    >>> net = nn.Linear(3, 2)
    >>> attr = integrated_gradients(net, np.ones((1, 3), dtype="float32"), target=1)
    >>> bool(np.allclose(attr.sum(), (net(torch.ones(1, 3)) - net(torch.zeros(1, 3)))[0, 1].item(), atol=1e-5))
    True
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise missing_dependency("captum", "explain") from None
    module = _module_of(classifier)
    n_steps, batch_size = check_int(n_steps, "n_steps", 1), check_int(batch_size, "batch_size", 1)
    if len(X) == 0:
        raise ValidationError("integrated_gradients needs at least one row of X; got none")
    device = next(module.parameters()).device
    x = torch.as_tensor(np.asarray(X, dtype=np.float32)).reshape(len(X), -1).to(device)
    base = torch.zeros_like(x) if baseline is None else \
        torch.as_tensor(np.asarray(baseline, dtype=np.float32)).to(device).expand_as(x).contiguous()
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            logits = module(x)
        t, ig = _targets(target, logits), IntegratedGradients(module)
        parts = [ig.attribute(x[i: i + batch_size], baselines=base[i: i + batch_size], target=t[i: i + batch_size],
                              n_steps=n_steps).detach() for i in range(0, len(x), batch_size)]
    finally:
        module.train(was_training)
    return torch.cat(parts).cpu().numpy().astype(np.float32)


def _targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    n, n_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(np.broadcast_to(np.asarray(target), (n,)).astype(np.int64)).to(logits.device)
    if bool(((t < 0) | (t >= n_classes)).any()):
        raise ValidationError(f"target must hold class indices in 0..{n_classes - 1}; got {np.asarray(target)!r}")
    return t


def attribution_agreement(attributions_by_expert: Sequence[Any], top_fraction: float = 0.2) -> np.ndarray:
    """Per feature, the fraction of experts that rank it among their top ``top_fraction`` features.

    Each expert's importance of feature ``j`` is its mean absolute attribution over its rows;
    its top set holds the ``ceil(top_fraction · n_features)`` most important features. A feature
    that every expert relies on scores 1, one that none does scores 0 (top-q rank agreement).

    Parameters
    ----------
    attributions_by_expert : sequence of arrays, one per expert, of shape (n_samples_k, n_features)
        (or (n_features,), an importance already); the experts may attribute different rows.
    top_fraction : float in (0, 1].

    Returns
    -------
    array of shape (n_features,), values in {0, 1/K, ..., 1} for K experts.

    Example
    -------
    >>> a = np.array([[3.0, 2.0, 0.1, 0.0]])            # expert 1 relies on features 0 and 1
    >>> b = np.array([[-3.0, 0.0, 2.0, 0.0]])           # expert 2 on features 0 and 2
    >>> attribution_agreement([a, b], top_fraction=0.5).tolist()
    [1.0, 0.5, 0.5, 0.0]
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValidationError(f"top_fraction must be in (0, 1]; got {top_fraction!r}")
    if len(attributions_by_expert) == 0:
        raise ValidationError("attribution_agreement needs the attributions of at least one expert")
    importances = [np.abs(np.asarray(a, dtype=np.float64)).reshape(-1, np.shape(a)[-1]).mean(axis=0)
                   for a in attributions_by_expert]
    n_features = importances[0].shape[0]
    if any(imp.shape != (n_features,) for imp in importances):
        raise ValidationError(f"every expert's attributions need the same number of features; got "
                              f"{[imp.shape[0] for imp in importances]}")
    k = math.ceil(top_fraction * n_features)
    votes = np.zeros(n_features)
    for imp in importances:
        votes[np.argsort(-imp, kind="stable")[:k]] += 1.0
    return votes / len(importances)


def agreement_mask(agreement: Any, min_agreement: float = 0.5) -> np.ndarray:
    """Boolean mask of shape (n_features,): the features at least ``min_agreement`` of the experts agree on.

    Example
    -------
    >>> agreement_mask(np.array([1.0, 0.5, 0.0]), 0.5).tolist()
    [True, True, False]
    """
    agreement = np.asarray(agreement, dtype=np.float64)
    if not 0.0 < min_agreement <= 1.0:
        raise ValidationError(f"min_agreement must be in (0, 1]; got {min_agreement!r}")
    mask = agreement >= min_agreement - 1e-12
    if not mask.any():
        raise ValidationError(
            f"no feature reaches the agreement {min_agreement} (the highest is {agreement.max(initial=0.0):.3g}); "
            "lower min_agreement or raise top_fraction")
    return mask


def input_gradient_penalty(module: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Right for the Right Reasons: ``mean_n Σ_j w_j (∂ Σ_c log p_c(x_n) / ∂x_nj)²``.

    Penalises the network's sensitivity to the features with weight ``w_j > 0`` (those the
    explanation should not use). The graph is kept, so the penalty trains the network.

    Parameters
    ----------
    module : nn.Module mapping (batch, n_features) to logits.
    x : Tensor of shape (batch, n_features)
    weights : Tensor of shape (n_features,), >= 0.

    Example
    -------
    >>> net = nn.Linear(2, 2)
    >>> float(input_gradient_penalty(net, torch.ones(3, 2), torch.zeros(2)).detach())
    0.0
    """
    x = x.detach().requires_grad_(True)
    log_p = F.log_softmax(module(x), dim=-1).sum()
    (grad,) = torch.autograd.grad(log_p, [x], create_graph=True)
    return (grad.pow(2) * weights).sum(dim=1).mean()
