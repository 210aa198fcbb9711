"""The pure maths of routing: arrays in, arrays out, no estimator (see :class:`~crossfeed.combine.Router`).

Reference: I. Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data" (arXiv
2406.18665); the routing rule "most likely right, minus the price of the call" is the
willingness-to-pay trade-off of cost-aware routing.

Arrays, in any member order:

- ``p_right``: float array of shape (n_members, n_samples), predicted P(member right | sample);
- ``correct``: bool array of shape (n_members, n_samples), whether each member is right;
- ``costs``: float array of shape (n_members,), cost of a sample routed to each member;
- ``lams``: float array of shape (n_points,), willingness-to-pay values lambda (negative: a
  premium on the more expensive members).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from crossfeed.combine._cascade_search import pareto_front

__all__ = ["lambda_grid", "pareto_front", "route", "routing_outcomes", "stacked_linear"]

#: Points of the log-spaced lambda grid (and as many quantiles of the breakpoints).
N_LAMBDAS = 100
#: Element budget of one vectorised evaluation chunk (points x members x samples).
_CHUNK_ELEMENTS = 4_000_000


def route(p_right: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Member chosen for each sample: ``argmax_m p_right[m] - lam * costs[m] / max(costs)``.

    Ties go to the cheaper member (then to the one listed first).

    Parameters
    ----------
    p_right : array of shape (n_members, n_samples)
    costs : array of shape (n_members,), >= 0.
    lam : float, the willingness to pay: how much predicted accuracy one full max-cost call
        must buy. 0 picks the member most likely right, whatever it costs; negative values
        favour the more expensive members.

    Returns
    -------
    int array of shape (n_samples,), indices into the member axis.

    Example
    -------
    >>> p = np.array([[0.9, 0.5], [0.95, 0.9]])          # cheap, expensive; two samples
    >>> route(p, np.array([1.0, 10.0]), 0.0).tolist(), route(p, np.array([1.0, 10.0]), 0.2).tolist()
    ([1, 1], [0, 1])
    """
    return _choices(np.asarray(p_right, dtype=float), np.asarray(costs, dtype=float), np.array([float(lam)]))[0]


