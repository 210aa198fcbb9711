"""Data feedback: the experts' confident pseudo-labels on field data join the general training data.

The data-collection channel of the cycle: every deployed domain model labels what it saw in the
field; labels it is confident about (top probability >= ``threshold``) are appended to the general
domain's labelled training data, and the large model keeps training on the union. This is
pseudo-labelling / self-training with a teacher per domain (Lee 2013, "Pseudo-Label"; Xie et al.
2020, "Self-training with Noisy Student", arXiv 1911.04252).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import (
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    flat,
    general_data,
    register,
)
from crossfeed.feedback._params import Param

__all__ = ["DataFeedback", "confident_pseudo_labels"]


def confident_pseudo_labels(proba: np.ndarray, classes: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-labels and the mask of rows whose top probability reaches ``threshold``.

    Parameters
    ----------
    proba : array of shape (n_samples, n_classes)
    classes : array of shape (n_classes,)
    threshold : float in [0, 1]

    Returns
    -------
    (labels of shape (n_samples,), keep mask of shape (n_samples,))

    Example
    -------
    >>> confident_pseudo_labels(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([3, 7]), 0.8)
    (array([3, 7]), array([ True, False]))
    """
    proba = np.asarray(proba, dtype=np.float64)
    if not np.isfinite(proba).all():
        raise ValidationError(
            f"the expert's probabilities are not finite (NaN or inf) on {int((~np.isfinite(proba)).any(axis=1).sum())} "
            "field samples; a broken expert cannot label data: refit it or drop it"
        )
    return np.asarray(classes)[proba.argmax(axis=1)], proba.max(axis=1) >= threshold


@register("data_feedback")
class DataFeedback(FeedbackStrategy):
    """Append each domain's confidently pseudo-labelled field data to the general training data.

    Parameters
    ----------
    threshold : float in [0, 1], minimum top probability of the expert for a pseudo-label to be kept.

    Reports ``info["kept"]`` (pseudo-labels kept per domain) and ``info["field_samples"]``.
    """

    needs_field_data = True
    params: ClassVar[dict[str, Param]] = {
        "threshold": Param(float, low=0.0, high=1.0, help="minimum top probability of a kept pseudo-label"),
    }

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold

    def prepare(self, ctx: FeedbackContext) -> TrainingData:
        experts, suite = ctx.experts, ctx.suite
        _, X_gen, y_gen = general_data(suite)
        parts_X, parts_y = [flat(X_gen)], [np.asarray(y_gen)]
        kept, seen = {}, {}
        for name, expert in experts.items():
            X_field = flat(suite[name].X_field)
            labels, keep = confident_pseudo_labels(expert.predict_proba(X_field), expert.classes_, self.threshold)
            parts_X.append(X_field[keep])
            parts_y.append(labels[keep])
            kept[name], seen[name] = int(keep.sum()), len(X_field)
        return TrainingData(np.concatenate(parts_X), np.concatenate(parts_y),
                            info={"kept": kept, "field_samples": seen})
