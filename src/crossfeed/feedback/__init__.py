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
- ``"data_free_kd"`` (:class:`DataFreeKD`): DeepInversion, inputs optimised against each expert's
  BatchNorm statistics teach the large model; no field row is read.
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
  domains as clients, on the rounds driver; ``"feddf"`` (:class:`FedDF`): FedAvg plus server-side
  ensemble distillation, clients of different architectures allowed; ``"fedmd"`` (:class:`FedMD`):
  federated distillation, clients keep their own networks and send logits on public rows;
  ``"dp_fedavg"`` (:class:`DPFedAvg`): FedAvg with clipped updates and Gaussian noise (client-level
  differential privacy, epsilon by Rényi DP); ``"reptile"`` (:class:`Reptile`): a meta-learned
  initialisation over the domains as tasks.
- ``"maml"`` (:class:`MAML`): first-order or second-order MAML (``torch.func``) over the domains
  as tasks; :func:`adapt_k_shot` fine-tunes a meta-initialisation on a new domain's k shots.
- ``"dann"``, ``"coral"``, ``"mmd"`` (:class:`DANN`, :class:`Coral`, :class:`MMD`): unsupervised
  domain adaptation, the large model's features aligned between the general data and the
  unlabelled field data (gradient reversal, covariance matching, multi-kernel MMD).
- ``"self_supervised"`` (:class:`SelfSupervised`): NT-Xent (SimCLR) pretraining of the trunk on
  the unlabelled field pool, then supervised training.
