"""Deep CORAL: align the second-order statistics of the general and the field features.

Sun & Saenko (2016), "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV 2016
workshops, arXiv 1607.01719. The large model trains on the general domain's labelled rows and the
unlabelled field rows of every expert's domain; the loss is the cross-entropy of the labelled rows
plus ``weight`` times the mean over the target domains of :func:`coral_loss` between the general
rows' features and that domain's (see :mod:`crossfeed.feedback._adaptation`). The experts are
not used (source-only domain adaptation) unless ``teach`` adds their KD on the field rows.
"""

from __future__ import annotations

from typing import ClassVar

from crossfeed.feedback._adaptation import (
    TEACH_PARAM,
    AdaptationData,
    AdaptationStrategy,
    PairwiseAlignmentHook,
    coral_loss,
)
from crossfeed.feedback._base import FeedbackContext, register
from crossfeed.feedback._params import Param

__all__ = ["Coral"]


@register("coral")
class Coral(AdaptationStrategy):
    """Deep CORAL from the general domain to every expert's domain.

    Parameters
    ----------
    weight : float >= 0, weight of the CORAL term (0: source-only training on the same batches).
        The term is divided by ``4 d^2`` (Sun & Saenko's eq. 1), so it is small: the default is large.
    teach : bool, also distil each domain's expert on its field rows (DA + KD; see
        :mod:`crossfeed.feedback._adaptation`).
    """

    params: ClassVar[dict[str, Param]] = {
        "weight": Param(float, low=0.0, help="weight of the CORAL term against the cross-entropy"),
        "teach": TEACH_PARAM,
    }

    def __init__(self, weight: float = 100.0, teach: bool = False) -> None:
        self.weight = weight
        self.teach = teach

    def alignment_hook(self, ctx: FeedbackContext, data: AdaptationData) -> PairwiseAlignmentHook:
        return PairwiseAlignmentHook(**self.hook_args(ctx, data), discrepancy=coral_loss)
