"""Feedback: the domain experts teach the large model (the feedback step of the cycle).

- :class:`FeedbackStrategy`: the small base class (hooks ``prepare`` and ``hooks`` that return
  values); :data:`STRATEGIES` and :func:`register`: the registry of strategies by name.
- :func:`absorb`: train a copy of the large model with a strategy; returns it and a
  :class:`FeedbackReport` (accuracy before / after, absorption, forgetting, time).
- ``"multi_teacher_kd"`` (:class:`MultiTeacherKD`): data-free multi-teacher distillation on field data.
- ``"data_feedback"`` (:class:`DataFeedback`): confident pseudo-labels of field data join the
  general training data.
- ``"continued_training"`` (the base class): the control, continued training on the general data.
"""

from crossfeed.feedback._absorb import DomainFeedback, FeedbackReport, absorb
from crossfeed.feedback._base import (
    STRATEGIES,
    FeedbackStrategy,
    TrainingData,
    register,
)
from crossfeed.feedback.data_feedback import DataFeedback, confident_pseudo_labels
from crossfeed.feedback.multi_teacher_kd import (
    MultiTeacherKD,
    confidence_weighted_logits,
)

__all__ = [
    "DataFeedback",
    "DomainFeedback",
    "FeedbackReport",
    "FeedbackStrategy",
    "MultiTeacherKD",
    "STRATEGIES",
    "TrainingData",
    "absorb",
    "confidence_weighted_logits",
    "confident_pseudo_labels",
    "register",
]
