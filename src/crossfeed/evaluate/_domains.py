"""Accuracy of a model on every domain, and the two numbers of every feedback step.

- :func:`prediction_accuracy`: the share of ``model.predict(X) == y``;
- :func:`domain_accuracy`: that, on one split of every domain of a suite;
- :func:`absorption`: ``(acc_v1 - acc_v0) / (acc_expert - acc_v0)``, the share of an expert's lead
  the large model took over (BENCHMARKS.md, feedback); ``None`` where the expert does not lead;
- :func:`forgetting`: ``acc_v0 - acc_v1`` on the general domain (positive = forgotten).

Every accuracy, absorption and forgetting that crossfeed reports is computed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["absorption", "domain_accuracy", "forgetting", "prediction_accuracy"]


def prediction_accuracy(model: Any, X: Any, y: Any) -> float:
    """Share of samples whose predicted label equals ``y`` (any label type).

    Example
    -------
    >>> class Always:
    ...     def predict(self, X): return np.zeros(len(X), dtype=int)
    >>> prediction_accuracy(Always(), np.ones((4, 2)), [0, 0, 1, 0])
    0.75
    """
    return float(np.mean(np.asarray(model.predict(X)) == np.asarray(y)))


def domain_accuracy(model: Any, suite: Iterable[Any], split: str = "test") -> dict[str, float]:
    """Accuracy of ``model`` on ``split`` (``"train"``, ``"val"``, ``"test"``) of every domain of ``suite``."""
    out = {}
    for domain in suite:
        X, y = domain.split(split)
        out[domain.name] = prediction_accuracy(model, X, y)
    return out


def absorption(acc_v0: float, acc_expert: float | None, acc_v1: float) -> float | None:
    """Share of the expert's lead over the old large model that the new one took over.

    ``None`` when there is no expert or it does not lead (``acc_expert <= acc_v0``): the ratio
    means nothing there. ``1`` means the new large model matches the expert on its home ground.

    Example
    -------
    >>> absorption(0.5, 0.9, 0.8)
    0.75
    >>> absorption(0.9, 0.8, 0.95) is None
    True
    """
    if acc_expert is None or acc_expert <= acc_v0:
        return None
    return (acc_v1 - acc_v0) / (acc_expert - acc_v0)


def forgetting(acc_v0: float, acc_v1: float) -> float:
    """``acc_v0 - acc_v1``: accuracy lost on the general domain (negative: it improved)."""
    return acc_v0 - acc_v1
