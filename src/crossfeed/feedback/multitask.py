"""Multi-task feedback: a shared trunk, the general head, and one head per expert domain.

Hard parameter sharing (Caruana 1997, "Multitask Learning", Machine Learning 28:41-75; Ruder
2017, "An Overview of Multi-Task Learning in Deep Neural Networks", arXiv 1706.05098): the large
model's trunk (its ``embed``) is shared by several heads. The general head is the large model's
own; each expert's domain gets a head of its own, initialised as a copy of it. The general head
learns the general domain's labelled data, each domain head its domain's unlabelled field data
taught by that domain's expert (Hinton et al. 2015, arXiv 1503.02531), and every task's gradient
reaches the trunk, which is how the domains are absorbed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.distill import kd_loss, teacher_logits
from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import (
    DistillData,
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    flat,
    general_data,
    register,
    with_unlabelled,
)
from crossfeed.feedback._params import Param
from crossfeed.models import TorchClassifier, fitted_copy
from crossfeed.training import Batch, TrainingHook

__all__ = ["DomainHeadsHook", "MultiTask", "split_trunk_head"]

#: Attribute names under which a network keeps the head that maps ``embed(x)`` to logits.
HEAD_NAMES = ("classifier", "head")


def split_trunk_head(module: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The trunk (the module's ``embed`` method) and the attribute name of its head (``classifier`` or ``head``).

    The network must compute ``head(embed(x))``; raises a
    :class:`~crossfeed.exceptions.ValidationError` when it has no ``embed`` or no such head.

    Example
    -------
    >>> from crossfeed.models._architectures import CNN1D
    >>> net = CNN1D(40, 10, size="tiny")
    >>> embed, name = split_trunk_head(net)
    >>> name, tuple(getattr(net, name)(embed(torch.zeros(2, 40))).shape)
    ('classifier', (2, 10))
    """
    embed = getattr(module, "embed", None)
    name = next((n for n in HEAD_NAMES if isinstance(getattr(module, n, None), nn.Module)), None)
    if not callable(embed) or name is None:
        raise ValidationError(
            f"multi-task feedback shares the large network's trunk, so it needs an embed(x) method (the trunk) "
            f"and the head applied to it as an attribute named one of {HEAD_NAMES}; {type(module).__name__} has "
            f"{'no embed method' if not callable(embed) else 'no such head'}. Use an architecture that exposes "
            "them (e.g. 'cnn1d') or another strategy (multi_teacher_kd)"
        )
    return embed, name