def routing_outcomes(
    p_right: np.ndarray, correct: np.ndarray, costs: np.ndarray, lams: np.ndarray, *, large: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, mean cost and share of calls to the ``large`` member for each lambda.

    Parameters
    ----------
    p_right : array of shape (n_members, n_samples)
    correct : bool array of shape (n_members, n_samples)
    costs : array of shape (n_members,)
    lams : array of shape (n_points,)
    large : index of the member whose call rate is reported; default the most expensive.

    Returns
    -------
    (accuracy, cost, large_call_rate), three arrays of shape (n_points,).
    """
    p_right = np.asarray(p_right, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    costs = np.asarray(costs, dtype=float)
    lams = np.atleast_1d(np.asarray(lams, dtype=float))
    large = int(np.argsort(costs, kind="stable")[-1]) if large is None else large
    choice = _choices(p_right, costs, lams)  # (n_points, n_samples)
    cols = np.arange(p_right.shape[1])
    return correct[choice, cols].mean(axis=1), costs[choice].mean(axis=1), (choice == large).mean(axis=1)


def lambda_grid(p_right: np.ndarray, costs: np.ndarray, n_lambdas: int = N_LAMBDAS) -> np.ndarray:
    """Sorted lambdas covering every change of routing, from "always the most expensive" to "always the cheapest".

    A sample switches between members ``i`` and ``j`` (``c_i < c_j``, costs ``c`` divided by
    their maximum) at the breakpoint ``(p_right[j] - p_right[i]) / (c_j - c_i)``. Positive
    lambdas trade predicted accuracy for cost; negative ones pay for the more expensive member
    even where it is predicted less likely right, so the grid also reaches the large model alone
    (whose accuracy a cost-aware router should be able to match). The grid holds 0, log grids and
    quantiles of the positive and of the negative breakpoints, and a value past each end.

    Parameters
    ----------
    p_right : array of shape (n_members, n_samples)
    costs : array of shape (n_members,)
    n_lambdas : points of each log grid, and quantile levels of the breakpoints.

    Returns
    -------
    sorted array of shape (n_points,); contains 0.

    Example
    -------
    >>> lambda_grid(np.array([[0.5], [0.9]]), np.array([1.0, 5.0]), n_lambdas=3).round(4)
    array([0. , 0.5, 0.5])
    """
    p_right = np.asarray(p_right, dtype=float)
    c = _normalised(np.asarray(costs, dtype=float))
    breaks = [np.empty(0)]
    for i in range(c.size):
        for j in range(c.size):
            if c[j] > c[i]:
                breaks.append((p_right[j] - p_right[i]) / (c[j] - c[i]))
    every = np.concatenate(breaks)
    positive, negative = every[every > 0], -every[every < 0]
    grid = [np.zeros(1)]
    for side, sign in ((positive, 1.0), (negative, -1.0)):
        if side.size:
            lo, hi = side.min(), side.max()
            part = np.concatenate([np.geomspace(lo, hi, n_lambdas), np.quantile(side, np.linspace(0, 1, n_lambdas)),
                                   [hi * (1 + 1e-6)]])  # strictly past every breakpoint
            grid.append(sign * part)
    return np.unique(np.concatenate(grid))


def _normalised(costs: np.ndarray) -> np.ndarray:
    top = costs.max() if costs.size else 0.0
    return costs / top if top > 0 else np.zeros_like(costs)


def _choices(p_right: np.ndarray, costs: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """Chosen member per (lambda, sample): int array of shape (n_points, n_samples)."""
    order = np.argsort(costs, kind="stable")  # argmax takes the first maximum: the cheaper member
    p, c = p_right[order], _normalised(costs)[order]
    n_members, n_samples = p.shape
    out = np.empty((lams.size, n_samples), dtype=np.intp)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_members * n_samples))
    for start in range(0, lams.size, chunk):
        lam = lams[start : start + chunk]
        utility = p[None, :, :] - lam[:, None, None] * c[None, :, None]
        out[start : start + chunk] = order[np.argmax(utility, axis=1)]
    return out


def stacked_linear(routers: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The routers as one linear map ``sigmoid(X @ W + b)``, when each one is linear, else None.

    Folds ``StandardScaler -> LogisticRegression`` pipelines (the default router), bare binary
    logistic regressions and constant predictors into ``W`` of shape (n_features, n_members) and
    ``b`` of shape (n_members,); the probabilities are the routers' own (to rounding).
    """
    columns, biases = [], []
    for router in routers:
        steps = [s for _, s in router.steps] if hasattr(router, "steps") else [router]
        model = steps[-1]
        if isinstance(model, DummyClassifier):
            rate = float(np.clip(model.class_prior_[np.flatnonzero(model.classes_ == 1)].sum(), 1e-12, 1 - 1e-12))
            columns.append(None)
            biases.append(np.log(rate / (1.0 - rate)))
            continue
        scalers = steps[:-1]
        if not isinstance(model, LogisticRegression) or model.coef_.shape[0] != 1 or list(model.classes_) != [0, 1] \
                or not all(isinstance(sc, StandardScaler) for sc in scalers):
            return None
        w, b = model.coef_[0].astype(float), float(model.intercept_[0])
        for sc in reversed(scalers):  # (x - mean) / scale, innermost scaler last
            scale = sc.scale_ if sc.with_std and sc.scale_ is not None else np.ones_like(w)
            mean = sc.mean_ if sc.with_mean and sc.mean_ is not None else np.zeros_like(w)
            w = w / scale
            b = b - float(mean @ w)
        columns.append(w)
        biases.append(b)
    n_features = next((c.size for c in columns if c is not None), None)
    if n_features is None:
        return None
    weights = np.column_stack([np.zeros(n_features) if c is None else c for c in columns])
    return weights, np.asarray(biases, dtype=float)
