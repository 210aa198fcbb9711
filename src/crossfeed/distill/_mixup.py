"""Mixup rows for a teacher to label: convex combinations of pairs of inputs.

A teacher can label any input, so a student (or a large model learning from experts) can be
shown many more inputs than were collected: each a convex combination of two real rows.

- mixup: Zhang, Cisse, Dauphin & Lopez-Paz (ICLR 2018), "mixup: Beyond Empirical Risk
  Minimization", arXiv 1710.09412.
- The student mimics the teacher on interpolated pairs: MixKD, Liang et al. (ICLR 2021),
  arXiv 2011.00593; "function matching" on mixup views, Beyer et al. (CVPR 2022), "Knowledge
  distillation: A good teacher is patient and consistent", arXiv 2106.05237.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from crossfeed.exceptions import ValidationError

__all__ = ["check_mixup", "discrete_columns", "mixup_rows"]


def check_mixup(n: object, alpha: object = 1.0, *, name: str = "mixup") -> int:
    """``n`` as an int after checking it is a whole number of rows >= 0, and ``alpha`` a positive finite number.

    ``name`` is how the caller spells the option (``"--mixup"``, ``"experts.mixup"``) in the message.

    Example
    -------
    >>> check_mixup(20000)
    20000
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValidationError(
            f"{name} must be a whole number of extra rows >= 0 (0 = none); got {n!r}. For example "
            f"{name}=20000 adds 20,000 mixup rows for the teacher to label"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (math.isfinite(alpha) and alpha > 0):
        raise ValidationError(f"the mixup alpha must be a positive finite number (lam ~ Beta(alpha, alpha); "
                              f"1.0 = uniform); got {alpha!r}")
    return int(n)


def discrete_columns(X: np.ndarray) -> np.ndarray:
    """Boolean mask of shape (n_features,): columns whose every value is a whole number.

    Such columns are ids, counts or one-hot codes (word ids of a review, a user id): a convex
    combination of two of them means nothing, so :func:`mixup_rows` does not interpolate them.

    Example
    -------
    >>> discrete_columns(np.array([[1.0, 0.5], [3.0, 2.0]]))
    array([ True, False])
    """
    X = _rows(X)
    return np.all(np.isfinite(X) & (X == np.round(X)), axis=0)


def mixup_rows(X: np.ndarray, n: int, rng: np.random.Generator, alpha: float = 1.0) -> np.ndarray:
    """``n`` new rows, each a convex combination ``lam · X[i] + (1 - lam) · X[j]`` of a random pair.

    ``i`` and ``j`` are drawn uniformly (with replacement) and ``lam ~ Beta(alpha, alpha)``
    (``alpha = 1``: uniform). Discrete columns (:func:`discrete_columns`) are not interpolated:
    they take the values of the row with the larger weight, so ids and one-hot codes stay valid.

    Parameters
    ----------
    X : array of shape (n_rows, n_features), n_rows >= 1.
    n : int >= 0, rows to make.
    rng : numpy Generator.
    alpha : float > 0.

    Returns
    -------
    array of shape (n, n_features), float32.

    Example
    -------
    >>> X = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    >>> out = mixup_rows(X, 4, np.random.default_rng(0))
    >>> out.shape, bool(((out >= 0) & (out <= 1)).all())
    ((4, 2), True)
    """
    X = _rows(X)
    if len(X) == 0:
        raise ValidationError("mixup needs at least one row to combine; got none")
    n = check_mixup(n, alpha, name="n")
    i, j = rng.integers(0, len(X), n), rng.integers(0, len(X), n)
    lam = rng.beta(alpha, alpha, n).astype(np.float32)[:, None]
    out = lam * X[i] + (1.0 - lam) * X[j]
    discrete = discrete_columns(X)
    if discrete.any():
        nearer = np.where(lam >= 0.5, X[i], X[j])
        out[:, discrete] = nearer[:, discrete]
    return out.astype(np.float32)


def _rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValidationError(f"rows must have shape (n_rows, n_features); got shape {X.shape}")
    return X
