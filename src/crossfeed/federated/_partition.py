"""Client partitions for federated experiments: label-skewed Dirichlet splits and one domain per client.

The Dirichlet split is the one of Hsu, Qi & Brown (2019, arXiv 1909.06335), also used by FedDF
(Lin et al., NeurIPS 2020): for every class, the shares of the clients are drawn from
``Dirichlet(alpha)`` and the class's rows are dealt out in those shares. Small ``alpha`` (0.1)
gives clients that hold few classes; large ``alpha`` (10) approaches an IID split.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from crossfeed._validation import check_int, check_labels
from crossfeed.data import DomainSuite
from crossfeed.exceptions import ValidationError

__all__ = ["class_counts", "dirichlet_partition", "domain_partition"]


def dirichlet_partition(y: Any, n_clients: int, alpha: float, *, seed: int = 0, min_samples: int = 1,
                        max_tries: int = 100) -> list[np.ndarray]:
    """Row indices of each of ``n_clients`` clients, label-skewed by ``Dirichlet(alpha)``.

    Every row goes to exactly one client; the draw is repeated (up to ``max_tries`` times) until
    every client holds at least ``min_samples`` rows.

    Parameters
    ----------
    y : array of shape (n_samples,), the labels.
    n_clients : int >= 1, at most ``n_samples // min_samples``.
    alpha : float > 0, the Dirichlet concentration (0.1 very skewed, 1.0 moderate, 10 near IID).
    seed : seeds the draw.
    min_samples : int >= 1, the fewest rows a client may hold.

    Returns
    -------
    list of ``n_clients`` sorted int arrays.

    Example
    -------
    >>> parts = dirichlet_partition(np.repeat([0, 1, 2], 20), 4, alpha=1.0, seed=0)
    >>> sorted(np.concatenate(parts).tolist()) == list(range(60)), min(map(len, parts)) >= 1
    (True, True)
    """
    y = check_labels(y, len(np.asarray(y)))
    n_clients = check_int(n_clients, "n_clients", 1)
    min_samples = check_int(min_samples, "min_samples", 1)
    max_tries = check_int(max_tries, "max_tries", 1)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ValidationError(f"alpha must be a finite number > 0 (0.1: very skewed, 10: near IID); got {alpha!r}")
    if n_clients * min_samples > len(y):
        raise ValidationError(
            f"{n_clients} clients with at least {min_samples} row(s) each need {n_clients * min_samples} rows, but y "
            f"has {len(y)}; use at most {len(y) // min_samples} clients or more data")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(n_clients, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for client, chunk in enumerate(np.split(rows, cuts)):
                parts[client].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    raise ValidationError(
        f"after {max_tries} draws some of the {n_clients} clients still held fewer than {min_samples} row(s) "
        f"(alpha={alpha}, {len(y)} rows): raise alpha, use fewer clients, or lower min_samples")


def class_counts(y: Any, parts: list[np.ndarray], classes: Any | None = None) -> np.ndarray:
    """Array of shape (n_clients, n_classes): how many rows of each class every client holds."""
    y = np.asarray(y)
    classes = np.unique(y) if classes is None else np.asarray(classes)
    return np.array([[int((y[p] == c).sum()) for c in classes] for p in parts])


def domain_partition(suite: DomainSuite, split: str = "train") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One client per domain of ``suite``: domain name -> ``(X, y)`` of its ``split`` (a domain
    always holds rows in every split)."""
    if split not in ("train", "val", "test"):
        raise ValidationError(f"split must be 'train', 'val' or 'test'; got {split!r}")
    return {domain.name: domain.split(split) for domain in suite}
