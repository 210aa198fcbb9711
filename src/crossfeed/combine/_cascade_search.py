"""Threshold search for cascades: pure functions on per-stage scores, correctness and costs.

A cascade with stages ``0..K-1`` (cheapest first) answers a sample at the first stage ``k``
whose confidence ``scores[k, i] >= thresholds[k]``; the last stage's threshold is ``-inf`` so it
always answers. A sample answered at stage ``k`` costs ``cum_costs[k] = costs[0] + ... +
costs[k]`` (every stage reached has run). Arrays:

- ``scores``: float array of shape (n_stages, n_samples), confidence of each stage's prediction;
- ``correct``: bool array of shape (n_stages, n_samples), whether that prediction is right;
- ``costs``: float array of shape (n_stages,), cost per sample of running each stage;
- ``thresholds``: float array of shape (n_points, n_stages) for a batch of threshold vectors.

Search (:func:`search_thresholds`): candidate thresholds per stage are its validation scores at
``n_candidates`` evenly spaced quantiles, plus ``+inf`` ("never answer here"). With few
enough combinations (2-3 stages) every combination of the grid is evaluated, so the result
is the exact optimum on the grid; otherwise a coordinate search cycles through the stages,
setting each one's threshold to its best candidate given the others, until nothing
improves. The selection rule is: with a ``target`` accuracy, the cheapest point reaching it
(or the most accurate one if none does); with a ``budget``, the most accurate point whose
cost is within it (ties: cheaper; or the cheapest point if none is).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["SearchResult", "best_point", "cascade_outcomes", "cascade_stages", "candidate_thresholds", "pareto_curve", "pareto_front", "search_thresholds"]

logger = logging.getLogger(__name__)

#: Largest grid evaluated exhaustively; beyond it the coordinate search runs.
MAX_GRID = 20_000
#: Element budget of one vectorised evaluation chunk (points x stages x samples).
_CHUNK_ELEMENTS = 4_000_000
_TOL = 1e-12


@dataclass(frozen=True)
class SearchResult:
    """Outcome of :func:`search_thresholds`.

    thresholds : array of shape (n_stages,), the chosen vector (last entry ``-inf``).
    accuracy, cost, escalation_rate : the chosen point's validation accuracy, mean cost per
        sample and share of samples not answered by stage 0.
    curve : dict of arrays ``cost``, ``accuracy``, ``escalation_rate`` (shape (n_points,)) and
        ``thresholds`` (shape (n_points, n_stages)): the accuracy-versus-cost Pareto front of
        every evaluated point, sorted by cost, accuracy increasing.
    exhaustive : whether the whole grid was evaluated.
    """

    thresholds: np.ndarray
    accuracy: float
    cost: float
    escalation_rate: float
    curve: dict[str, np.ndarray]
    exhaustive: bool


def cascade_outcomes(
    scores: np.ndarray, correct: np.ndarray, costs: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, mean cost and escalation rate of each threshold vector in a batch.

    Parameters
    ----------
    scores : array of shape (n_stages, n_samples)
    correct : bool array of shape (n_stages, n_samples)
    costs : array of shape (n_stages,)
    thresholds : array of shape (n_points, n_stages); the last column is ignored (the last
        stage always answers).

    Returns
    -------
    (accuracy, cost, escalation_rate), three arrays of shape (n_points,).
    """
    scores = np.asarray(scores, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    thresholds = np.atleast_2d(np.asarray(thresholds, dtype=float))
    n_stages, n_samples = scores.shape
    cum_costs = np.cumsum(np.asarray(costs, dtype=float))
    accuracy = np.empty(thresholds.shape[0])
    cost = np.empty(thresholds.shape[0])
    escalation = np.empty(thresholds.shape[0])
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_stages * n_samples))
    cols = np.arange(n_samples)
    for start in range(0, thresholds.shape[0], chunk):
        t = thresholds[start : start + chunk]
        answers = scores[None, :, :] >= t[:, :, None]  # (chunk, n_stages, n_samples)
        answers[:, -1, :] = True
        stage = np.argmax(answers, axis=1)  # first answering stage, (chunk, n_samples)
        accuracy[start : start + chunk] = correct[stage, cols].mean(axis=1)
        cost[start : start + chunk] = cum_costs[stage].mean(axis=1)
        escalation[start : start + chunk] = (stage > 0).mean(axis=1)
    return accuracy, cost, escalation