- ``"hierarchical"`` (:class:`Hierarchical`): a taxonomy of the domains (given or learned from the
  experts' behaviour) with one head per group.
- ``"irm"``, ``"vrex"`` (:class:`IRM`, :class:`VREx`): invariant risk minimisation and risk
  extrapolation over the domains as environments; ``"attribution_mask"``
  (:class:`AttributionMask`): multi-teacher distillation that penalises the large model's input
  gradients on the features the experts' Integrated Gradients attributions do not agree on.
- ``"ewc"``, ``"lwf"``, ``"replay"`` (:class:`EWC`, :class:`LwF`, :class:`Replay`): continual
  learning, domain after domain without forgetting; ``"sequential_kd"`` (:class:`SequentialKD`)
  is their unprotected baseline.
- ``"joint_training"`` (:class:`JointTraining`): the upper reference on pooled labelled data
  (setting a; not data-free).
- ``"continued_training"`` (the base class): the control, continued training on the general data.
"""

from crossfeed.feedback._absorb import DomainFeedback, FeedbackReport, RoundsEngine, absorb
from crossfeed.feedback._adaptation import (
    AdaptationStrategy,
    AlignmentHook,
    coral_loss,
    dann_lambda,
    domain_discriminator,
    embed_features,
    gradient_reversal,
    median_bandwidths,
    mmd_loss,
)
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
from crossfeed.feedback._contrastive import AUGMENTATIONS, augmentation_for, nt_xent, pretrain_trunk
from crossfeed.feedback._generative import (
    GENERATORS,
    ConditionalGAN,
    ConditionalVAE,
    c2st_accuracy,
    dcr_ratio,
    expert_agreement,
)
from crossfeed.feedback._invariance import (
    InvarianceStrategy,
    agreement_mask,
    attribution_agreement,
    input_gradient_penalty,
    integrated_gradients,
    irm_penalty,
    vrex_penalty,
)
from crossfeed.feedback._merging import average_weights, task_arithmetic, task_vectors, ties_merge
from crossfeed.feedback._meta import adapt_k_shot, fomaml_gradient, inner_adapt, maml_gradient, support_query
from crossfeed.feedback._params import Param, check_params
from crossfeed.feedback._rounds import (
    Exchange,
    Failure,
    LocalTask,
    LocalUpdate,
    RoundLog,
    RoundsStrategy,
    RoundState,
    checked_aggregate,
    finite_arrays,
    keep_update,
    run_rounds,
    screen_update,
    train_here,
)
from crossfeed.feedback._sequence import SequenceReport, absorb_sequence
from crossfeed.feedback._taxonomy import behaviour_matrix, check_taxonomy, expert_distances, learn_taxonomy

# Every public module of this package registers its strategy: import them all (and plug-ins).
discover(__name__)

from crossfeed.feedback.attribution_mask import AttributionMask  # noqa: E402
from crossfeed.feedback.coral import Coral  # noqa: E402
from crossfeed.feedback.dann import DANN  # noqa: E402
from crossfeed.feedback.data_feedback import DataFeedback, confident_pseudo_labels  # noqa: E402
from crossfeed.feedback.data_free_kd import DataFreeKD, batchnorm_layers, deep_inversion  # noqa: E402
from crossfeed.feedback.dp_fedavg import DPFedAvg, clip_update, gaussian_epsilon  # noqa: E402
from crossfeed.feedback.ensemble_distill import EnsembleDistill  # noqa: E402
from crossfeed.feedback.ewc import EWC  # noqa: E402
from crossfeed.feedback.fedavg import FedAvg  # noqa: E402
from crossfeed.feedback.feddf import (  # noqa: E402
    FedDF,
    architecture_key,
    average_logits,
    average_probabilities,
    distill_into,
)
from crossfeed.feedback.fedmd import FedMD, consensus  # noqa: E402
from crossfeed.feedback.fedprox import FedProx, proximal_term  # noqa: E402
from crossfeed.feedback.generative_augment import GenerativeAugment  # noqa: E402
from crossfeed.feedback.hierarchical import Hierarchical  # noqa: E402
from crossfeed.feedback.irm import IRM  # noqa: E402
from crossfeed.feedback.joint_training import JointTraining  # noqa: E402
from crossfeed.feedback.lwf import LwF  # noqa: E402
from crossfeed.feedback.maml import MAML, MAMLHook  # noqa: E402
from crossfeed.feedback.merge import Merge  # noqa: E402
from crossfeed.feedback.mmd import MMD  # noqa: E402
from crossfeed.feedback.multi_teacher_kd import MultiTeacherKD, confidence_weighted_logits  # noqa: E402
from crossfeed.feedback.multitask import MultiTask  # noqa: E402
from crossfeed.feedback.replay import Replay  # noqa: E402
from crossfeed.feedback.reptile import Reptile, reptile_update  # noqa: E402
from crossfeed.feedback.self_supervised import SelfSupervised, unlabelled_pool  # noqa: E402
from crossfeed.feedback.sequential_kd import SequentialKD  # noqa: E402
from crossfeed.feedback.transfer_init import TransferInit  # noqa: E402
from crossfeed.feedback.vrex import VREx  # noqa: E402

__all__ = [
    "AUGMENTATIONS",
    "AdaptationStrategy",
    "AlignmentHook",
    "AttributionMask",
    "ConditionalGAN",
    "ConditionalVAE",
    "Coral",
    "DANN",
    "DPFedAvg",
    "DataFeedback",
    "DataFreeKD",
    "DistillData",
    "DomainFeedback",
    "EWC",
    "EnsembleDistill",
    "Exchange",
    "Failure",
    "FedAvg",
    "FedDF",
    "FedMD",
    "FedProx",
    "FeedbackContext",
    "FeedbackReport",
    "FeedbackStrategy",
    "GENERATORS",
    "GenerativeAugment",
    "Hierarchical",
    "IRM",
    "InvarianceStrategy",
    "JointTraining",
    "LocalTask",
    "LocalUpdate",
    "LwF",
    "MAML",
    "MAMLHook",
    "MMD",
    "Merge",
    "MultiTask",
    "MultiTeacherKD",
    "Param",
    "Replay",
    "Reptile",
    "RoundLog",
    "RoundState",
    "RoundsEngine",
    "RoundsStrategy",
    "STRATEGIES",
    "SelfSupervised",
    "SequenceReport",
    "SequentialKD",
    "TrainSettings",
    "TrainingData",
    "TransferInit",
    "VREx",
    "absorb",
    "absorb_sequence",
    "adapt_k_shot",
    "agreement_mask",
    "architecture_key",
    "attribution_agreement",
    "augmentation_for",
    "average_logits",
    "average_probabilities",
    "average_weights",
    "batchnorm_layers",
    "behaviour_matrix",
    "c2st_accuracy",
    "check_params",
    "check_taxonomy",
    "checked_aggregate",
    "clip_update",
    "confidence_weighted_logits",
    "confident_pseudo_labels",
    "consensus",
    "coral_loss",
    "dann_lambda",
    "dcr_ratio",
    "deep_inversion",
    "diagonal_fisher",
    "discover",
    "distill_into",
    "domain_discriminator",
    "embed_features",
    "ewc_penalty",
    "expert_agreement",
    "expert_distances",
    "finite_arrays",
    "fomaml_gradient",
    "gaussian_epsilon",
    "gradient_reversal",
    "inner_adapt",
    "input_gradient_penalty",
    "integrated_gradients",
    "irm_penalty",
    "keep_update",
    "learn_taxonomy",
    "maml_gradient",
    "median_bandwidths",
    "mmd_loss",
    "nt_xent",
    "pretrain_trunk",
    "proximal_term",
    "register",
    "reptile_update",
    "run_rounds",
    "screen_update",
    "support_query",
    "task_arithmetic",
    "task_vectors",
    "ties_merge",
    "train_here",
    "unlabelled_pool",
    "vrex_penalty",
]
