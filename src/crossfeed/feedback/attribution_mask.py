"""Attribution mask: the features the experts agree on steer what the large model may rely on.

Each expert explains its predictions on its domain's unlabelled field data with Integrated
Gradients (Sundararajan, Taly & Yan 2017, arXiv 1703.01365; computed with captum). A feature
that most experts rank among their most important is *agreed on* (:func:`attribution_agreement`,
:func:`agreement_mask`); the others are features that some domain's model may use but that the
domains do not share. The large model then learns as in ``multi_teacher_kd`` (data-free: the
experts teach on their field data, its own old copy on the general data) plus a Right for the
Right Reasons penalty (Ross, Hughes & Doshi-Velez 2017, arXiv 1703.03717) on its input gradients
over the features the experts do not agree on (:func:`input_gradient_penalty`).

Needs the optional extra ``crossfeed[explain]`` (captum) and torch experts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import DistillData, FeedbackContext, flat, register
from crossfeed.feedback._invariance import (
    agreement_mask,
    attribution_agreement,
    input_gradient_penalty,
    integrated_gradients,
)
from crossfeed.feedback._params import Param
from crossfeed.feedback.multi_teacher_kd import MultiTeacherKD
from crossfeed.training import Batch, TrainingHook

__all__ = ["AttributionMask", "AttributionPenaltyHook"]


@dataclass
class MaskedDistillData(DistillData):
    """:class:`DistillData` plus the weight of every feature in the attribution penalty.

    feature_weights : array of shape (n_features,), 1 where the experts do not agree, else 0.
    """

    feature_weights: np.ndarray = field(kw_only=True)


class AttributionPenaltyHook(TrainingHook):
    """Adds ``mask_weight · input_gradient_penalty(module, batch.x, feature_weights)`` to every batch's loss."""

    def __init__(self, feature_weights: Any, mask_weight: float) -> None:
        self._weights = torch.as_tensor(np.asarray(feature_weights, dtype=np.float32))
        self._mask_weight = float(mask_weight)

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self._weights = self._weights.to(device)

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        if self._mask_weight == 0.0:
            return None
        return self._mask_weight * input_gradient_penalty(module, batch.x, self._weights)


@register("attribution_mask")
class AttributionMask(MultiTeacherKD):
    """Multi-teacher distillation with the large model's input gradients kept off the features
    the experts' Integrated Gradients do not agree on.

    Parameters
    ----------
    top_fraction : float in (0, 1], the share of features each expert's top set holds.
    min_agreement : float in (0, 1], the share of experts that must rank a feature in their top
        set for it to be agreed on (and free of the penalty).
    mask_weight : float >= 0, weight of the input-gradient penalty; 0: ``multi_teacher_kd``.
    ig_steps : int >= 1, quadrature steps of Integrated Gradients.
    ig_rows : int >= 1, field rows per expert that are attributed (the first ones).
    The other parameters are :class:`~crossfeed.feedback.MultiTeacherKD`'s.

    Reports, besides ``multi_teacher_kd``'s, ``info["agreed_features"]`` (how many) and
    ``info["agreement"]`` (the per-feature agreement, summarised when long).
    """

    params: ClassVar[dict[str, Param]] = {
        **MultiTeacherKD.params,
        "top_fraction": Param(float, low=0.0, high=1.0, low_open=True, help="share of features in each top set"),
        "min_agreement": Param(float, low=0.0, high=1.0, low_open=True, help="share of experts that must agree"),
        "mask_weight": Param(float, low=0.0, help="weight of the input-gradient penalty; 0: off"),
        "ig_steps": Param(int, low=1, help="Integrated Gradients quadrature steps"),
        "ig_rows": Param(int, low=1, help="field rows attributed per expert"),
    }

    def __init__(self, temperature: float = 2.0, alpha: float = 0.9, domain_known: bool = True,
                 field_share: float = 0.5, field_augment: str = "mixup", field_repeats: int = 1,
                 top_fraction: float = 0.2, min_agreement: float = 0.5, mask_weight: float = 1.0,
                 ig_steps: int = 32, ig_rows: int = 256) -> None:
        super().__init__(temperature, alpha, domain_known, field_share, field_augment, field_repeats)
        self.top_fraction = top_fraction
        self.min_agreement = min_agreement
        self.mask_weight = mask_weight
        self.ig_steps = ig_steps
        self.ig_rows = ig_rows

    def prepare(self, ctx: FeedbackContext) -> MaskedDistillData:
        data = super().prepare(ctx)
        agreement = attribution_agreement(self._attributions(ctx), self.top_fraction)
        weights = (~agreement_mask(agreement, self.min_agreement)).astype(np.float32)
        info = {**data.info, "agreed_features": int((weights == 0).sum()), "agreement": agreement}
        return MaskedDistillData(**{**{f.name: getattr(data, f.name) for f in fields(data)}, "info": info},
                                 feature_weights=weights)

    def _attributions(self, ctx: FeedbackContext) -> list[np.ndarray]:
        """Each expert's Integrated Gradients of its predicted class on its domain's field rows."""
        out = []
        for name, expert in ctx.experts.items():
            if not isinstance(getattr(expert, "module_", None), nn.Module):
                raise ValidationError(
                    f"the 'attribution_mask' strategy attributes torch experts; the expert of domain {name!r} is a "
                    f"{type(expert).__name__}. Spawn TorchClassifier experts or choose 'multi_teacher_kd'")
            X = flat(ctx.suite[name].X_field)[: self.ig_rows]
            out.append(integrated_gradients(expert, X, n_steps=self.ig_steps))
        return out

    def hooks(self, ctx: FeedbackContext, data: MaskedDistillData) -> list[TrainingHook]:
        return [*super().hooks(ctx, data), AttributionPenaltyHook(data.feature_weights, self.mask_weight)]
