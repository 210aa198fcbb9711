"""Domain adaptation: alignment losses as pure functions, and the hook that trains with them.

The large model learns from the general domain's labelled rows (the source) and the unlabelled
field rows of every expert's domain (the targets). Cross-entropy applies to the source rows only;
an alignment term pulls the features of each target domain towards the source features:

- :func:`gradient_reversal` / :func:`dann_lambda`: DANN, Ganin, Ustinova, Ajakan, Germain,
  Larochelle, Laviolette, Marchand & Lempitsky (JMLR 2016), "Domain-Adversarial Training of
  Neural Networks", arXiv 1505.07818;
- :func:`coral_loss`: Deep CORAL, Sun & Saenko (ECCV 2016 workshops), arXiv 1607.01719;
- :func:`mmd_loss`: multi-kernel MMD of DAN, Long, Cao, Wang & Jordan (ICML 2015), "Learning
  Transferable Features with Deep Adaptation Networks", arXiv 1502.02791.

Features are the input of the network's head (its ``classifier`` or ``head`` attribute, i.e.
``embed(x)`` for cnn1d, cnn2d, lstm and sentence_encoder; the last hidden layer for mlp), read
from the loop's own forward pass by a forward pre-hook, so no second forward pass is needed. A
network without such a head is tapped at the input of its last ``nn.Linear``.

Multi-source -> target: every batch holds as many rows of the general domain as of each target
domain (:class:`~crossfeed.training.BalancedSampler` over K + 1 groups). CORAL and MMD align each
target domain with the general domain and average the K terms; DANN's discriminator tells the
K + 1 domains apart (one class per domain).

With ``teach`` (DA + KD) each field row is also taught by its domain's expert: Hinton's KD term
at temperature :data:`TEACH_TEMPERATURE` (Hinton, Vinyals & Dean 2015, arXiv 1503.02531) is added
to the cross-entropy. Without it the experts are not read: source-only adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.distill import kd_loss, teacher_logits
from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import (
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    flat,
    general_data,
    with_unlabelled,
)
from crossfeed.feedback._params import Param
from crossfeed.training import BalancedSampler, Batch, TrainingHook

__all__ = [
    "AdaptationData",
    "AdaptationStrategy",
    "AlignmentHook",
    "PairwiseAlignmentHook",
    "coral_loss",
    "dann_lambda",
    "domain_discriminator",
    "embed_features",
    "feature_layer",
    "gradient_reversal",
    "median_bandwidths",
    "mmd_loss",
]

#: Attribute names under which a network keeps the head applied to its features.
HEAD_NAMES = ("classifier", "head")
#: Temperature of the experts' KD term with ``teach`` (multi_teacher_kd's default).
TEACH_TEMPERATURE = 2.0
#: The parameter every adaptation strategy shares.
TEACH_PARAM = Param(bool, help="also distil each domain's expert on its field rows (DA + KD)")


# -- the maths -------------------------------------------------------------------------------
class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambd * grad, None


def gradient_reversal(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lambd`` in the backward pass.

    Ganin et al. (2016), arXiv 1505.07818, Section 5: the feature extractor thereby *maximises*
    the domain classifier's loss that the classifier itself minimises.

    Example
    -------
    >>> x = torch.ones(3, requires_grad=True)
    >>> gradient_reversal(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
    """
    if isinstance(lambd, bool) or not isinstance(lambd, int | float) or not math.isfinite(lambd) or lambd < 0:
        raise ValidationError(f"gradient_reversal: lambd must be a finite number >= 0; got {lambd!r}")
    return _GradientReversal.apply(x, float(lambd))


