"""Multi-teacher knowledge distillation: the domain experts teach the large model, data-free.

The large model never sees a labelled sample of the shifted domains. It trains on the unlabelled
field data of every expert's domain, taught by that domain's expert, plus the general domain's
labelled training data, taught by its own old copy so that nothing is forgotten. With the domain
of a field sample unknown, the experts' softened outputs are mixed per sample, weighted by each
expert's confidence (its top probability).

Scarce field data (a few dozen rows per domain against thousands of general rows) is topped up
until the field rows make ``field_share`` of the training rows, with mixup rows of each domain's
own field data that its teacher labels (:mod:`crossfeed.feedback._field`). Trained on as they
are, the few field rows are some 5% of each epoch's rows: the large model fits the teachers on
those rows but hardly around them. mnist1d, 4,000 general rows, 4 shifted domains, 3 seeds,
pooled absorption without / with the top-up: 0.47 / 0.64 at 50 field rows per domain, 0.76 /
0.83 at 200 (one seed of three lower), identical at 1,000 (nothing is added).

- Knowledge Amalgamation: Shen, Wang, Song, Sun & Song (AAAI 2019), "Amalgamating Knowledge
  towards Comprehensive Classification", arXiv 1811.02796.
- Distillation loss: Hinton, Vinyals & Dean (2015), arXiv 1503.02531 (``crossfeed.spawn.kd_loss``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from crossfeed.distill import (
    DistillationHook,
    check_temperature,
    soft_targets,
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

__all__ = ["MultiTeacherKD", "confidence_weighted_logits"]


def confidence_weighted_logits(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Mix several teachers per sample, each weighted by its confidence.

    Teacher ``k``'s weight on sample ``i`` is its top probability ``max_c softmax(z_ki)_c``,
    normalised over teachers; the mixture of the softened probabilities ``softmax(z_ki / T)`` is
    returned as logits at the same temperature (``T · log p``), so that ``softmax(out / T)`` is
    the mixture.

    Parameters
    ----------
    logits : array of shape (n_teachers, n_samples, n_classes)
    temperature : float > 0

    Returns
    -------
    array of shape (n_samples, n_classes)

    Example
    -------
    >>> z = np.array([[[4.0, 0.0]], [[0.0, 0.1]]])   # a confident and an unsure teacher
    >>> bool(confidence_weighted_logits(z, 1.0)[0].argmax() == 0)
    True
    """
    temp = check_temperature(temperature)
    z = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    if z.ndim != 3:
        raise ValidationError(f"logits must have shape (n_teachers, n_samples, n_classes); got {tuple(z.shape)}")
    confidence = torch.softmax(z, dim=-1).amax(dim=-1)  # (n_teachers, n_samples)
    weights = confidence / confidence.sum(dim=0, keepdim=True)
    mixed = (weights.unsqueeze(-1) * torch.stack([soft_targets(t, temp) for t in z])).sum(dim=0)
    return (temp * torch.log(mixed.clamp_min(1e-12))).numpy()


@register("multi_teacher_kd")
class MultiTeacherKD(FeedbackStrategy):
    """Each expert teaches the large model on its domain's unlabelled field data.

    Loss: on general labelled rows ``(1 - alpha) · CE(y) + alpha · KD(old large)``; on field rows
    ``alpha · KD(teacher)``, where KD is Hinton's ``T² · KL`` at temperature ``temperature``.

    Parameters
    ----------
    temperature : float > 0, softening of every teacher.
    alpha : float in [0, 1], weight of the distillation term against the hard labels.
    domain_known : bool
        True: a field sample's teacher is its domain's expert. False: all experts teach every field
        sample, mixed by confidence (:func:`confidence_weighted_logits`).
    field_share : float in [0, 1), default 0.5. Each domain's field data is topped up with new
        rows to its part of this share of the training rows: ``share / (1 - share)`` times the
        general rows, split equally between the suite's domains other than the general one (so a
        step that absorbs one domain of four gives it a quarter). A domain with enough field rows
        is left as it is; 0 adds nothing. The extra rows cost training time.
    field_augment : "mixup" (default) or "repeat": the extra rows are convex combinations of
        random pairs of the domain's field rows (ids and other whole-number columns are not
        interpolated), or copies of them. Either way the domain's teacher labels them.
    field_repeats : int >= 1, how many times the (topped-up) field data is repeated per epoch.

    Reports ``info["field_samples"]`` (field rows per domain, as given) and
    ``info["field_rows_added"]`` (rows the top-up added per domain).
    """

    needs_field_data = True
    params: ClassVar[dict[str, Param]] = {
        "temperature": Param(float, low=0.0, low_open=True, help="softening of every teacher"),
        "alpha": Param(float, low=0.0, high=1.0, help="weight of distillation against the hard labels"),
        "domain_known": Param(bool, help="a field sample's teacher is its domain's expert"),
        "field_share": Param(float, low=0.0, high=1.0, high_open=True,
                             help="field rows are topped up to this share of the training rows; 0: off"),
        "field_augment": Param(str, choices=AUGMENTS, help="how the top-up rows are made"),
        "field_repeats": Param(int, low=1, help="passes over the field data per epoch"),
    }

    def __init__(self, temperature: float = 2.0, alpha: float = 0.9, domain_known: bool = True,
                 field_share: float = 0.5, field_augment: str = "mixup", field_repeats: int = 1) -> None:
        self.temperature = temperature
        self.alpha = alpha
        self.domain_known = domain_known
        self.field_share = field_share
        self.field_augment = field_augment
        self.field_repeats = field_repeats

    def prepare(self, ctx: FeedbackContext) -> DistillData:
        large, experts, suite = ctx.large, ctx.experts, ctx.suite
        _, X_gen, y_gen = general_data(suite)
        X_gen = flat(X_gen)
        parts_X, parts_t = [X_gen], [teacher_logits(large, X_gen)]
        given = {name: flat(suite[name].X_field) for name in experts}
        # each domain's part of the share as if every shifted domain of the suite were absorbed now
        n_domains = share_domains(suite, len(given))
        fields = top_up_fields(len(X_gen), given, self.field_share, self.field_augment, ctx.settings.seed,
                               n_domains=n_domains)
        for name, X_field in fields.items():
            if self.domain_known:
                t = teacher_logits(experts[name], X_field)
            else:
                t = confidence_weighted_logits(
                    np.stack([teacher_logits(e, X_field) for e in experts.values()]), self.temperature
                )
            parts_X += [X_field] * self.field_repeats
            parts_t += [t] * self.field_repeats
        X = np.concatenate(parts_X)
        y, labelled = with_unlabelled(y_gen, len(X) - len(X_gen), large.classes_[0])
        info = {"field_samples": {n: len(given[n]) for n in given},
                "field_rows_added": {n: len(fields[n]) - len(given[n]) for n in given}}
        return DistillData(X, y, info=info, labelled_mask=labelled, teacher_logits=np.concatenate(parts_t))

    def hooks(self, ctx: FeedbackContext, data: DistillData) -> list[TrainingHook]:
        return [DistillationHook(data.teacher_logits, labelled=data.labelled, temperature=self.temperature,
                                 alpha=self.alpha)]