def cascade_stages(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The stage that answers each sample under one threshold vector.

    Parameters
    ----------
    scores : array of shape (n_stages, n_samples)
    thresholds : array of shape (n_stages,); the last entry is ignored (the last stage answers).

    Returns
    -------
    int array of shape (n_samples,): the first stage ``k`` with ``scores[k] >= thresholds[k]``.

    Example
    -------
    >>> cascade_stages(np.array([[0.9, 0.4], [0.5, 0.5]]), np.array([0.8, -np.inf])).tolist()
    [0, 1]
    """
    answers = np.asarray(scores, dtype=float) >= np.asarray(thresholds, dtype=float)[:, None]
    answers[-1] = True
    return np.argmax(answers, axis=0)


def candidate_thresholds(stage_scores: np.ndarray, n_candidates: int) -> np.ndarray:
    """Observed scores at ``n_candidates`` evenly spaced quantiles, plus ``+inf``, sorted unique.

    Parameters
    ----------
    stage_scores : array of shape (n_samples,), one stage's validation confidences.
    n_candidates : number of quantile levels (from 0 to 1).

    Returns
    -------
    array of shape (<= n_candidates + 1,). The smallest value makes the stage answer every
    sample that reaches it; ``+inf`` makes it answer none.
    """
    levels = np.linspace(0.0, 1.0, n_candidates)
    values = np.quantile(np.asarray(stage_scores, dtype=float), levels, method="lower")
    return np.unique(np.append(values, np.inf))


def pareto_front(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both cost and accuracy, sorted by cost.

    Parameters
    ----------
    cost, accuracy : arrays of shape (n_points,)

    Returns
    -------
    int array of shape (n_front,): cost non-decreasing, accuracy strictly increasing along it;
    among equal points the first listed is kept.

    Example
    -------
    >>> pareto_front(np.array([1.0, 2.0, 3.0, 2.0]), np.array([0.7, 0.8, 0.75, 0.8])).tolist()
    [0, 1]
    """
    cost, accuracy = np.asarray(cost, dtype=float), np.asarray(accuracy, dtype=float)
    order = np.lexsort((-accuracy, cost))  # by cost, then best accuracy first
    keep, best = [], -np.inf
    for i in order:
        if accuracy[i] > best + _TOL:
            keep.append(i)
            best = accuracy[i]
    return np.array(keep, dtype=np.intp)


def pareto_curve(
    accuracy: np.ndarray, cost: np.ndarray, escalation: np.ndarray, thresholds: np.ndarray
) -> dict[str, np.ndarray]:
    """Keep the points no other point beats on both cost and accuracy; sort them by cost.

    Returns
    -------
    dict with ``cost``, ``accuracy``, ``escalation_rate`` (shape (n_front,)) and ``thresholds``
    (shape (n_front, n_stages)); cost non-decreasing and accuracy strictly increasing.
    """
    idx = pareto_front(cost, accuracy)
    return {
        "cost": cost[idx],
        "accuracy": accuracy[idx],
        "escalation_rate": escalation[idx],
        "thresholds": thresholds[idx],
    }


def _keys(accuracy: np.ndarray, cost: np.ndarray, target: float | None, budget: float | None) -> np.ndarray:
    """Sort keys (smaller = better) of each point, as a (n_points, 3) array compared lexicographically."""
    if budget is not None:
        feasible = cost <= budget + _TOL
        return np.column_stack([~feasible, np.where(feasible, -accuracy, cost), np.where(feasible, cost, -accuracy)])
    feasible = accuracy >= target - _TOL
    return np.column_stack([~feasible, np.where(feasible, cost, -accuracy), np.where(feasible, -accuracy, cost)])


def _best(keys: np.ndarray) -> int:
    return int(np.lexsort(keys.T[::-1])[0])


def best_point(accuracy: np.ndarray, cost: np.ndarray, target: float | None, budget: float | None) -> int:
    """Index of the best point by the selection rule: cheapest reaching ``target``, or best within ``budget``."""
    return _best(_keys(np.asarray(accuracy, dtype=float), np.asarray(cost, dtype=float), target, budget))


def search_thresholds(
    scores: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    *,
    target: float | None = None,
    budget: float | None = None,
    n_candidates: int = 50,
    max_rounds: int = 20,
) -> SearchResult:
    """Choose per-stage thresholds: cheapest reaching ``target`` accuracy, or best within ``budget``.

    Exactly one of ``target`` and ``budget`` must be given. See the module docstring for the
    candidate grid, the exhaustive / coordinate search and the selection rule.

    Parameters
    ----------
    scores : array of shape (n_stages, n_samples)
    correct : bool array of shape (n_stages, n_samples)
    costs : array of shape (n_stages,)
    target : accuracy to reach, in [0, 1].
    budget : mean cost per sample not to exceed.
    n_candidates : quantile levels per stage.
    max_rounds : passes of the coordinate search (large cascades only).

    Returns
    -------
    SearchResult
    """
    if (target is None) == (budget is None):
        raise ValueError("give exactly one of target and budget")
    scores = np.asarray(scores, dtype=float)
    n_stages = scores.shape[0]
    if n_stages == 1:
        grids: list[np.ndarray] = []
    else:
        grids = [candidate_thresholds(scores[k], n_candidates) for k in range(n_stages - 1)]
    grid_size = int(np.prod([g.size for g in grids])) if grids else 1
    exhaustive = grid_size <= MAX_GRID
    if exhaustive:
        combos = np.array(list(itertools.product(*grids)), dtype=float).reshape(grid_size, n_stages - 1)
        points = np.column_stack([combos, np.full(grid_size, -np.inf)])
        acc, cost, esc = cascade_outcomes(scores, correct, costs, points)
    else:
        points, acc, cost, esc = _coordinate_search(scores, correct, costs, grids, target, budget, max_rounds)
    i = _best(_keys(acc, cost, target, budget))
    if target is not None and acc[i] < target - _TOL:
        logger.warning("no thresholds reach target accuracy %.4f on validation data; best is %.4f", target, acc[i])
    if budget is not None and cost[i] > budget + _TOL:
        logger.warning("no thresholds fit budget %.4g; the cheapest cascade costs %.4g per sample", budget, cost[i])
    logger.debug("threshold search: %d points evaluated (exhaustive=%s)", points.shape[0], exhaustive)
    return SearchResult(
        thresholds=points[i].copy(),
        accuracy=float(acc[i]),
        cost=float(cost[i]),
        escalation_rate=float(esc[i]),
        curve=pareto_curve(acc, cost, esc, points),
        exhaustive=exhaustive,
    )


def _coordinate_search(
    scores: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    grids: list[np.ndarray],
    target: float | None,
    budget: float | None,
    max_rounds: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coordinate search over the stages' candidate grids; returns every evaluated point.

    Starts from "everything goes to the last stage" for a target (feasible when the target is
    the last stage's accuracy) and from "stage 0 answers everything" for a budget (cheapest).
    """
    n_stages = scores.shape[0]
    start = np.inf if target is not None else -np.inf
    current = np.full(n_stages, start)
    current[-1] = -np.inf
    seen_points, seen_acc, seen_cost, seen_esc = [], [], [], []
    current_key = None
    for _ in range(max_rounds):
        changed = False
        for k in range(n_stages - 1):
            trial = np.repeat(current[None, :], grids[k].size, axis=0)
            trial[:, k] = grids[k]
            acc, cost, esc = cascade_outcomes(scores, correct, costs, trial)
            seen_points.append(trial)
            seen_acc.append(acc)
            seen_cost.append(cost)
            seen_esc.append(esc)
            keys = _keys(acc, cost, target, budget)
            j = _best(keys)
            if current_key is None or tuple(keys[j]) < current_key:
                changed = changed or not np.array_equal(trial[j], current)
                current, current_key = trial[j].copy(), tuple(keys[j])
        if not changed:
            break
    return (np.concatenate(seen_points), np.concatenate(seen_acc), np.concatenate(seen_cost),
            np.concatenate(seen_esc))
