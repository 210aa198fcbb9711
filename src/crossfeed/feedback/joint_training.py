"""Joint training: the upper reference of feedback, setting (a).

The large model keeps training on the pooled *labelled* training data of the general domain and of
every expert's domain. It is not feedback (the experts are ignored and the domains' labels leave
them), but it bounds what feedback can reach with the same model, epochs and learning rate: the
data-free strategies are measured against it.
"""

from __future__ import annotations

import numpy as np

from crossfeed.feedback._base import (
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    flat,
    general_data,
    register,
)

__all__ = ["JointTraining"]


@register("joint_training")
class JointTraining(FeedbackStrategy):
    """Continued training on the pooled labelled training data of the general and the experts' domains.

    Reports ``info["train_samples"]`` per domain.
    """

    data_free = False

    def prepare(self, ctx: FeedbackContext) -> TrainingData:
        experts, suite = ctx.experts, ctx.suite
        general, _, _ = general_data(suite)
        names = [general, *(n for n in experts if n != general)]
        X, y = suite.pooled("train", names)
        return TrainingData(flat(X), np.asarray(y), info={"train_samples": {n: len(suite[n].y_train) for n in names}})
