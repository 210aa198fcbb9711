"""Learning without forgetting: the model before each step keeps teaching on the current data.

Li & Hoiem (2016), arXiv 1606.09282."""

from __future__ import annotations

from typing import ClassVar

from crossfeed.distill import teacher_logits
from crossfeed.feedback._base import (
    FeedbackContext,
    TrainingData,
    register,
)
from crossfeed.feedback._continual import (
    KDTermHook,
)
from crossfeed.feedback._params import Param
from crossfeed.feedback.sequential_kd import SequentialKD
from crossfeed.training import TrainingHook

__all__ = ['LwF']


@register("lwf")
class LwF(SequentialKD):
    """Learning without forgetting: the model before the step keeps teaching on the current data.

    Loss of a step: the distillation from the current experts plus
    ``lwf_weight · kd_loss(new, old, temperature)`` on the same field samples, where ``old`` is the
    large model before the step (Li & Hoiem use ``temperature = 2``). Nothing is stored between
    steps: the model before each step is the memory.

    Parameters
    ----------
    lwf_weight : float >= 0, weight of the old model's term (0: :class:`SequentialKD`). On mnist1d
        (four domains, 10 epochs each) 1 / 2 / 3 gave a general-domain forgetting of
        0.152 / 0.042 / 0.016 and a mean accuracy on the absorbed domains of 0.543 / 0.545 / 0.522.
    temperature : float > 0, softening of the old model's outputs.
    freeze_norm_stats : bool, see :class:`SequentialKD`.
    """

    params: ClassVar[dict[str, Param]] = {
        "lwf_weight": Param(float, low=0.0, help="weight of the old model's term"),
        "temperature": Param(float, low=0.0, low_open=True, help="softening of the old model's outputs"),
        **SequentialKD.params,
    }

    def __init__(self, lwf_weight: float = 2.0, temperature: float = 2.0, freeze_norm_stats: bool = True) -> None:
        super().__init__(freeze_norm_stats)
        self.lwf_weight = lwf_weight
        self.temperature = temperature

    def hooks(self, ctx: FeedbackContext, data: TrainingData) -> list[TrainingHook]:
        lwf = KDTermHook(teacher_logits(ctx.large, data.X), float(self.lwf_weight), float(self.temperature))
        return [*super().hooks(ctx, data), lwf]
