"""Accuracy-versus-cost: cost to match the large model, the normalised area under the curve, APGR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossfeed.exceptions import ValidationError


@dataclass(frozen=True)
class CostToMatch:
    """The cheapest operating point whose accuracy is within ``tolerance`` of the reference.

    ``fraction`` is its cost divided by the reference cost, or ``None`` when no point qualifies.
    """

    fraction: float | None
    cost: float | None
    accuracy: float | None
    reference_accuracy: float
    reference_cost: float
    tolerance: float


def _curve(costs: object, accuracies: object) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(costs, dtype=float).ravel()
    a = np.asarray(accuracies, dtype=float).ravel()
    if c.shape != a.shape or c.size == 0:
        raise ValidationError(f"costs and accuracies must be non-empty and equally long; got {c.shape} and {a.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))):
        raise ValidationError("costs and accuracies must be finite")
    order = np.argsort(c, kind="stable")
    return c[order], a[order]


def cost_to_match(
    costs: object, accuracies: object, *, reference_accuracy: float, reference_cost: float, tolerance: float = 0.001
) -> CostToMatch:
    """Smallest cost at which the curve's accuracy is >= ``reference_accuracy - tolerance``.

    Parameters
    ----------
    costs, accuracies : arrays of shape (n_points,), operating points of a cascade (or any curve).
    reference_accuracy, reference_cost : the large model's accuracy and cost.
    tolerance : accuracy slack, as a fraction (0.001 = 0.1 point).

    Example
    -------
    >>> cost_to_match([1, 3, 10], [0.80, 0.899, 0.90], reference_accuracy=0.90, reference_cost=10).fraction
    0.3
    """
    if reference_cost <= 0:
        raise ValidationError(f"reference_cost must be positive; got {reference_cost}")
    c, a = _curve(costs, accuracies)
    ok = np.flatnonzero(a >= reference_accuracy - tolerance - 1e-12)
    if ok.size == 0:
        return CostToMatch(None, None, None, reference_accuracy, reference_cost, tolerance)
    i = ok[0]
    return CostToMatch(float(c[i] / reference_cost), float(c[i]), float(a[i]), reference_accuracy, reference_cost, tolerance)


def normalized_auc(costs: object, accuracies: object, *, small: tuple[float, float], large: tuple[float, float]) -> float:
    """Area under the accuracy-cost curve between the small-only and large-only points, normalised.

    The curve is clipped to ``[small_cost, large_cost]``, its running maximum taken (a more
    expensive point never has to be used if it is worse) and the area above the small model's
    accuracy divided by the area of the rectangle up to the large model's accuracy. 0 means no
    better than the small model everywhere; 1 means the large model's accuracy at the small
    model's cost (like APGR in RouteLLM, arXiv 2406.18665). Values above 1 are possible when the
    cascade beats the large model.
    """
    (c0, a0), (c1, a1) = small, large
    if c1 <= c0:
        raise ValidationError(f"the large point must cost more than the small one; got {c0} and {c1}")
    if a1 <= a0:
        raise ValidationError(f"normalised AUC needs the large model more accurate than the small one; got {a0} and {a1}")
    c, a = _curve(list(costs) + [c0, c1], list(accuracies) + [a0, a1])  # type: ignore[operator]
    keep = (c >= c0) & (c <= c1)
    c, a = c[keep], np.maximum.accumulate(a[keep])
    grid = np.linspace(c0, c1, 512)
    acc = a[np.clip(np.searchsorted(c, grid, side="right") - 1, 0, len(a) - 1)]
    return float(np.trapezoid(acc - a0, grid) / ((a1 - a0) * (c1 - c0)))


def apgr(call_rates: object, accuracies: object, *, weak_accuracy: float, strong_accuracy: float) -> float:
    """Average performance gap recovered (APGR) of a router's accuracy-versus-call-rate curve.

    RouteLLM's summary of a two-model router (Ong et al., "RouteLLM: Learning to Route LLMs
    with Preference Data", arXiv 2406.18665): at each operating point the performance gap
    recovered is ``PGR = (accuracy - weak_accuracy) / (strong_accuracy - weak_accuracy)``;
    APGR is its area over the share of calls sent to the strong model, from 0 to 1. The
    endpoints (0, weak) and (1, strong) are added, the running maximum of the accuracy is taken
    (a point that calls the strong model more but is worse need never be used) and the area is
    the trapezoid rule over the points (mixing two routers at random reaches every point between
    them). Random routing, the straight line from (0, weak) to (1, strong), scores 0.5; reaching
    the strong model's accuracy with almost no strong calls scores close to 1; values above 1
    mean the router beats the strong model.

    Parameters
    ----------
    call_rates : array of shape (n_points,)
        Share of samples sent to the strong model at each operating point, in [0, 1] (e.g.
        ``Router.curve_["large_call_rate"]``). May be empty: then only the endpoints count.
    accuracies : array of shape (n_points,)
        Accuracy at each operating point.
    weak_accuracy, strong_accuracy : float
        Accuracy of the weak (cheap) and strong (expensive) model alone; strong must be higher.

    Returns
    -------
    float, 0.5 for random routing.

    Example
    -------
    >>> round(apgr([0.25, 0.5, 0.75], [0.65, 0.70, 0.75], weak_accuracy=0.6, strong_accuracy=0.8), 4)  # random
    0.5
    >>> round(apgr([0.2], [0.8], weak_accuracy=0.6, strong_accuracy=0.8), 4)  # strong accuracy at 20% calls
    0.9
    """
    rates = np.asarray(call_rates, dtype=float).ravel()
    acc = np.asarray(accuracies, dtype=float).ravel()
    if rates.shape != acc.shape:
        raise ValidationError(
            f"call_rates and accuracies must be equally long (one pair per operating point); got {rates.size} "
            f"call rates and {acc.size} accuracies"
        )
    if not (np.all(np.isfinite(rates)) and np.all(np.isfinite(acc))):
        raise ValidationError("call_rates and accuracies must be finite; drop the NaN or infinite points")
    if rates.size and (rates.min() < 0 or rates.max() > 1):
        raise ValidationError(
            f"call_rates are shares of calls to the strong model and must lie in [0, 1]; got values in "
            f"[{rates.min():.4g}, {rates.max():.4g}]. Pass the share (calls / samples), not a count or a percentage"
        )
    weak, strong = float(weak_accuracy), float(strong_accuracy)
    if not (np.isfinite(weak) and np.isfinite(strong)):
        raise ValidationError(f"weak_accuracy and strong_accuracy must be finite; got {weak} and {strong}")
    if strong <= weak:
        raise ValidationError(
            f"APGR needs strong_accuracy > weak_accuracy (the gap to recover); got weak {weak} and strong {strong}. "
            "With no gap there is nothing to route for; check that the two are not swapped"
        )
    r = np.concatenate([[0.0], rates, [1.0]])
    a = np.concatenate([[weak], acc, [strong]])
    order = np.lexsort((a, r))  # by call rate, the better point last at equal rates
    r, a = r[order], np.maximum.accumulate(a[order])
    return float(np.trapezoid((a - weak) / (strong - weak), r))
