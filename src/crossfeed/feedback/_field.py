"""The maths of scarce field data: how many rows to add, and mixup rows to add.

Field data is often a few dozen unlabelled samples per domain against thousands of general
labelled rows. Trained on as they are, the few field rows are a small share of every epoch's
loss and the large model hardly moves towards the experts there; it fits the teachers on the
field rows it saw but not around them. The distilling strategies therefore top the field data of
every domain up to a share of the training rows (:func:`top_up_sizes`) with new rows that the
teachers label (:func:`mixup_rows`): a teacher can label any input, so the extra rows are
convex combinations of pairs of the domain's own field rows.

- mixup: Zhang, Cisse, Dauphin & Lopez-Paz (ICLR 2018), "mixup: Beyond Empirical Risk
  Minimization", arXiv 1710.09412.
- The student mimics the teacher on interpolated pairs when task data is scarce: MixKD, Liang et
  al. (ICLR 2021), "MixKD: Towards Efficient Distillation of Large-scale Language Models",
  arXiv 2011.00593.

No model, no loop: each function takes arrays and returns arrays.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from crossfeed.distill import discrete_columns, mixup_rows
from crossfeed.exceptions import ValidationError

__all__ = ["AUGMENTS", "augment_field", "discrete_columns", "mixup_rows", "top_up_fields", "top_up_sizes"]

#: How extra field rows are made: mixup of pairs of rows, or copies of rows.
AUGMENTS = ("mixup", "repeat")

logger = logging.getLogger(__name__)
_said_mixup_copies = False  # the warning below, once per process


def top_up_sizes(n_general: int, field_sizes: Sequence[int], share: float, n_domains: int | None = None) -> list[int]:
    """Rows each domain's field data is brought up to so that field rows are ``share`` of the rows.

    The field rows of all ``n_domains`` domains together should make at least ``share`` of the
    training rows, i.e. at least ``share / (1 - share) · n_general`` of them, so each domain's
    part is that divided by ``n_domains``. A domain that already has its part keeps its rows as
    they are (never fewer), so plentiful field data is left unchanged; ``share = 0`` adds nothing.

    Parameters
    ----------
    n_general : int >= 0, rows of the general domain's training data.
    field_sizes : field rows of each domain taught in this step.
    share : float in [0, 1).
    n_domains : int >= len(field_sizes), optional; the domains the part is computed for (default:
        those of ``field_sizes``). A step that absorbs one domain of several (one after another)
        passes them all, so that each step gives its domain the part it would get with the others.

    Returns
    -------
    list of int, one per domain, each >= its ``field_sizes`` entry.

    Example
    -------
    >>> top_up_sizes(4000, [50, 200, 3000], 0.5)     # 4000 field rows wanted, 1334 per domain
    [1334, 1334, 3000]
    >>> top_up_sizes(4000, [50, 200], 0.0)
    [50, 200]
    >>> top_up_sizes(4000, [1000], 0.5, n_domains=4)  # one domain of four: its part is there
    [1000]
    """
    if not 0.0 <= share < 1.0:
        raise ValidationError(f"share must be in [0, 1) (the field rows' share of an epoch); got {share!r}")
    if n_general < 0 or any(n < 0 for n in field_sizes):
        raise ValidationError(f"row counts must be >= 0; got n_general={n_general}, field_sizes={list(field_sizes)}")
    n_domains = len(field_sizes) if n_domains is None else int(n_domains)
    if n_domains < len(field_sizes):
        raise ValidationError(f"n_domains ({n_domains}) must be at least the number of field sizes ({len(field_sizes)})")
    if not field_sizes or share == 0.0:
        return [int(n) for n in field_sizes]
    per_domain = math.ceil(share / (1.0 - share) * n_general / n_domains)
    return [max(int(n), per_domain) for n in field_sizes]


def augment_field(X: np.ndarray, size: int, how: str, rng: np.random.Generator, alpha: float = 1.0) -> np.ndarray:
    """``X`` followed by ``size - len(X)`` extra rows (none when ``X`` has ``size`` rows or more).

    ``how``: ``"mixup"`` (:func:`mixup_rows`) or ``"repeat"`` (rows drawn again: the whole field
    data as many times as it fits, then a random rest without replacement).

    Returns
    -------
    array of shape (max(len(X), size), n_features), float32; its first ``len(X)`` rows are ``X``.

    Example
    -------
    >>> X = np.arange(4, dtype=np.float32).reshape(2, 2)
    >>> augment_field(X, 5, "repeat", np.random.default_rng(0)).shape
    (5, 2)
    """
    if how not in AUGMENTS:
        raise ValidationError(f"field augmentation must be one of {AUGMENTS}; got {how!r}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValidationError(f"field rows must have shape (n_rows, n_features); got shape {X.shape}")
    extra = max(0, int(size) - len(X))
    if extra == 0:
        return X
    if how == "mixup":
        global _said_mixup_copies
        if not _said_mixup_copies and discrete_columns(X).all():
            _said_mixup_copies = True
            logger.warning("field top-up by mixup: every column of the field rows holds whole numbers (ids, counts), "
                           "which mixup does not interpolate, so each extra row copies a real one (as "
                           "field_augment: repeat would, drawn differently)")
        new = mixup_rows(X, extra, rng, alpha)
    else:
        whole, rest = divmod(extra, len(X))
        new = np.concatenate([np.tile(X, (whole, 1)), X[rng.permutation(len(X))[:rest]]])
    return np.concatenate([X, new]).astype(np.float32)


def top_up_fields(n_general: int, fields: Mapping[str, np.ndarray], share: float, how: str,
                  seed: int, alpha: float = 1.0, n_domains: int | None = None) -> dict[str, np.ndarray]:
    """Every domain's field rows topped up (:func:`top_up_sizes`, :func:`augment_field`).

    Parameters
    ----------
    n_general : int, rows of the general training data.
    fields : domain name -> field rows of shape (n_rows, n_features).
    share, n_domains, how, alpha : see :func:`top_up_sizes` and :func:`augment_field`.
    seed : int; one generator draws the extra rows of the domains in the order of ``fields``.

    Returns
    -------
    dict domain name -> array whose first rows are that domain's own field rows.

    Example
    -------
    >>> out = top_up_fields(100, {"a": np.ones((5, 3)), "b": np.ones((80, 3))}, 0.5, "mixup", seed=0)
    >>> {name: len(rows) for name, rows in out.items()}
    {'a': 50, 'b': 80}
    """
    names = list(fields)
    sizes = top_up_sizes(n_general, [len(fields[n]) for n in names], share, n_domains)
    rng = np.random.default_rng(seed)
    return {n: augment_field(fields[n], size, how, rng, alpha) for n, size in zip(names, sizes, strict=True)}
