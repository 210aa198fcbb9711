"""The maths of knowledge distillation, as pure functions on tensors.

- :func:`soft_targets`: the teacher's probabilities softened by a temperature.
- :func:`kd_loss`: Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network",
  arXiv 1503.02531: ``T² · KL(softmax(t / T) || softmax(s / T))``.
- :func:`hint_loss`: Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", arXiv 1412.6550:
  the squared distance between a teacher's hint layer and the student's (projected) guided layer.

No model, no loop: every function takes tensors and returns a tensor, so each identity is
testable on its own (see ``tests/spawn/test_kd_math.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from crossfeed.exceptions import ValidationError

REDUCTIONS = ("mean", "sum", "none")


def check_temperature(temperature: Any) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValidationError(f"temperature must be a positive number; got {temperature!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValidationError(
            f"temperature must be a positive finite number (T > 1 softens, T = 1 is plain softmax); got {temperature!r}"
        )
    return value


def _check_logits(logits: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(logits)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.ndim != 2:
        raise ValidationError(f"{name} must have shape (n_samples, n_classes); got shape {tuple(tensor.shape)}")
    return tensor


def soft_targets(teacher_logits: Any, temperature: float = 1.0) -> torch.Tensor:
    """The teacher's softened probabilities ``softmax(teacher_logits / T)``.

    Parameters
    ----------
    teacher_logits : tensor of shape (n_samples, n_classes)
    temperature : float > 0; higher values spread probability over the wrong classes, which is
        where the "dark knowledge" of a teacher lives.

    Returns
    -------
    tensor of shape (n_samples, n_classes), rows summing to 1.

    Example
    -------
    >>> import torch
    >>> soft_targets(torch.tensor([[2.0, 0.0]]), temperature=2.0).round(decimals=3)
    tensor([[0.7310, 0.2690]])
    """
    t = check_temperature(temperature)
    logits = _check_logits(teacher_logits, "teacher_logits")
    return torch.softmax(logits / t, dim=-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 4.0,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hinton's distillation loss ``T² · KL(softmax(t / T) || softmax(s / T))``.

    The ``T²`` factor keeps the gradient's size comparable across temperatures: the gradient with
    respect to the student's logits is exactly ``T · (softmax(s / T) - softmax(t / T))`` per sample,
    which tends to ``(s - t) / n_classes`` for large ``T`` and zero-mean logits (logit matching,
    Hinton et al. 2015, section 2.1). At ``T = 1`` the loss is the cross-entropy against the
    teacher's probabilities minus the teacher's entropy.

    Parameters
    ----------
    student_logits : tensor of shape (n_samples, n_classes); gradients flow through it.
    teacher_logits : tensor of shape (n_samples, n_classes); treated as constants (detached).
    temperature : float > 0.
    reduction : "mean" (over samples), "sum" or "none" (shape (n_samples,)).

    Returns
    -------
    scalar tensor, or tensor of shape (n_samples,) with ``reduction="none"``.

    Example
    -------
    >>> import torch
    >>> s = torch.tensor([[1.0, 0.0, -1.0]]); t = torch.tensor([[3.0, 0.0, -3.0]])
    >>> float(kd_loss(s, s, 4.0))
    0.0
    >>> round(float(kd_loss(s, t, 4.0)), 4)
    1.1274
    """
    temp = check_temperature(temperature)
    s = _check_logits(student_logits, "student_logits")
    t = _check_logits(teacher_logits, "teacher_logits").detach()
    if s.shape != t.shape:
        raise ValidationError(
            f"student and teacher logits must have the same shape (n_samples, n_classes); got "
            f"{tuple(s.shape)} and {tuple(t.shape)}. Student and teacher must share one label set"
        )
    if reduction not in REDUCTIONS:
        raise ValidationError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    log_p_s = F.log_softmax(s / temp, dim=-1)
    log_p_t = F.log_softmax(t / temp, dim=-1)
    per_sample = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1) * temp**2
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """FitNets hint loss: the mean squared difference between (projected) student and teacher features.

    FitNets writes ``½ ‖u_h(x) - r(v_g(x))‖²`` summed over a feature map; here it is the mean over
    every element, so its size does not grow with the width of the layer. Project the student's
    features to the teacher's shape first (a learned 1x1 convolution or linear layer, see
    :class:`crossfeed.spawn.Distiller` ``hints``).

    Parameters
    ----------
    student_feat : tensor of shape (n_samples, ...), gradients flow through it.
    teacher_feat : tensor of the same shape; treated as constants (detached).
    reduction : "mean" (over every element), "sum", or "none" (shape (n_samples,), mean per sample).

    Example
    -------
    >>> import torch
    >>> float(hint_loss(torch.ones(2, 3), torch.zeros(2, 3)))
    1.0
    """
    s = torch.as_tensor(student_feat)
    t = torch.as_tensor(teacher_feat).detach()
    if s.shape != t.shape:
        raise ValidationError(
            f"student and teacher features must have the same shape; got {tuple(s.shape)} and "
            f"{tuple(t.shape)}. Project the student's features to the teacher's width first"
        )
    if reduction not in REDUCTIONS:
        raise ValidationError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    sq = (s - t).pow(2)
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum()
    return sq.reshape(len(sq), -1).mean(dim=1)
