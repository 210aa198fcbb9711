"""Confidence scores for cascades: pure functions from probabilities to one number per sample.

Every score is "higher means more confident", so a cascade stage answers when
``score >= threshold``. Each function takes an array of shape (n_samples, n_classes) whose rows
are probability distributions and returns an array of shape (n_samples,).

References: the scores are the usual ones of cascade and selective-prediction work, e.g.
Wang et al. 2021, "Wisdom of Committees: An Overlooked Approach to Faster and More Accurate
Models" (arXiv 2012.01988), which escalates on the maximum probability.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "CONFIDENCE_RULES",
    "entropy_confidence",
    "margin_confidence",
    "max_prob_confidence",
]


def max_prob_confidence(proba: np.ndarray) -> np.ndarray:
    """Probability of the predicted class.

    Parameters
    ----------
    proba : array of shape (n_samples, n_classes)

    Returns
    -------
    array of shape (n_samples,), values in [1 / n_classes, 1].

    Example
    -------
    >>> max_prob_confidence(np.array([[0.2, 0.8], [0.5, 0.5]]))
    array([0.8, 0.5])
    """
    return np.asarray(proba, dtype=float).max(axis=1)


def margin_confidence(proba: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability (0 for a tie, 1 for a one-hot row).

    Parameters
    ----------
    proba : array of shape (n_samples, n_classes)

    Returns
    -------
    array of shape (n_samples,), values in [0, 1]. With one class the margin is the top
    probability itself.

    Example
    -------
    >>> margin_confidence(np.array([[0.1, 0.3, 0.6]]))
    array([0.3])
    """
    p = np.asarray(proba, dtype=float)
    if p.shape[1] < 2:
        return p[:, 0].copy()
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy_confidence(proba: np.ndarray) -> np.ndarray:
    """Negative Shannon entropy (in nats) of each row: 0 for one-hot, ``-log(n_classes)`` for uniform.

    Parameters
    ----------
    proba : array of shape (n_samples, n_classes)

    Returns
    -------
    array of shape (n_samples,), values in [-log(n_classes), 0].

    Example
    -------
    >>> entropy_confidence(np.array([[1.0, 0.0]]))
    array([0.])
    """
    p = np.asarray(proba, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=1)


#: The rules a :class:`~crossfeed.combine.Cascade` accepts, by name.
CONFIDENCE_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": entropy_confidence,
    "margin": margin_confidence,
    "max_prob": max_prob_confidence,
}