def dann_lambda(progress: float) -> float:
    """Ganin's schedule of the reversal strength: ``2 / (1 + exp(-10 p)) - 1`` for progress ``p`` in [0, 1].

    It rises from 0 (the discriminator's noisy early signal is ignored) towards 1.

    Example
    -------
    >>> dann_lambda(0.0), round(dann_lambda(1.0), 4)
    (0.0, 0.9999)
    """
    if isinstance(progress, bool) or not isinstance(progress, int | float) or not 0.0 <= progress <= 1.0:
        raise ValidationError(
            f"dann_lambda: progress must be a number in [0, 1] (share of training done); got {progress!r}")
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def _check_pair(source: torch.Tensor, target: torch.Tensor, what: str, least: int) -> None:
    for name, t in (("source", source), ("target", target)):
        if t.ndim != 2:
            raise ValidationError(f"{what}: {name} must have shape (n_samples, n_features); got {tuple(t.shape)}")
        if len(t) < least:
            raise ValidationError(f"{what}: {name} has {len(t)} rows, it needs at least {least}; raise batch_size")
    if source.shape[1] != target.shape[1]:
        raise ValidationError(
            f"{what}: source and target must have the same number of features; "
            f"got {source.shape[1]} and {target.shape[1]}")


def _covariance(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (len(x) - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ``||C_s - C_t||_F^2 / (4 d^2)`` with the (n - 1)-normalised covariances.

    Sun & Saenko (2016), arXiv 1607.01719, eq. (1).

    Parameters
    ----------
    source : Tensor of shape (n_source, d), n_source >= 2
    target : Tensor of shape (n_target, d), n_target >= 2

    Returns
    -------
    scalar Tensor >= 0 (differentiable)

    Example
    -------
    >>> x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    >>> float(coral_loss(x, x)), bool(coral_loss(x, 3 * x) > 0)
    (0.0, True)
    """
    _check_pair(source, target, "coral_loss", 2)
    d = source.shape[1]
    return ((_covariance(source) - _covariance(target)) ** 2).sum() / (4 * d * d)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)


def median_bandwidths(source: torch.Tensor, target: torch.Tensor,
                      factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> list[float]:
    """DAN's family of Gaussian bandwidths around the median heuristic.

    ``sigma_k = sqrt(factor_k · median ||x - y||^2)`` over all pairs of the pooled rows (Long et al.
    2015 use a family of bandwidths ``2^k`` times the median pairwise distance), the median taken
    over the pairs of distinct rows. Returns plain floats: the bandwidths take no gradient.

    Example
    -------
    >>> median_bandwidths(torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]]), factors=(1.0, 4.0))
    [2.0, 4.0]
    """
    pooled = torch.cat([source, target]).detach()
    i, j = torch.triu_indices(len(pooled), len(pooled), offset=1)
    median = float(_squared_distances(pooled, pooled)[i, j].median()) if len(i) else 0.0
    median = median if median > 0 else 1.0  # all rows equal: any bandwidth gives MMD 0
    return [math.sqrt(f * median) for f in factors]


def mmd_loss(source: torch.Tensor, target: torch.Tensor, bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """Multi-kernel Gaussian MMD^2 between two samples (the *biased* V-statistic estimator).

    ``MMD^2 = mean k(s, s') + mean k(t, t') - 2 mean k(s, t)`` with
    ``k = (1/m) sum_k exp(-||x - y||^2 / (2 sigma_k^2))`` (equal kernel weights), all pairs
    including each row with itself: it is >= 0 and exactly 0 for identical samples. DAN (Long et
    al. 2015, arXiv 1502.02791) uses the same kernel family with a linear-time unbiased estimate.

    Parameters
    ----------
    source : Tensor of shape (n_source, d)
    target : Tensor of shape (n_target, d)
    bandwidths : positive sigmas; None: :func:`median_bandwidths` of the two samples.

    Example
    -------
    >>> x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    >>> float(mmd_loss(x, x)), bool(mmd_loss(x, x + 2.0) > 0.1)
    (0.0, True)
    """
    _check_pair(source, target, "mmd_loss", 1)
    sigmas = median_bandwidths(source, target) if bandwidths is None else list(bandwidths)
    if not sigmas or any(isinstance(s, bool) or not isinstance(s, int | float) or not s > 0 for s in sigmas):
        raise ValidationError(f"mmd_loss: bandwidths must be a non-empty list of numbers > 0; got {bandwidths!r}")

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = _squared_distances(a, b)
        return torch.stack([torch.exp(-d2 / (2 * s * s)) for s in sigmas]).mean(0).mean()

    return (kernel(source, source) + kernel(target, target) - 2 * kernel(source, target)).clamp_min(0.0)


def domain_discriminator(n_features: int, n_domains: int, hidden: int = 64) -> nn.Module:
    """DANN's domain classifier: ``n_features -> hidden -> hidden -> n_domains`` with ReLU.

    Example
    -------
    >>> tuple(domain_discriminator(8, 3)(torch.zeros(5, 8)).shape)
    (5, 3)
    """
    for name, value, least in (("n_features", n_features, 1), ("n_domains", n_domains, 2), ("hidden", hidden, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValidationError(f"domain_discriminator: {name} must be an integer >= {least}; got {value!r}")
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_domains))


# -- where the features are read ---------------------------------------------------------------
def feature_layer(module: nn.Module) -> nn.Module:
    """The submodule whose input is the network's features: its head (``classifier`` or ``head``),
    else its last ``nn.Linear``. Raises when nothing trainable comes before it (e.g. ``linear``)."""
    layer = next((getattr(module, n) for n in HEAD_NAMES if isinstance(getattr(module, n, None), nn.Module)), None)
    if layer is None:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        layer = linears[-1] if linears else None
    own = {id(p) for p in layer.parameters()} if layer is not None else set()
    if layer is None or not any(id(p) not in own and p.requires_grad for p in module.parameters()):
        raise ValidationError(
            f"domain adaptation aligns the features a network computes before its head, but "
            f"{type(module).__name__} has {'no nn.Linear head' if layer is None else 'no trainable layer before it'}. "
            "Use an architecture with a feature extractor: cnn1d, cnn2d, mlp, lstm or sentence_encoder")
    return layer


def _feature_width(layer: nn.Module) -> int:
    first = next((m for m in layer.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValidationError(f"cannot tell the feature width of the head {type(layer).__name__}: it has no nn.Linear")
    return first.in_features


def embed_features(model: Any, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The features (input of :func:`feature_layer`) of a fitted TorchClassifier or an nn.Module on ``X``.

    A TorchClassifier predicts as usual (its own input preparation and device) while the features
    are read; a bare module is run in eval mode on the rows of ``X`` flattened.

    Returns an array of shape (n_samples, n_features_of_the_head).

    Example
    -------
    >>> from crossfeed.models import build_module
    >>> embed_features(build_module("mlp", 4, 2, hidden=[3]), np.zeros((5, 4))).shape
    (5, 3)
    """
    module = getattr(model, "module_", model)
    captured: list[torch.Tensor] = []
    handle = feature_layer(module).register_forward_pre_hook(
        lambda _, inputs: captured.append(inputs[0].detach().float().cpu()))
    try:
        if hasattr(model, "predict_logits"):
            model.predict_logits(X, batch_size=batch_size)
        else:
            was_training = module.training
            module.eval()
            rows, device = flat(X), next(module.parameters()).device
            with torch.no_grad():
                for start in range(0, len(rows), batch_size):
                    module(torch.as_tensor(rows[start: start + batch_size]).to(device))
            module.train(was_training)
    finally:
        handle.remove()
    return torch.cat(captured).numpy()


