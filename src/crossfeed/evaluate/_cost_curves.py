"""Accuracy-versus-cost: cost to match the large model, and the normalised area under the curve."""

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
