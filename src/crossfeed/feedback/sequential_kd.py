"""Sequential distillation without protection: the lower reference of continual learning (setting c).

See :mod:`crossfeed.feedback._continual` for the setting and what the protected strategies add."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from crossfeed.data import DomainSuite
from crossfeed.distill import teacher_logits
from crossfeed.feedback._base import (
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    flat,
    register,
    with_unlabelled,
)
from crossfeed.feedback._continual import (
    FrozenNormStatsHook,
    check_covers_classes,
)
from crossfeed.feedback._params import Param
from crossfeed.training import TrainingHook

__all__ = ['SequentialKD']


@register("sequential_kd")
class SequentialKD(FeedbackStrategy):
    """Learn the current experts' domains from their field data, with nothing protecting the past.

    Every field sample's target is its domain expert's probabilities (the base cross-entropy is
    Hinton's distillation at temperature 1). Without any general data in the step, the large
    model drifts towards the new domains: this is the forgetting that :class:`EWC`, :class:`LwF`
    and :class:`Replay` reduce. Reports ``info["field_samples"]`` per domain.

    Parameters
    ----------
    freeze_norm_stats : bool
        Keep batch norm's running statistics at the large model's values during each step
        (:class:`FrozenNormStatsHook`). They are buffers, not weights: no penalty or distillation
        term protects them, and unfrozen they follow each new domain. Measured on mnist1d
        (``tests/feedback/test_continual.py``, seed 0; mean forgetting of the absorbed domains /
        forgetting of the general domain, frozen -> not frozen): sequential_kd 0.180 / 0.464 ->
        0.199 / 0.456, ewc 0.006 / 0.028 -> 0.111 / 0.250, lwf -0.003 / 0.042 -> 0.025 / 0.152,
        replay -0.001 / 0.076 -> 0.029 / 0.084.

    Example
    -------
    >>> final, report = absorb_sequence(large, experts, suite, "sequential_kd")  # doctest: +SKIP
    >>> report.mean_forgetting()                                                 # doctest: +SKIP
    """

    needs_field_data = True
    params: ClassVar[dict[str, Param]] = {
        "freeze_norm_stats": Param(bool, help="keep batch norm's running statistics during each step"),
    }

    def __init__(self, freeze_norm_stats: bool = True) -> None:
        self.freeze_norm_stats = freeze_norm_stats

    def prepare(self, ctx: FeedbackContext) -> TrainingData:
        large, experts, suite = ctx.large, ctx.experts, ctx.suite
        X, targets, counts = self._field_targets(experts, suite)
        X_all, targets_all = self._with_memory(X, targets)
        check_covers_classes(targets_all, large.classes_, f"the field data of {sorted(experts)}")
        y, labelled = with_unlabelled(large.classes_[:0], len(X_all), large.classes_[0])
        return TrainingData(X_all, y, soft_targets=targets_all, info={"field_samples": counts},
                            labelled_mask=labelled)

    def hooks(self, ctx: FeedbackContext, data: TrainingData) -> list[TrainingHook]:
        return [FrozenNormStatsHook()] if self.freeze_norm_stats else []

    def _with_memory(self, X: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X, targets

    @staticmethod
    def _field_targets(experts: Mapping[str, Any], suite: DomainSuite) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Every expert's field data and the expert's probabilities on it, in the order of ``experts``."""
        parts_X, parts_t, counts = [], [], {}
        for name, expert in experts.items():
            X_field = flat(suite[name].X_field)
            parts_X.append(X_field)
            parts_t.append(torch.softmax(torch.as_tensor(teacher_logits(expert, X_field)), dim=1).numpy())
            counts[name] = len(X_field)
        return np.concatenate(parts_X), np.concatenate(parts_t).astype(np.float32), counts
