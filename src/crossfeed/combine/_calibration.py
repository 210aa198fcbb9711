"""Temperature scaling (Guo et al. 2017): one scalar ``T > 0`` that rescales log-probabilities.

``softmax(z / T)`` keeps every prediction's argmax (accuracy is unchanged) and only softens
(``T > 1``) or sharpens (``T < 1``) the probabilities; ``T`` is fitted to minimise the
negative log-likelihood on held-out data.

Reference: C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017 (arXiv 1706.04599).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp
from sklearn.base import BaseEstimator, TransformerMixin

from crossfeed._validation import is_fitted
from crossfeed.exceptions import NotFittedError, ValidationError

__all__ = ["TemperatureScaler", "fit_temperature"]

logger = logging.getLogger(__name__)

#: Temperatures are searched in [1 / _T_RANGE, _T_RANGE].
_T_RANGE = 1e3
#: Probabilities are clipped to [_PROBA_FLOOR, 1] before taking logs.
_PROBA_FLOOR = 1e-12


def _check_scores(scores: Any, name: str) -> np.ndarray:
    z = np.asarray(scores, dtype=float)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValidationError(
            f"{name} must have shape (n_samples, n_classes) with at least one of each; got shape {z.shape}"
        )
    if not np.all(np.isfinite(z)):
        raise ValidationError(
            f"{name} contains NaN or infinite values; pass finite logits or log-probabilities "
            f"(clip probabilities first, e.g. np.log(np.clip(p, {_PROBA_FLOOR}, 1)))"
        )
    return z


def _check_y_idx(y_idx: Any, n_samples: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y_idx)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValidationError(f"y_idx must have shape ({n_samples},); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValidationError(
            f"y_idx must hold integer class indices in [0, {n_classes}); got dtype {y.dtype}. "
            "Map labels to column indices first, e.g. np.searchsorted(model.classes_, y)"
        )
    return y.astype(np.intp)


def log_proba(proba: np.ndarray) -> np.ndarray:
    """``log(clip(proba, 1e-12, 1))``: finite log-probabilities for temperature scaling."""
    return np.log(np.clip(np.asarray(proba, dtype=float), _PROBA_FLOOR, 1.0))


def scale_proba(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities ``softmax(log(proba) / T)``, shape (n_samples, n_classes)."""
    return np.exp(log_softmax(log_proba(proba) / float(temperature), axis=1))


def fit_temperature(log_probs: np.ndarray, y_idx: np.ndarray) -> float:
    """Temperature ``T`` minimising the NLL of ``softmax(log_probs / T)`` (Guo et al. 2017).

    The NLL is convex in ``1 / T``; it is minimised over ``log T`` in ``[-log 1e3, log 1e3]``
    with bounded Brent search. ``T > 1`` means the inputs were overconfident, ``T < 1``
    underconfident, ``T ~ 1`` already calibrated.

    Parameters
    ----------
    log_probs : array of shape (n_samples, n_classes), logits or log-probabilities (finite).
    y_idx : int array of shape (n_samples,), true class indices.

    Returns
    -------
    float, the temperature ``T > 0``.

    Example
    -------
    >>> z = np.log(np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]]))
    >>> fit_temperature(z, np.array([0, 1, 1, 0])) > 1   # one confident mistake in four
    True

    Reference: arXiv 1706.04599.
    """
    z = _check_scores(log_probs, "log_probs")
    y = _check_y_idx(y_idx, z.shape[0], z.shape[1])
    true = z[np.arange(z.shape[0]), y]

    def nll(log_t: float) -> float:
        beta = np.exp(-log_t)
        return float(np.mean(logsumexp(beta * z, axis=1) - beta * true))

    bound = np.log(_T_RANGE)
    result = minimize_scalar(nll, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-6})
    temperature = float(np.exp(result.x))
    if abs(result.x) > bound - 1e-3:
        logger.warning(
            "fitted temperature %.4g sits at the edge of the search range [1e-3, 1e3]: the scores carry "
            "almost no information about the labels (T large) or separate them perfectly (T small)",
            temperature,
        )
    return temperature


class TemperatureScaler(TransformerMixin, BaseEstimator):
    """Learn one temperature ``T`` on held-out predictions and rescale probabilities with it.

    Parameters
    ----------
    input : "proba" or "logits", default "proba"
        What ``fit`` and ``transform`` receive: probabilities (rows summing to 1; logs are taken
        after clipping to ``[1e-12, 1]``) or unnormalised logits.

    Attributes
    ----------
    temperature_ : float
        The fitted ``T > 0``.
    n_features_in_ : int
        Number of classes seen in ``fit``.

    Example
    -------
    >>> p = np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]])
    >>> scaler = TemperatureScaler().fit(p, np.array([0, 1, 1, 0]))
    >>> bool(scaler.transform(p).max() < 0.99)
    True

    Reference: Guo et al., "On Calibration of Modern Neural Networks" (arXiv 1706.04599).
    """

    def __init__(self, input: Literal["proba", "logits"] = "proba") -> None:
        self.input = input

    def _log_scores(self, scores: Any, name: str) -> np.ndarray:
        if self.input not in ("proba", "logits"):
            raise ValidationError(f"input must be 'proba' or 'logits'; got {self.input!r}")
        z = _check_scores(scores, name)
        return log_proba(z) if self.input == "proba" else z

    def fit(self, scores: np.ndarray, y_idx: np.ndarray) -> TemperatureScaler:
        """Fit ``temperature_``.

        Parameters
        ----------
        scores : array of shape (n_samples, n_classes), probabilities or logits (see ``input``).
        y_idx : int array of shape (n_samples,), true class indices (column of ``scores``).

        Returns
        -------
        self
        """
        z = self._log_scores(scores, "scores")
        self.temperature_ = fit_temperature(z, y_idx)
        self.n_features_in_ = z.shape[1]
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(z / temperature_)``, shape (n_samples, n_classes)."""
        if not is_fitted(self):
            raise NotFittedError("this TemperatureScaler is not fitted yet; call fit(scores, y_idx) first")
        z = self._log_scores(scores, "scores")
        if z.shape[1] != self.n_features_in_:
            raise ValidationError(
                f"scores has {z.shape[1]} classes but the scaler was fitted on {self.n_features_in_}; "
                "pass predictions of the same model"
            )
        return np.exp(log_softmax(z / self.temperature_, axis=1))
