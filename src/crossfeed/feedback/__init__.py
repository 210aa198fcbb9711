"""Feedback: the domain experts teach the large model (the feedback step of the cycle).

- :class:`FeedbackStrategy`: the small base class (hooks ``prepare``, ``initial_module``,
  ``hooks`` and ``remember`` that receive a :class:`FeedbackContext` and return values; parameters
  declared once as :class:`Param` s); :class:`RoundsStrategy`: strategies with an outer loop
  (``local_tasks`` / ``aggregate``); :class:`TrainSettings`: the explicit training settings of a
  step; :data:`STRATEGIES`, :func:`register` and :func:`discover`: the registry. Every public
  module of this package is a strategy and is found at import: adding one edits no other file.
- :func:`absorb`: train a copy of the large model with a strategy; returns it and a
  :class:`FeedbackReport` (accuracy before / after, absorption, forgetting, time).
  :func:`absorb_sequence`: the domains one after another (setting c), with a :class:`SequenceReport`.

Strategies by registry name:

- ``"multi_teacher_kd"`` (:class:`MultiTeacherKD`): data-free multi-teacher distillation on field data.
- ``"generative_augment"`` (:class:`GenerativeAugment`): per domain, a conditional VAE or GAN
  fitted on the field rows sends synthetic rows that the domain's expert teaches on.
- ``"data_feedback"`` (:class:`DataFeedback`): confident pseudo-labels of field data join the
  general training data.
- ``"ensemble_distill"`` (:class:`EnsembleDistill`): the ensemble of the experts and the large
  model teaches on the unlabelled data (FedDF).
- ``"multitask"`` (:class:`MultiTask`): shared trunk, one head per domain plus the general head.
- ``"transfer_init"`` (:class:`TransferInit`): the experts' layers transplanted where they fit,
  then distillation.
- ``"merge"`` (:class:`Merge`): weight averaging, task arithmetic or TIES merging of experts that
  share the large model's architecture.
- ``"fedavg"``, ``"fedprox"`` (:class:`FedAvg`, :class:`FedProx`): federated averaging over the
  domains as clients, on the rounds driver; ``"reptile"`` (:class:`Reptile`): a meta-learned
  initialisation over the domains as tasks.
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
    DistillData,
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    TrainSettings,
    discover,
    register,
)
from crossfeed.feedback._continual import diagonal_fisher, ewc_penalty
from crossfeed.feedback._generative import (
    GENERATORS,
    ConditionalGAN,
    ConditionalVAE,
    c2st_accuracy,
    dcr_ratio,
    expert_agreement,
)
from crossfeed.feedback._merging import average_weights, task_arithmetic, task_vectors, ties_merge
from crossfeed.feedback._params import Param, check_params
from crossfeed.feedback._rounds import Failure, LocalTask, LocalUpdate, RoundLog, RoundsStrategy, RoundState
from crossfeed.feedback._sequence import SequenceReport, absorb_sequence

# Every public module of this package registers its strategy: import them all (and plug-ins).
discover(__name__)

from crossfeed.feedback.data_feedback import DataFeedback, confident_pseudo_labels  # noqa: E402
from crossfeed.feedback.ensemble_distill import EnsembleDistill  # noqa: E402
from crossfeed.feedback.ewc import EWC  # noqa: E402
from crossfeed.feedback.fedavg import FedAvg  # noqa: E402
from crossfeed.feedback.fedprox import FedProx, proximal_term  # noqa: E402
from crossfeed.feedback.generative_augment import GenerativeAugment  # noqa: E402
from crossfeed.feedback.joint_training import JointTraining  # noqa: E402
from crossfeed.feedback.lwf import LwF  # noqa: E402
from crossfeed.feedback.merge import Merge  # noqa: E402
from crossfeed.feedback.multi_teacher_kd import MultiTeacherKD, confidence_weighted_logits  # noqa: E402
from crossfeed.feedback.multitask import MultiTask  # noqa: E402
from crossfeed.feedback.replay import Replay  # noqa: E402
from crossfeed.feedback.reptile import Reptile, reptile_update  # noqa: E402
from crossfeed.feedback.sequential_kd import SequentialKD  # noqa: E402
from crossfeed.feedback.transfer_init import TransferInit  # noqa: E402

__all__ = [
    "ConditionalGAN",
    "ConditionalVAE",
    "DataFeedback",
    "DistillData",
    "DomainFeedback",
    "EWC",
    "EnsembleDistill",
    "Failure",
    "FedAvg",
    "FedProx",
    "FeedbackContext",
    "FeedbackReport",
    "FeedbackStrategy",
    "GENERATORS",
    "GenerativeAugment",
    "JointTraining",
    "LocalTask",
    "LocalUpdate",
    "LwF",
    "Merge",
    "MultiTask",
    "MultiTeacherKD",
    "Param",
    "Replay",
    "Reptile",
    "RoundLog",
    "RoundState",
    "RoundsStrategy",
    "STRATEGIES",
    "SequenceReport",
    "SequentialKD",
    "TrainSettings",
    "TrainingData",
    "TransferInit",
    "absorb",
    "absorb_sequence",
    "average_weights",
    "c2st_accuracy",
    "check_params",
    "confidence_weighted_logits",
    "confident_pseudo_labels",
    "dcr_ratio",
    "diagonal_fisher",
    "discover",
    "ewc_penalty",
    "expert_agreement",
    "proximal_term",
    "register",
    "reptile_update",
    "task_arithmetic",
    "task_vectors",
    "ties_merge",
]
