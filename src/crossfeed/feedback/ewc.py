"""Elastic weight consolidation (online): absorb domains one after another without forgetting.

Kirkpatrick et al. (PNAS 2017), arXiv 1612.00796; online form: Schwarz et al. (2018), arXiv 1805.06370."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from crossfeed.feedback._base import (
    FeedbackContext,
    TrainingData,
    general_data,
    register,
)
from crossfeed.feedback._continual import (
    EWCHook,
    diagonal_fisher,
)
from crossfeed.feedback._params import Param
from crossfeed.feedback.sequential_kd import SequentialKD
from crossfeed.training import TrainingHook

__all__ = ['EWC']


@register("ewc")
class EWC(SequentialKD):
    """Elastic weight consolidation: a quadratic penalty keeps the weights the past relied on.

    Loss of a step: the distillation from the current experts plus
    ``ewc_lambda / 2 · sum_k F_k (theta_k - theta*_k)²`` where ``theta*`` is the model before the
    step and ``F`` the running diagonal Fisher information (:func:`diagonal_fisher`). Online EWC
    (Schwarz et al. 2018, arXiv 1805.06370): after each step ``F <- gamma · F + F_step`` with
    ``F_step`` the new model's Fisher on the step's field data, instead of one penalty per task.
    The first "previous task" is the general domain: at the first step ``F`` is the large model's
    Fisher on the general training data.

    Parameters
    ----------
    ewc_lambda : float >= 0, strength of the penalty (0: :class:`SequentialKD`). On mnist1d
        (four domains, 10 epochs each) 100 / 1000 / 10000 gave a general-domain forgetting of
        0.110 / 0.028 / -0.004 and a mean accuracy on the absorbed domains of 0.488 / 0.510 / 0.510.
    gamma : float in [0, 1], decay of the older Fisher information at every step (1: plain sum).
    freeze_norm_stats : bool, see :class:`SequentialKD`.

    Attributes
    ----------
    fisher_ : dict parameter name -> tensor, the running Fisher (None before the first step).
    """

    params: ClassVar[dict[str, Param]] = {
        "ewc_lambda": Param(float, low=0.0, help="strength of the penalty"),
        "gamma": Param(float, low=0.0, high=1.0, help="decay of the older Fisher information"),
        **SequentialKD.params,
    }

    def __init__(self, ewc_lambda: float = 1000.0, gamma: float = 1.0, freeze_norm_stats: bool = True) -> None:
        super().__init__(freeze_norm_stats)
        self.ewc_lambda = ewc_lambda
        self.gamma = gamma
        self.fisher_: dict[str, torch.Tensor] | None = None

    def prepare(self, ctx: FeedbackContext) -> TrainingData:
        large, suite = ctx.large, ctx.suite
        data = super().prepare(ctx)
        if self.fisher_ is None:
            _, X_gen, _ = general_data(suite)
            self.fisher_ = diagonal_fisher(large.module_, X_gen)
        return data

    def hooks(self, ctx: FeedbackContext, data: TrainingData) -> list[TrainingHook]:
        assert self.fisher_ is not None  # set in prepare
        anchor = {n: p.detach().cpu() for n, p in ctx.large.module_.named_parameters() if p.requires_grad}
        return [*super().hooks(ctx, data), EWCHook(anchor, self.fisher_, float(self.ewc_lambda))]

    def remember(self, ctx: FeedbackContext, new_large: Any, data: TrainingData) -> None:
        step = diagonal_fisher(new_large.module_, data.X)
        old = self.fisher_ or {n: torch.zeros_like(t) for n, t in step.items()}
        self.fisher_ = {n: self.gamma * old[n] + step[n] for n in step}