# -- data and hook -----------------------------------------------------------------------------
@dataclass
class AdaptationData(TrainingData):
    """Source rows (the general domain, labelled) then the target rows of each domain (unlabelled).

    groups : array of int of shape (n_samples,): 0 on general rows, ``k`` on the field rows of
        ``domains[k - 1]``.
    domains : the target domains in group order.
    teacher_logits : array of shape (n_samples, n_classes) or None: with ``teach``, each field
        row's expert logits (zeros on the general rows, which keep their labels).
    """

    groups: np.ndarray = field(kw_only=True)
    domains: tuple[str, ...] = field(kw_only=True)
    teacher_logits: np.ndarray | None = field(default=None, kw_only=True)


class AlignmentHook(TrainingHook):
    """Cross-entropy on the labelled rows plus ``weight`` times an alignment term of the features.

    It owns the balanced sampler (so it knows the share of training done, ``progress``), reads the
    features at the input of :func:`feature_layer` and calls :meth:`alignment` with the features
    and group of every row of the batch. Subclasses implement :meth:`alignment`; DANN also adds its
    discriminator's parameters in :meth:`extra_parameters`.

    Parameters
    ----------
    groups : array of int of shape (n_samples,), 0 = source, 1..K = target domains.
    labelled : array of bool of shape (n_samples,).
    weight : float >= 0, weight of the alignment term (0: source-only training on the same batches).
    epochs : int, epochs of the run (for ``progress``).
    teacher_logits : array of shape (n_samples, n_classes) or None; given, the unlabelled rows add
        ``kd_loss`` against them at :data:`TEACH_TEMPERATURE` to the base loss.
    """

    def __init__(self, groups: np.ndarray, labelled: np.ndarray, weight: float, epochs: int,
                 teacher_logits: np.ndarray | None = None) -> None:
        self._groups = torch.as_tensor(np.asarray(groups, dtype=np.int64))
        self._labelled = torch.as_tensor(np.asarray(labelled, dtype=bool))
        self._teacher = None if teacher_logits is None else torch.as_tensor(np.asarray(teacher_logits, np.float32))
        self.n_groups = int(self._groups.max()) + 1
        self.weight = float(weight)
        self.epochs = epochs
        self.progress = 0.0
        self._sampler = BalancedSampler(np.asarray(groups))
        self._features: torch.Tensor | None = None
        self._handle: Any = None

    def setup(self, module: nn.Module, device: torch.device) -> list[nn.Parameter]:
        layer = feature_layer(module)
        self._handle = layer.register_forward_pre_hook(self._record)
        self._groups, self._labelled = self._groups.to(device), self._labelled.to(device)
        if self._teacher is not None:
            self._teacher = self._teacher.to(device)
        return list(self.extra_parameters(_feature_width(layer), device))

    def extra_parameters(self, n_features: int, device: torch.device) -> list[nn.Parameter]:
        """Trainable parameters of the alignment term itself (none by default)."""
        return []

    def alignment(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """The alignment term of one batch: features (batch, d), groups (batch,) -> scalar."""
        raise NotImplementedError

    def _record(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._features = inputs[0]

    def batches(self, epoch: int, n_samples: int, batch_size: int,
                generator: torch.Generator) -> Iterator[torch.Tensor]:
        if batch_size // self.n_groups < 2:
            raise ValidationError(
                f"domain adaptation needs at least 2 rows of each of the {self.n_groups} domains per batch; "
                f"batch_size {batch_size} gives {batch_size // self.n_groups}. "
                f"Raise batch_size to {2 * self.n_groups} or more")
        parts = list(self._sampler.batches(epoch, n_samples, batch_size, generator))
        for i, idx in enumerate(parts):
            self.progress = min(1.0, (epoch + i / len(parts)) / self.epochs)
            yield idx

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        """Mean cross-entropy over the batch's labelled rows (a scalar): field rows have no labels.
        With teacher logits, plus the mean KD term over the batch's field rows."""
        if batch.validation:
            return None
        rows = self._labelled[batch.index]
        loss = F.cross_entropy(logits[rows], batch.y[rows]) if bool(rows.any()) else logits.sum() * 0.0
        if self._teacher is not None and not bool(rows.all()):
            loss = loss + kd_loss(logits[~rows], self._teacher[batch.index[~rows]], TEACH_TEMPERATURE)
        return loss

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        features, self._features = self._features, None  # each batch must bring its own
        if features is None or len(features) != len(batch.x):
            raise ValidationError("domain adaptation reads the features at the input of the network's head, but the "
                                  "network's forward did not call it on this batch")
        if self.weight == 0.0:
            return None
        return self.weight * self.alignment(features.float(), self._groups[batch.index])

    def teardown(self, module: nn.Module) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class PairwiseAlignmentHook(AlignmentHook):
    """Mean over the target domains of ``discrepancy(source features, domain features)``."""

    def __init__(self, groups: np.ndarray, labelled: np.ndarray, weight: float, epochs: int,
                 teacher_logits: np.ndarray | None = None, *, discrepancy: Any) -> None:
        super().__init__(groups, labelled, weight, epochs, teacher_logits)
        self.discrepancy = discrepancy

    def alignment(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        source = features[groups == 0]
        terms = [self.discrepancy(source, features[groups == k]) for k in range(1, self.n_groups)]
        return torch.stack(terms).mean()


class AdaptationStrategy(FeedbackStrategy):
    """Shared part of the domain adaptation strategies: the data and the hook (not registered).

    ``prepare``: the general domain's labelled training rows, then the unlabelled ``X_field`` rows
    of every expert's domain (the experts teach them only with ``teach``). ``hooks``: the balanced
    sampler and the alignment term, from :meth:`alignment_hook` (:meth:`hook_args` gives what
    every hook takes). Subclasses store ``weight`` and ``teach``. Reports ``info["field_samples"]``.
    """

    needs_field_data = True
    data_free = True
    weight: float
    teach: bool

    def prepare(self, ctx: FeedbackContext) -> AdaptationData:
        _, X_gen, y_gen = general_data(ctx.suite)
        domains = tuple(name for name in ctx.experts if name != ctx.general)
        if not domains:
            raise ValidationError(f"the {self.name!r} strategy adapts to the experts' domains, but the only expert is "
                                  f"the general domain's ({ctx.general!r}); give experts of the shifted domains")
        fields = [flat(_field_rows(ctx, name, self.name)) for name in domains]
        X = np.concatenate([flat(X_gen), *fields])
        y, labelled = with_unlabelled(y_gen, len(X) - len(X_gen), ctx.classes[0])
        groups = np.concatenate([np.full(len(f), k, np.int64) for k, f in enumerate([X_gen, *fields])])
        info = {"field_samples": {name: len(f) for name, f in zip(domains, fields, strict=True)}}
        teacher = None
        if self.teach:
            taught = [teacher_logits(ctx.experts[n], f) for n, f in zip(domains, fields, strict=True)]
            teacher = np.concatenate([np.zeros((len(X_gen), len(ctx.classes)), np.float32), *taught])
        return AdaptationData(X, y, info=info, labelled_mask=labelled, groups=groups, domains=domains,
                              teacher_logits=teacher)

    def hook_args(self, ctx: FeedbackContext, data: AdaptationData) -> dict[str, Any]:
        """The arguments of :class:`AlignmentHook` that every adaptation strategy passes alike."""
        return {"groups": data.groups, "labelled": data.labelled, "weight": self.weight,
                "epochs": ctx.settings.epochs, "teacher_logits": data.teacher_logits}

    def hooks(self, ctx: FeedbackContext, data: AdaptationData) -> list[TrainingHook]:
        return [self.alignment_hook(ctx, data)]

    def alignment_hook(self, ctx: FeedbackContext, data: AdaptationData) -> AlignmentHook:
        raise NotImplementedError


def _field_rows(ctx: FeedbackContext, name: str, strategy: str) -> np.ndarray:
    X_field = ctx.suite[name].X_field
    if X_field is None or len(X_field) == 0:
        raise ValidationError(
            f"domain {name!r} has no unlabelled field data (X_field), which the {strategy!r} strategy aligns with the "
            f"general domain; expected at least one field row. Collect field samples for {name!r} or drop its expert")
    return X_field
