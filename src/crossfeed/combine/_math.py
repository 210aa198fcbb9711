"""Pure maths of the weighted ensemble: log-loss, simplex weights, Caruana ensemble selection.

Every function takes arrays and returns arrays; none knows about estimators. ``probas`` is
always an array of shape (n_members, n_samples, n_classes) holding each member's predicted
class probabilities, and ``y_idx`` an integer array of shape (n_samples,) with the index of the
true class of each sample (``0 <= y_idx < n_classes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

from crossfeed.exceptions import ValidationError

__all__ = ["caruana_selection", "mean_log_loss", "optimize_simplex_weights"]

logger = logging.getLogger(__name__)

_EPS = 1e-15


def _check_probas(probas: np.ndarray, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probas, dtype=float)
    y = np.asarray(y_idx)
    if p.ndim != 3:
        raise ValidationError(
            f"probas must have shape (n_members, n_samples, n_classes); got shape {p.shape}. "
            "Stack the members' predict_proba outputs with np.stack([...])"
        )
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValidationError(f"probas needs at least one member and one sample; got shape {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[1]:
        raise ValidationError(
            f"y_idx must have shape (n_samples,) = ({p.shape[1]},); got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= p.shape[2])):
        raise ValidationError(
            f"y_idx must hold integer class indices in [0, {p.shape[2]}); got dtype {y.dtype} "
            f"with range [{y.min() if y.size else None}, {y.max() if y.size else None}]. "
            "Map labels to indices with np.searchsorted(classes_, y)"
        )
    if not np.all(np.isfinite(p)):
        raise ValidationError("probas contains NaN or infinite values; expected probabilities in [0, 1]")
    return p, y.astype(np.intp)


def mean_log_loss(proba: np.ndarray, y_idx: np.ndarray, *, eps: float = _EPS) -> float:
    """Mean negative log-likelihood of the true classes.

    Parameters
    ----------
    proba : array of shape (n_samples, n_classes)
    y_idx : int array of shape (n_samples,)
    eps : probabilities are clipped to ``[eps, 1]`` so a confident mistake costs ``-log(eps)``.

    Returns
    -------
    float, the mean of ``-log p[i, y_idx[i]]``.

    Example
    -------
    >>> round(mean_log_loss(np.array([[0.5, 0.5]]), np.array([0])), 4)
    0.6931
    """
    p = np.asarray(proba, dtype=float)
    y = np.asarray(y_idx, dtype=np.intp)
    true = p[np.arange(p.shape[0]), y]
    return float(-np.mean(np.log(np.clip(true, eps, 1.0))))


def optimize_simplex_weights(probas: np.ndarray, y_idx: np.ndarray, *, eps: float = _EPS) -> np.ndarray:
    """Weights on the probability simplex that minimise the log-loss of the weighted average.

    Solves ``min_w -mean_i log(sum_m w_m probas[m, i, y_i])`` subject to ``w >= 0`` and
    ``sum(w) = 1`` with SLSQP (analytic gradient, uniform start). The objective is convex in
    ``w`` (minus the log of a linear function), so the local optimum SLSQP finds is global; a
    member that never helps gets weight 0. Weights below 1e-8 are set to 0 and the rest
    renormalised; if the solver's answer is worse than the best single member (numerical
    trouble), the best single member is returned instead.

    Parameters
    ----------
    probas : array of shape (n_members, n_samples, n_classes)
    y_idx : int array of shape (n_samples,), true class indices.
    eps : probabilities are clipped to ``[eps, 1]`` inside the log.

    Returns
    -------
    array of shape (n_members,), non-negative, summing to 1.

    Example
    -------
    >>> good = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> bad = np.array([[0.1, 0.9], [0.8, 0.2]])
    >>> optimize_simplex_weights(np.stack([good, bad]), np.array([0, 1])).round(2)
    array([1., 0.])
    """
    p, y = _check_probas(probas, y_idx)
    n_members, n_samples = p.shape[0], p.shape[1]
    if n_members == 1:
        return np.ones(1)
    q = p[:, np.arange(n_samples), y].T  # (n_samples, n_members): each member's true-class probability

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = np.clip(q @ w, eps, None)
        return float(-np.mean(np.log(s))), -(q / s[:, None]).mean(axis=0)

    result = minimize(
        objective,
        np.full(n_members, 1.0 / n_members),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_members,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    w = np.clip(np.nan_to_num(result.x, nan=0.0), 0.0, None)
    w[w < 1e-8] = 0.0
    w = w / w.sum() if w.sum() > 0 else np.full(n_members, 1.0 / n_members)
    vertex_losses = [objective(np.eye(n_members)[m])[0] for m in range(n_members)]
    best = int(np.argmin(vertex_losses))
    if objective(w)[0] > vertex_losses[best] + 1e-12:
        logger.warning(
            "SLSQP returned weights worse than the best single member (%s); using that member alone",
            result.message,
        )
        w = np.eye(n_members)[best]
    return w


def caruana_selection(
    probas: np.ndarray,
    y_idx: np.ndarray,
    *,
    n_iter: int = 50,
    loss: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> np.ndarray:
    """Greedy forward ensemble selection with replacement (Caruana et al. 2004).

    Starting from an empty ensemble, each of ``n_iter`` rounds adds the member (possibly one
    already chosen) whose inclusion gives the lowest ``loss`` of the averaged probabilities.
    The ensemble of the round with the lowest loss is returned (the paper's "best hillclimb
    iteration"), as weights = how many times each member was picked / ensemble size. Ties go
    to the lowest member index; the paper's sorted initialisation and bagging are not used.

    Reference: R. Caruana, A. Niculescu-Mizil, G. Crew, A. Ksikes, "Ensemble selection from
    libraries of models", ICML 2004.

    Parameters
    ----------
    probas : array of shape (n_members, n_samples, n_classes)
    y_idx : int array of shape (n_samples,), true class indices.
    n_iter : number of greedy rounds (ensemble size at most), >= 1.
    loss : ``loss(proba, y_idx) -> float`` on an array of shape (n_samples, n_classes), lower is
        better; default :func:`mean_log_loss`.

    Returns
    -------
    array of shape (n_members,), multiples of ``1 / k`` for some ``k <= n_iter``, summing to 1.

    Example
    -------
    >>> good = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> bad = np.array([[0.1, 0.9], [0.8, 0.2]])
    >>> caruana_selection(np.stack([good, bad]), np.array([0, 1]), n_iter=10)
    array([1., 0.])
    """
    p, y = _check_probas(probas, y_idx)
    if isinstance(n_iter, bool) or not isinstance(n_iter, int | np.integer) or n_iter < 1:
        raise ValidationError(f"n_iter must be a positive integer; got {n_iter!r}")
    loss_fn = mean_log_loss if loss is None else loss
    n_members = p.shape[0]
    counts = np.zeros(n_members, dtype=np.int64)
    running = np.zeros(p.shape[1:])
    best_loss, best_counts = np.inf, None
    for k in range(1, int(n_iter) + 1):
        candidate_losses = [loss_fn((running + p[m]) / k, y) for m in range(n_members)]
        m = int(np.argmin(candidate_losses))
        counts[m] += 1
        running += p[m]
        if candidate_losses[m] < best_loss - 1e-12:
            best_loss, best_counts = candidate_losses[m], counts.copy()
    logger.debug("caruana_selection: best loss %.6f with counts %s", best_loss, best_counts)
    if best_counts is None:  # every loss was NaN/inf: fall back to a uniform average
        return np.full(n_members, 1.0 / n_members)
    return best_counts / best_counts.sum()
