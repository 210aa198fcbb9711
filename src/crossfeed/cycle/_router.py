"""The served system of a cycle: each domain answered by the model the gate chose for it.

:func:`load_served` reads a seed's run folder (the last finished generation by default) into a
:class:`DomainRouter`; ``router.predict(X, domain="noisy")`` answers with that domain's model, and
``domain`` may be an array naming each row's domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed.cycle._checkpoint import finished_generations, load_record
from crossfeed.exceptions import ValidationError
from crossfeed.models import load_model

__all__ = ["DomainRouter", "load_served"]


class DomainRouter:
    """Answer each domain with its own model.

    Parameters
    ----------
    models : domain -> fitted model (``predict``, ``predict_proba``; the same classes).
    labels : domain -> a name of the model, for reports (optional).

    Example
    -------
    >>> class Const:
    ...     classes_ = np.array([0, 1])
    ...     def __init__(self, k): self.k = k
    ...     def predict_proba(self, X): return np.tile(np.eye(2)[self.k], (len(X), 1))
    ...     def predict(self, X): return np.full(len(X), self.k)
    >>> router = DomainRouter({"a": Const(0), "b": Const(1)})
    >>> router.predict(np.zeros((3, 2)), domain=["a", "b", "b"]).tolist()
    [0, 1, 1]
    """

    def __init__(self, models: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> None:
        if not models:
            raise ValidationError("DomainRouter needs at least one domain's model")
        self.models = dict(models)
        self.labels = dict(labels or {})

    @property
    def domains(self) -> list[str]:
        return list(self.models)

    def _rows(self, X: Any, domain: str | Any) -> list[tuple[Any, np.ndarray]]:
        n = len(X)
        names = np.full(n, domain, dtype=object) if isinstance(domain, str) else np.asarray(domain, dtype=object)
        if names.shape != (n,):
            raise ValidationError(f"domain must be one name or one name per row ({n}); got shape {names.shape}")
        unknown = sorted(set(names.tolist()) - set(self.models))
        if unknown:
            raise ValidationError(f"unknown domains {unknown}; this router serves {self.domains}")
        return [(self.models[d], np.flatnonzero(names == d)) for d in dict.fromkeys(names.tolist())]

    def predict_proba(self, X: Any, domain: str | Any) -> np.ndarray:
        """Class probabilities of each row from its domain's model."""
        X = np.asarray(X)
        out = None
        for model, rows in self._rows(X, domain):
            p = np.asarray(model.predict_proba(X[rows]))
            if out is None:
                out = np.empty((len(X), p.shape[1]), dtype=p.dtype)
            out[rows] = p
        return out if out is not None else np.empty((0, 0))

    def predict(self, X: Any, domain: str | Any) -> np.ndarray:
        """Predicted label of each row from its domain's model."""
        X = np.asarray(X)
        parts = [(rows, np.asarray(model.predict(X[rows]))) for model, rows in self._rows(X, domain)]
        if not parts:
            return np.empty(0)
        out = np.empty(len(X), dtype=parts[0][1].dtype)
        for rows, pred in parts:
            out[rows] = pred
        return out


def load_served(run_dir: str | Path, generation: int | None = None) -> DomainRouter:
    """The served system of a seed's run folder after ``generation`` (default: the last finished)."""
    root = Path(run_dir)
    done = finished_generations(root)
    if not done:
        raise ValidationError(f"{root} holds no finished generation; run the cycle first (crossfeed run CONFIG)")
    g = done[-1] if generation is None else generation
    if g not in done:
        raise ValidationError(f"{root} has no finished generation {g} (finished: {done})")
    served = load_record(root, g).get("served") or {}
    if not served:
        raise ValidationError(f"generation {g} of {root} records no served models (a run of an older crossfeed)")
    cache: dict[str, Any] = {}
    for ref in served.values():
        if ref["path"] not in cache:  # one model serving several domains is loaded once
            cache[ref["path"]] = load_model(root / ref["path"])
    models = {d: cache[ref["path"]] for d, ref in served.items()}
    return DomainRouter(models, {d: ref["label"] for d, ref in served.items()})
