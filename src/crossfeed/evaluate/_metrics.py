"""Prediction metrics: accuracy, negative log-likelihood, expected calibration error."""

from __future__ import annotations

from typing import Any

import numpy as np

from crossfeed._validation import check_labels, encode_labels
from crossfeed.exceptions import ValidationError

_EPS = 1e-12


def _check_proba(y_idx: np.ndarray, proba: Any) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != len(y_idx):
        raise ValidationError(
            f"proba must have shape (n_samples, n_classes) with n_samples={len(y_idx)}; got {proba.shape}"
        )
    if not np.all(np.isfinite(proba)):
        raise ValidationError("proba contains NaN or infinite values")
    if len(y_idx) and (y_idx.min() < 0 or y_idx.max() >= proba.shape[1]):
        raise ValidationError(f"labels must index the {proba.shape[1]} columns of proba; got range {y_idx.min()}..{y_idx.max()}")
    return proba


def label_indices(y: Any, classes: Any) -> np.ndarray:
    """Map labels to column indices of ``classes`` (array of shape (n_samples,))."""
    return encode_labels(y, classes, name="labels")


def accuracy(y_idx: Any, proba: Any) -> float:
    """Share of samples whose most probable class is the true one."""
    y_idx = check_labels(y_idx, len(y_idx)).astype(int)
    proba = _check_proba(y_idx, proba)
    return float(np.mean(proba.argmax(axis=1) == y_idx))


def nll(y_idx: Any, proba: Any) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    y_idx = np.asarray(y_idx, dtype=int)
    proba = _check_proba(y_idx, proba)
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y_idx)), y_idx], _EPS, 1.0))))


def ece(y_idx: Any, proba: Any, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins (Guo et al. 2017, arXiv 1706.04599)."""
    y_idx = np.asarray(y_idx, dtype=int)
    proba = _check_proba(y_idx, proba)
    if n_bins < 1:
        raise ValidationError(f"n_bins must be >= 1; got {n_bins}")
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_idx).astype(float)
    bins = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def score_all(y_idx: Any, proba: Any) -> dict[str, float]:
    """``{"accuracy", "nll", "ece"}`` of one set of predictions."""
    return {"accuracy": accuracy(y_idx, proba), "nll": nll(y_idx, proba), "ece": ece(y_idx, proba)}


def spread(values: Any) -> dict[str, float]:
    """``{"median", "min", "max"}`` of a non-empty sequence of numbers (one figure over seeds).

    >>> spread([0.8, 0.9, 0.85])
    {'median': 0.85, 'min': 0.8, 'max': 0.9}
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValidationError("spread needs at least one value; got none")
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}
