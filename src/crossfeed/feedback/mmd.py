"""MMD / DAN: match the general and the field feature distributions in a multi-kernel RKHS.

Long, Cao, Wang & Jordan (2015), "Learning Transferable Features with Deep Adaptation Networks",
ICML 2015, arXiv 1502.02791. The large model trains on the general domain's labelled rows and the
unlabelled field rows of every expert's domain; the loss is the cross-entropy of the labelled rows
plus ``weight`` times the mean over the target domains of the multi-kernel Gaussian MMD^2
(:func:`mmd_loss`, biased estimator, bandwidths ``sqrt(2^k x median squared distance)`` for
k = -2..2) between the general rows' features and that domain's. DAN adapts several layers; here
the one feature layer before the head is adapted. The experts are not used
unless ``teach`` adds their KD on the field rows.
"""

from __future__ import annotations

from typing import ClassVar

from crossfeed.feedback._adaptation import (
    TEACH_PARAM,
    AdaptationData,
    AdaptationStrategy,
    PairwiseAlignmentHook,
    mmd_loss,
)
from crossfeed.feedback._base import FeedbackContext, register
from crossfeed.feedback._params import Param

__all__ = ["MMD"]


@register("mmd")
class MMD(AdaptationStrategy):
    """Multi-kernel MMD (DAN) from the general domain to every expert's domain.

    Parameters
    ----------
    weight : float >= 0, weight of the MMD^2 term (0: source-only training on the same batches).
    teach : bool, also distil each domain's expert on its field rows (DA + KD; see
        :mod:`crossfeed.feedback._adaptation`).
    """

    params: ClassVar[dict[str, Param]] = {
        "weight": Param(float, low=0.0, help="weight of the MMD term against the cross-entropy"),
        "teach": TEACH_PARAM,
    }

    def __init__(self, weight: float = 1.0, teach: bool = False) -> None:
        self.weight = weight
        self.teach = teach

    def alignment_hook(self, ctx: FeedbackContext, data: AdaptationData) -> PairwiseAlignmentHook:
        return PairwiseAlignmentHook(**self.hook_args(ctx, data), discrepancy=mmd_loss)
