"""The feedback strategy base class, the data it prepares, and the strategy registry.

A :class:`FeedbackStrategy` is a small class whose hooks do nothing by default and *return*
values: :meth:`~FeedbackStrategy.prepare` returns the data the large model trains on,
:meth:`~FeedbackStrategy.initial_module` the network training starts from,
:meth:`~FeedbackStrategy.hooks` extra :class:`~crossfeed.training.TrainingHook` s for the one
training loop; :meth:`~FeedbackStrategy.remember` lets a strategy that absorbs domains one after
another keep what it needs of the last step. :func:`crossfeed.feedback.absorb` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from torch import nn

from crossfeed._registry import Registry
from crossfeed.data import DomainSuite
from crossfeed.exceptions import ValidationError
from crossfeed.training import TrainingHook

__all__ = ["FeedbackStrategy", "STRATEGIES", "TrainingData", "register"]

#: Unlabelled rows of :class:`TrainingData` carry this label.
UNLABELLED = -1


@dataclass
class TrainingData:
    """What the large model trains on during feedback.

    Attributes
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,), labels in the large model's ``classes_``; unlabelled rows
        (which need ``soft_targets`` or a hook that supplies their targets) hold any placeholder
        and are marked by ``labelled_mask`` (or, without a mask, by the label ``-1``).
    soft_targets : array of shape (n_samples, n_classes), optional
        Probability targets (columns in the order of ``classes_``) that replace the hard labels.
    sample_weight : array of shape (n_samples,), optional
    info : dict, what the strategy wants reported (e.g. pseudo-labels kept per domain); keys that
        start with ``_`` carry data from ``prepare`` to ``hooks`` and are not reported.
    labelled_mask : array of bool of shape (n_samples,), optional; False on unlabelled rows (see
        :func:`with_unlabelled`). Works for any label type, string labels and a real class ``-1`` included.
    """

    X: np.ndarray
    y: np.ndarray
    soft_targets: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    labelled_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.X)
        if n == 0:
            raise ValidationError("feedback training data is empty; the strategy prepared no samples")
        if len(self.y) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but y has {len(self.y)}")
        if self.soft_targets is not None and len(self.soft_targets) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but soft_targets has {len(self.soft_targets)}")
        if self.sample_weight is not None and len(self.sample_weight) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but sample_weight has {len(self.sample_weight)}")
        if self.labelled_mask is not None and len(self.labelled_mask) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but labelled_mask has {len(self.labelled_mask)}")

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of shape (n_samples,): rows with a hard label."""
        if self.labelled_mask is not None:
            return np.asarray(self.labelled_mask, dtype=bool)
        return np.asarray(self.y) != UNLABELLED


def with_unlabelled(y: Any, n_unlabelled: int, placeholder: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``y`` followed by ``n_unlabelled`` unlabelled rows, and the mask of the labelled ones.

    The unlabelled rows hold ``placeholder`` (pass a valid class, e.g. ``large.classes_[0]``): the
    mask, not the value, marks them, so any label type works.

    Example
    -------
    >>> with_unlabelled(np.array(["cat", "dog"]), 2, "cat")
    (array(['cat', 'dog', 'cat', 'cat'], dtype='<U3'), array([ True,  True, False, False]))
    """
    y = np.asarray(y)
    filler = np.full(n_unlabelled, placeholder, dtype=y.dtype if y.size else None)
    return np.concatenate([y, filler]), np.concatenate([np.ones(len(y), bool), np.zeros(n_unlabelled, bool)])


class FeedbackStrategy:
    """How the domain experts teach the large model. Every hook does nothing by default.

    - ``prepare(large, experts, suite)`` -> :class:`TrainingData` or None (None: the general
      domain's labelled training data, i.e. plain continued training).
    - ``initial_module(large, experts, suite)`` -> the ``nn.Module`` training starts from (merged
      or transplanted weights, an architecture with more heads) or None (a copy of ``large.module_``).
      It must map the large model's inputs to its classes' logits.
    - ``hooks(large, experts, suite, data)`` -> extra training hooks (loss terms, targets).
    - ``remember(new_large, experts, suite, data)`` -> None. Called after training; sequential
      strategies (continual learning) keep what they need of this step for the next one.

    The base class itself is the control of every feedback experiment: continued training of the
    large model on the general data, with no help from the experts.

    Class attributes
    ----------------
    name : str, the registry name.
    needs_field_data : bool, True when every expert's domain must have unlabelled field data.
    data_free : bool, False when the strategy reads the domains' labels (only the reference
        ``joint_training`` does); data-free strategies see the experts and unlabelled field data.
    needs_same_architecture : bool, True when every expert must be a TorchClassifier whose
        network has the large model's parameter names and shapes (weight merging).
    """

    name: ClassVar[str] = "continued_training"
    needs_field_data: ClassVar[bool] = False
    needs_same_architecture: ClassVar[bool] = False
    data_free: ClassVar[bool] = True

    def prepare(self, large: Any, experts: Mapping[str, Any], suite: DomainSuite) -> TrainingData | None:
        return None

    def initial_module(self, large: Any, experts: Mapping[str, Any], suite: DomainSuite) -> nn.Module | None:
        return None

    def hooks(
        self, large: Any, experts: Mapping[str, Any], suite: DomainSuite, data: TrainingData
    ) -> list[TrainingHook]:
        return []

    def remember(self, new_large: Any, experts: Mapping[str, Any], suite: DomainSuite, data: TrainingData) -> None:
        return None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_"))
        return f"{type(self).__name__}({params})"


StrategyFactory = Callable[..., FeedbackStrategy]

#: Feedback strategies by name: ``STRATEGIES.get("multi_teacher_kd")(temperature=4.0)``.
STRATEGIES: Registry[StrategyFactory] = Registry("feedback strategy")


def register(name: str) -> Callable[[type[FeedbackStrategy]], type[FeedbackStrategy]]:
    """Class decorator: register a :class:`FeedbackStrategy` subclass under ``name`` (also its ``name``)."""

    def decorator(cls: type[FeedbackStrategy]) -> type[FeedbackStrategy]:
        cls.name = name
        STRATEGIES.add(name, cls)
        return cls

    return decorator


def general_data(suite: DomainSuite) -> tuple[str, np.ndarray, np.ndarray]:
    """The general domain's name and its labelled training data ``(name, X, y)``."""
    name = suite.general_domain
    domain = suite[name]
    return name, domain.X_train, domain.y_train


def flat(X: np.ndarray) -> np.ndarray:
    """Samples flattened to shape (n_samples, n_features), float32."""
    X = np.asarray(X, dtype=np.float32)
    return X.reshape(len(X), -1)


STRATEGIES.add(FeedbackStrategy.name, FeedbackStrategy)
