"""Feedback: the domain experts teach the large model (the feedback step of the cycle).

- :class:`FeedbackStrategy`: the small base class (hooks ``prepare``, ``initial_module``,
  ``hooks`` and ``remember`` that return values); :data:`STRATEGIES` and :func:`register`: the
  registry of strategies by name.
- :func:`absorb`: train a copy of the large model with a strategy; returns it and a
  :class:`FeedbackReport` (accuracy before / after, absorption, forgetting, time).
  :func:`absorb_sequence`: the domains one after another (setting c), with a :class:`SequenceReport`.

Strategies by registry name:

- ``"multi_teacher_kd"`` (:class:`MultiTeacherKD`): data-free multi-teacher distillation on field data.
- ``"data_feedback"`` (:class:`DataFeedback`): confident pseudo-labels of field data join the
  general training data.
- ``"ensemble_distill"`` (:class:`EnsembleDistill`): the ensemble of the experts and the large
  model teaches on the unlabelled data (FedDF).
- ``"multitask"`` (:class:`MultiTask`): shared trunk, one head per domain plus the general head.
- ``"transfer_init"`` (:class:`TransferInit`): the experts' layers transplanted where they fit,
  then distillation.
- ``"merge"`` (:class:`Merge`): weight averaging, task arithmetic or TIES merging of experts that
  share the large model's architecture.
- ``"ewc"``, ``"lwf"``, ``"replay"`` (:class:`EWC`, :class:`LwF`, :class:`Replay`): continual
  learning, domain after domain without forgetting; ``"sequential_kd"`` (:class:`SequentialKD`)
  is their unprotected baseline.
- ``"joint_training"`` (:class:`JointTraining`): the upper reference on pooled labelled data
  (setting a; not data-free).
- ``"continued_training"`` (the base class): the control, continued training on the general data.
"""

from crossfeed.feedback._absorb import DomainFeedback, FeedbackReport, absorb
from crossfeed.feedback._base import (
    STRATEGIES,
    FeedbackStrategy,
    TrainingData,
    register,
)
from crossfeed.feedback._merging import (
    average_weights,
    task_arithmetic,
    task_vectors,
    ties_merge,
)
from crossfeed.feedback._sequence import SequenceReport, absorb_sequence
from crossfeed.feedback.continual import (
    EWC,
    LwF,
    Replay,
    SequentialKD,
    diagonal_fisher,
    ewc_penalty,
)
from crossfeed.feedback.data_feedback import DataFeedback, confident_pseudo_labels
from crossfeed.feedback.ensemble_distill import EnsembleDistill
from crossfeed.feedback.joint_training import JointTraining
from crossfeed.feedback.merge import Merge
from crossfeed.feedback.multi_teacher_kd import (
    MultiTeacherKD,
    confidence_weighted_logits,
)
from crossfeed.feedback.multitask import MultiTask
from crossfeed.feedback.transfer_init import TransferInit

__all__ = [
    "DataFeedback",
    "DomainFeedback",
    "EWC",
    "EnsembleDistill",
    "FeedbackReport",
    "FeedbackStrategy",
    "JointTraining",
    "LwF",
    "Merge",
    "MultiTask",
    "MultiTeacherKD",
    "Replay",
    "STRATEGIES",
    "SequenceReport",
    "SequentialKD",
    "TrainingData",
    "TransferInit",
    "absorb",
    "absorb_sequence",
    "average_weights",
    "confidence_weighted_logits",
    "confident_pseudo_labels",
    "diagonal_fisher",
    "ewc_penalty",
    "register",
    "task_arithmetic",
    "task_vectors",
    "ties_merge",
]
