"""The distillation kit shared by ``spawn`` (students from a large model) and ``feedback`` (experts
teaching the large model back).

- :func:`kd_loss`, :func:`soft_targets`, :func:`hint_loss`: the maths as pure functions on tensors
  (Hinton, Vinyals & Dean 2015, arXiv 1503.02531; FitNets, Romero et al. 2015, arXiv 1412.6550).
- :class:`DistillationHook`: the KD and hint terms as a hook on the one training loop;
  :func:`teacher_logits`: any fitted classifier's logits (``predict_logits`` or ``log predict_proba``).
- :func:`check_temperature`, :func:`check_alpha`, :func:`check_hint_weight`,
  :func:`check_hint_pairs`: the checks every user of the kit shares.
- :class:`FeatureCapture`, :func:`find_layer`: forward hooks that read a named layer's output.
- :func:`mixup_rows`, :func:`discrete_columns`, :func:`check_mixup`: extra inputs for a teacher to label (convex
  combinations of pairs of rows; id and one-hot columns are not interpolated).
"""

from crossfeed.distill._hints import FeatureCapture, check_hint_pairs, find_layer
from crossfeed.distill._hook import (
    DistillationHook,
    check_alpha,
    check_hint_weight,
    teacher_logits,
)
from crossfeed.distill._kd import check_temperature, hint_loss, kd_loss, soft_targets
from crossfeed.distill._mixup import check_mixup, discrete_columns, mixup_rows

__all__ = [
    "DistillationHook",
    "FeatureCapture",
    "check_alpha",
    "check_hint_pairs",
    "check_hint_weight",
    "check_mixup",
    "check_temperature",
    "discrete_columns",
    "find_layer",
    "hint_loss",
    "kd_loss",
    "mixup_rows",
    "soft_targets",
    "teacher_logits",
]
