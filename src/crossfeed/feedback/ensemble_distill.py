"""Ensemble distillation: the large model learns from the ensemble of all experts and itself.

Model fusion as in FedDF (Lin, Kong, Stich & Jaggi, "Ensemble Distillation for Robust Model
Fusion in Federated Learning", NeurIPS 2020, arXiv 2006.07242): the members' outputs on
unlabelled data are averaged into one teacher, and one model is trained to match it. Here the
members are every domain expert plus the old large model, the unlabelled data is every expert's
domain's field data plus the general domain's training data, and the student is (a copy of) the
large model. No domain ids are used: every member teaches every sample, so the ensemble's
complementarity decides, not a routing rule.

Scarce field data is topped up as in :class:`~crossfeed.feedback.MultiTeacherKD` (``field_share``,
``field_augment``; :mod:`crossfeed.feedback._field`): mixup rows of each domain's field data,
labelled by the ensemble, until the field rows make ``field_share`` of the training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from crossfeed.distill import (
    DistillationHook,
    check_temperature,
    teacher_logits,
)
from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import (
    DistillData,
    FeedbackContext,
    FeedbackStrategy,
    flat,
    general_data,
    register,
    share_domains,
    with_unlabelled,
)
from crossfeed.feedback._field import AUGMENTS, top_up_fields
from crossfeed.feedback._params import Param
from crossfeed.training import TrainingHook

__all__ = ["EnsembleDistill", "ensemble_logits"]

AVERAGES = ("logits", "probabilities")
GENERAL_TEACHERS = ("large", "ensemble")


def ensemble_logits(logits: np.ndarray, average: str = "logits", temperature: float = 1.0,
                    weights: Sequence[float] | None = None) -> np.ndarray:
    """One teacher from several: the members' outputs averaged (with equal ``weights`` by default).

    - ``"logits"``: the mean of the logits (FedDF's choice; a normalised geometric mean of the
      probabilities, so a member that is sure a class is wrong can veto it).
    - ``"probabilities"``: the mean of the softened probabilities ``softmax(z_k / T)``, returned
      as logits at the same temperature (``T · log p``) so that ``softmax(out / T)`` is that mean.

    Parameters
    ----------
    logits : array of shape (n_members, n_samples, n_classes)
    average : "logits" or "probabilities"
    temperature : float > 0, used by ``"probabilities"`` only.
    weights : n_members non-negative numbers, not all zero (normalised); None: equal.

    Returns
    -------
    array of shape (n_samples, n_classes)

    Example
    -------
    >>> z = np.array([[[2.0, 0.0]], [[0.0, 4.0]]])
    >>> ensemble_logits(z, "logits")
    array([[1., 2.]], dtype=float32)
    """
    if average not in AVERAGES:
        raise ValidationError(f"average must be one of {AVERAGES}; got {average!r}")
    temp = check_temperature(temperature)
    z = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    if z.ndim != 3 or z.shape[0] == 0:
        raise ValidationError(f"logits must have shape (n_members, n_samples, n_classes); got {tuple(z.shape)}")
    w = torch.full((z.shape[0],), 1.0 / z.shape[0]) if weights is None else torch.as_tensor(
        np.asarray(weights, dtype=np.float32))
    if w.shape != (z.shape[0],) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValidationError(f"weights must be {z.shape[0]} non-negative numbers, not all zero; got {weights!r}")
    w = (w / w.sum()).view(-1, 1, 1)
    if average == "logits":
        return (w * z).sum(dim=0).numpy()
    mean = (w * torch.softmax(z / temp, dim=-1)).sum(dim=0)
    return (temp * torch.log(mean.clamp_min(1e-12))).numpy()


@register("ensemble_distill")
class EnsembleDistill(FeedbackStrategy):
    """The large model distils the averaged ensemble of all experts (and its old self).

    Training data: the general domain's labelled training data and every expert's domain's
    unlabelled field data. Teacher of a field sample: the ensemble (:func:`ensemble_logits` over
    the experts and, with ``include_large``, the old large model). Teacher of a general sample:
    the old large model (``general_teacher="large"``, which guards against forgetting) or the same
    ensemble (``"ensemble"``, FedDF's single teacher everywhere). Loss as in
    :class:`~crossfeed.feedback.MultiTeacherKD`: ``(1 - alpha) · CE(y) + alpha · KD`` on general
    rows, ``alpha · KD`` on field rows.

    Parameters
    ----------
    temperature : float > 0, softening of the teacher (FedDF uses 1).
    alpha : float in [0, 1], weight of the distillation term against the general hard labels.
    average : "logits" (FedDF) or "probabilities"; see :func:`ensemble_logits`.
    include_large : bool, whether the old large model is a member of the ensemble.
    general_teacher : "large" or "ensemble", the teacher on the general training data.
    field_share : float in [0, 1), default 0.5; field_augment : "mixup" (default) or "repeat".
        Each domain's field data is topped up with new rows (labelled by the ensemble) until the
        field rows make at least ``field_share`` of the training rows; see
        :class:`~crossfeed.feedback.MultiTeacherKD`. 0 adds nothing.
    field_repeats : int >= 1, how many times the (topped-up) field data is repeated per epoch.

    Reports ``info["field_samples"]`` (field rows per domain, as given), ``info["field_rows_added"]``
    (rows the top-up added per domain) and ``info["members"]`` (the ensemble's members).

    Example
    -------
    >>> new, report = absorb(large, experts, suite, "ensemble_distill", epochs=10)   # doctest: +SKIP
    """

    needs_field_data = True
    params: ClassVar[dict[str, Param]] = {
        "temperature": Param(float, low=0.0, low_open=True, help="softening of the teacher"),
        "alpha": Param(float, low=0.0, high=1.0, help="weight of distillation against the general hard labels"),
        "average": Param(str, choices=AVERAGES),
        "include_large": Param(bool, help="the old large model is a member of the ensemble"),
        "general_teacher": Param(str, choices=GENERAL_TEACHERS, help="who teaches on the general data"),
        "field_share": Param(float, low=0.0, high=1.0, high_open=True,
                             help="field rows are topped up to this share of the training rows; 0: off"),
        "field_augment": Param(str, choices=AUGMENTS, help="how the top-up rows are made"),
        "field_repeats": Param(int, low=1, help="passes over the field data per epoch"),
    }

    def __init__(self, temperature: float = 2.0, alpha: float = 0.9, average: str = "logits",
                 include_large: bool = True, general_teacher: str = "large", field_share: float = 0.5,
                 field_augment: str = "mixup", field_repeats: int = 1) -> None:
        self.temperature = temperature
        self.alpha = alpha
        self.average = average
        self.include_large = include_large
        self.general_teacher = general_teacher
        self.field_share = field_share
        self.field_augment = field_augment
        self.field_repeats = field_repeats

    def prepare(self, ctx: FeedbackContext) -> DistillData:
        large, experts, suite = ctx.large, ctx.experts, ctx.suite
        members = list(experts.values()) + ([large] if self.include_large else [])
        _, X_gen, y_gen = general_data(suite)
        X_gen = flat(X_gen)
        given = {name: flat(suite[name].X_field) for name in experts}
        # each domain's part of the share as if every shifted domain of the suite were absorbed now
        n_domains = share_domains(suite, len(given))
        fields = top_up_fields(len(X_gen), given, self.field_share, self.field_augment, ctx.settings.seed,
                               n_domains=n_domains)
        X = np.concatenate([X_gen] + [fields[n] for n in experts] * self.field_repeats)
        # every member scores every row once: the general rows, then each domain's field rows
        distinct = np.concatenate([X_gen] + [fields[n] for n in experts])
        teacher = ensemble_logits(np.stack([teacher_logits(m, distinct) for m in members]),
                                  self.average, self.temperature)
        n_gen = len(X_gen)
        on_general = teacher_logits(large, X_gen) if self.general_teacher == "large" else teacher[:n_gen]
        logits = np.concatenate([on_general] + [teacher[n_gen:]] * self.field_repeats).astype(np.float32)
        y, labelled = with_unlabelled(y_gen, len(X) - n_gen, large.classes_[0])
        info = {"field_samples": {n: len(given[n]) for n in experts},
                "field_rows_added": {n: len(fields[n]) - len(given[n]) for n in experts},
                "members": [f"expert:{n}" for n in experts] + (["large"] if self.include_large else [])}
        return DistillData(X, y, info=info, labelled_mask=labelled, teacher_logits=logits)

    def hooks(self, ctx: FeedbackContext, data: DistillData) -> list[TrainingHook]:
        return [DistillationHook(data.teacher_logits, labelled=data.labelled, temperature=self.temperature,
                                 alpha=self.alpha)]