class DomainHeadsHook(TrainingHook):
    """Trains one extra head per domain on the trunk's features; the network itself is left as it is.

    The heads are extra parameters returned from ``setup`` (copies of the network's own head), so
    the network keeps its architecture (it can be saved and loaded by name). The trunk's output is
    read from the network's forward pass (a forward pre-hook on its head), not recomputed.

    Parameters
    ----------
    domain_index : array of int of shape (n_samples,), the head of each training row (-1: the
        general head only, i.e. the network's own loss).
    teacher_logits : array of shape (n_samples, n_classes), the experts' logits (unused on rows
        with index -1).
    n_heads : int, number of domain heads.
    temperature : float > 0, distillation temperature.
    head_weight : float >= 0, weight of the domain heads' distillation terms.

    Attributes
    ----------
    heads : nn.ModuleList of the domain heads (after ``setup``).
    """

    def __init__(self, domain_index: np.ndarray, teacher_logits: np.ndarray, n_heads: int,
                 temperature: float, head_weight: float) -> None:
        self._domain = torch.as_tensor(np.asarray(domain_index, dtype=np.int64))
        self._logits = torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
        self.n_heads = n_heads
        self.temperature = temperature
        self.head_weight = head_weight
        self.heads: nn.ModuleList = nn.ModuleList()
        self._features: torch.Tensor | None = None
        self._handle: Any = None

    def setup(self, module: nn.Module, device: torch.device) -> list[nn.Parameter]:
        head = getattr(module, split_trunk_head(module)[1])
        self.heads = nn.ModuleList(copy.deepcopy(head) for _ in range(self.n_heads)).to(device)
        self._handle = head.register_forward_pre_hook(self._record)
        self._domain, self._logits = self._domain.to(device), self._logits.to(device)
        return list(self.heads.parameters())

    def _record(self, head: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._features = inputs[0]

    def targets(self, batch: Batch, module: nn.Module) -> torch.Tensor | None:
        """Hard labels for the general head on general rows; nothing on field rows."""
        general = (self._domain[batch.index] < 0).to(torch.float32)
        return torch.nn.functional.one_hot(batch.y, self._logits.shape[1]).to(torch.float32) * general.unsqueeze(1)

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        if self._features is None or len(self._features) != len(batch.x):
            raise ValidationError(
                "multi-task feedback reads the trunk's features at the head's input, but the network's forward "
                "did not call its head on embed(x); the network must compute head(embed(x))"
            )
        features, self._features = self._features, None  # each batch must bring its own
        domain = self._domain[batch.index]
        total = logits.new_zeros(())
        for d in torch.unique(domain[domain >= 0]).tolist():
            rows = domain == d
            out = self.heads[d](features[rows])
            total = total + kd_loss(out, self._logits[batch.index][rows], self.temperature, reduction="sum")
        return self.head_weight * total / len(batch.x)

    def teardown(self, module: nn.Module) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._features = None, None
        self.heads.cpu().eval()


@dataclass
class DomainHeadsData(DistillData):
    """:class:`DistillData` plus the head of every row: -1 for the general rows, else the index of
    the row's domain among the experts (``domain_index``, shape (n_samples,))."""

    domain_index: np.ndarray = field(kw_only=True)


@register("multitask")
class MultiTask(FeedbackStrategy):
    """Shared trunk, the general head and one distilled head per expert domain.

    Training rows: the general domain's labelled data (cross-entropy on the general head, i.e. the
    large network's own output) and every expert's field data (distillation from that expert on
    its domain's head, weighted by ``head_weight``).

    Prediction. The returned model is the large network with the shared trunk and the general
    head: same architecture, so it saves, loads and warm-starts like ``large``. The domain heads
    stay on the strategy; :meth:`domain_model` puts one in place of the general head, for inputs
    whose domain is known. Measured on mnist1d (``tests/feedback/test_multitask.py``, 20 epochs,
    seed 0; mean test accuracy over the four shifted domains / on the general domain): v0
    0.466 / 0.882, continued training 0.477 / 0.898, the general head 0.522 / 0.894, the mean of
    all heads' probabilities 0.612 / 0.804 (it forgets, and needs a new architecture), each
    domain's own head 0.700 on its domain.

    Parameters
    ----------
    temperature : float > 0, distillation temperature of the domain heads.
    head_weight : float >= 0, weight of the domain heads' terms against the general head's.

    Attributes
    ----------
    heads_ : dict domain name -> trained head (nn.Module on the trunk's features), after training.
    model_ : the model :func:`~crossfeed.feedback.absorb` returned with this strategy.

    Example
    -------
    >>> new, report = absorb(large, experts, suite, "multitask", epochs=10)  # doctest: +SKIP
    """

    needs_field_data = True
    params: ClassVar[dict[str, Param]] = {
        "temperature": Param(float, low=0.0, low_open=True, help="distillation temperature of the domain heads"),
        "head_weight": Param(float, low=0.0, help="weight of the domain heads' terms"),
    }

    def __init__(self, temperature: float = 2.0, head_weight: float = 1.0) -> None:
        self.temperature = temperature
        self.head_weight = head_weight

    def prepare(self, ctx: FeedbackContext) -> DomainHeadsData:
        large, experts, suite = ctx.large, ctx.experts, ctx.suite
        split_trunk_head(large.module_)
        _, X_gen, y_gen = general_data(suite)
        X_gen = flat(X_gen)
        n_classes = len(large.classes_)
        parts_X, parts_d, parts_t, counts = [X_gen], [np.full(len(X_gen), -1)], [np.zeros((len(X_gen), n_classes))], {}
        for i, name in enumerate(experts):
            X_field = flat(suite[name].X_field)
            parts_X.append(X_field)
            parts_d.append(np.full(len(X_field), i))
            parts_t.append(teacher_logits(experts[name], X_field))
            counts[name] = len(X_field)
        X = np.concatenate(parts_X)
        y, labelled = with_unlabelled(y_gen, len(X) - len(X_gen), large.classes_[0])
        return DomainHeadsData(X, y, info={"field_samples": counts}, labelled_mask=labelled,
                               teacher_logits=np.concatenate(parts_t), domain_index=np.concatenate(parts_d))

    def hooks(self, ctx: FeedbackContext, data: DomainHeadsData) -> list[TrainingHook]:
        self._hook = DomainHeadsHook(data.domain_index, data.teacher_logits, len(ctx.experts),
                                     float(self.temperature), float(self.head_weight))
        return [self._hook]

    def remember(self, ctx: FeedbackContext, new_large: Any, data: TrainingData) -> None:
        experts = ctx.experts
        hook = self.__dict__.pop("_hook", None)
        self.heads_ = {} if hook is None else dict(zip(experts, hook.heads, strict=True))
        self.model_ = new_large

    def domain_model(self, domain: str) -> TorchClassifier:
        """The returned large model with ``domain``'s head in place of the general head.

        An ordinary TorchClassifier of the large model's architecture (its trunk, the domain's
        trained head), so it predicts, combines and saves like any other; use it where the domain
        of the inputs is known.

        Example
        -------
        >>> strategy = MultiTask()                                      # doctest: +SKIP
        >>> new, _ = absorb(large, experts, suite, strategy)            # doctest: +SKIP
        >>> strategy.domain_model("noisy").score(X_noisy, y_noisy)      # doctest: +SKIP
        """
        heads = getattr(self, "heads_", {})
        if domain not in heads:
            raise ValidationError(
                f"no head for domain {domain!r}; this strategy trained heads for {sorted(heads)} "
                "(domain heads exist after absorb has run with epochs >= 1)"
            )
        module = copy.deepcopy(self.model_.module_)
        setattr(module, split_trunk_head(module)[1], copy.deepcopy(heads[domain]))
        return fitted_copy(self.model_, module)

