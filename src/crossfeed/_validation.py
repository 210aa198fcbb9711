"""Input checks shared by every estimator: clear messages, never ``assert``."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from crossfeed.exceptions import (
    EmptyDataError,
    LabelMismatchError,
    NonNumericInputError,
    NotFittedError,
    ValidationError,
)


def numeric_array(X: Any, *, name: str = "X") -> np.ndarray:
    """``X`` as a NumPy array of real numbers (or booleans), any shape; a clear error otherwise.

    Raises ``ValidationError`` for ragged or complex input and ``NonNumericInputError`` for
    strings, objects that are not numbers and other non-numeric dtypes.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValidationError(f"{name} must be an array-like of numbers; got {type(X).__name__}: {exc}") from exc
    if np.iscomplexobj(arr):
        raise ValidationError(f"{name} holds complex numbers; expected real numbers (take .real or abs() first)")
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise NonNumericInputError(
                f"{name} must hold numbers; got dtype object with non-numeric values ({exc}). "
                "Encode them first, e.g. with sklearn.preprocessing.OneHotEncoder"
            ) from exc
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise NonNumericInputError(
            f"{name} must hold numbers; got dtype {arr.dtype}. Convert it first, e.g. np.asarray({name}, dtype=float)"
        )
    return arr


def check_features(
    X: Any, *, name: str = "X", n_features: int | None = None, owner: str = "the model"
) -> np.ndarray:
    """Return ``X`` as a float array of shape (n_samples, ...) with finite values.

    Raises ``ValidationError`` for non-numeric, empty, 1-D, NaN/inf input or a feature count
    different from ``n_features``.
    """
    arr = numeric_array(X, name=name)
    if arr.ndim < 2:
        raise ValidationError(
            f"{name} must be 2-D, of shape (n_samples, n_features); got shape {arr.shape}. "
            f"Reshape a single feature with {name}.reshape(-1, 1) or a single sample with {name}.reshape(1, -1)"
        )
    if arr.shape[0] == 0:
        raise EmptyDataError(f"{name} has 0 samples (shape {arr.shape}); at least 1 is required")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32 if np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize <= 4 else np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValidationError(
            f"{name} contains {bad} NaN or infinite value(s); expected finite numbers. "
            "Impute or drop them (e.g. sklearn.impute.SimpleImputer) before fitting or predicting"
        )
    if n_features is not None and int(np.prod(arr.shape[1:])) != n_features:
        raise ValidationError(
            f"{name} has {int(np.prod(arr.shape[1:]))} features, but {owner} is expecting {n_features} "
            f"features as input (got shape {arr.shape}); pass data with the same columns as in fit"
        )
    return arr


def check_labels(y: Any, n_samples: int, *, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D array of length ``n_samples``."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be 1-D of shape (n_samples,); got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValidationError(
            f"{name} has {arr.shape[0]} labels but X has {n_samples} samples; they must be the same length"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValidationError(f"{name} contains NaN or infinite labels; every sample needs a finite label")
    return arr


def encode_labels(y: Any, classes: Any, *, name: str = "y", context: str = "the model's classes") -> np.ndarray:
    """Column indices of the labels ``y`` in the sorted array ``classes`` (shape (n_samples,)).

    Raises ``LabelMismatchError`` naming the labels that ``classes`` lacks.
    """
    y = np.asarray(y)
    classes = np.asarray(classes)
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    if not np.array_equal(classes[idx], y):
        unknown = np.setdiff1d(np.unique(y), classes).tolist()
        raise LabelMismatchError(f"{name} holds labels {unknown} that are not among {context} {classes.tolist()}")
    return idx


def check_fitted_member(name: str, estimator: Any) -> None:
    """Raise ``NotFittedError`` naming the member if ``estimator`` is not fitted."""
    try:
        check_is_fitted(estimator)
    except Exception as exc:
        raise NotFittedError(
            f"member {name!r} ({type(estimator).__name__}) is not fitted, but prefit=True was given; "
            "fit it first, or pass prefit=False so the combiner fits it"
        ) from exc


def check_members(members: Any, *, owner: str) -> list[tuple[str, Any]]:
    """Validate a list of ``(name, estimator)`` pairs with unique names and ``predict_proba``."""
    if not isinstance(members, Sequence) or isinstance(members, str) or len(members) == 0:
        raise ValidationError(
            f"{owner} expects members as a non-empty list of (name, estimator) pairs; got {members!r}"
        )
    out: list[tuple[str, Any]] = []
    for item in members:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValidationError(
                f"{owner}: each member must be a (name, estimator) pair; got {item!r}. "
                "Example: members=[('small', LogisticRegression()), ('large', TorchClassifier(...))]"
            )
        name, est = item
        if not hasattr(est, "predict_proba"):
            raise ValidationError(
                f"{owner}: member {name!r} ({type(est).__name__}) has no predict_proba; "
                "combiners need class probabilities (for SVC pass probability=True)"
            )
        out.append((name, est))
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"{owner}: member names must be unique; repeated: {dupes}")
    return out


def check_same_classes(members: Sequence[tuple[str, Any]], *, owner: str) -> np.ndarray:
    """Return the shared ``classes_`` of fitted members, or raise ``LabelMismatchError``."""
    ref_name, ref = members[0]
    classes = np.asarray(ref.classes_)
    for name, est in members[1:]:
        other = np.asarray(est.classes_)
        if other.shape != classes.shape or not np.array_equal(other, classes):
            raise LabelMismatchError(
                f"{owner}: members must share one label set; {ref_name!r} has classes {classes.tolist()} "
                f"but {name!r} has {other.tolist()}. Fit every member on the same labels"
            )
    return classes


def is_fitted(estimator: BaseEstimator) -> bool:
    try:
        check_is_fitted(estimator)
    except Exception:
        return False
    return True


def check_int(value: Any, name: str, low: int) -> int:
    """``value`` as an int if it is an integer (Python or NumPy, not bool) >= ``low``, else ``ValidationError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValidationError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)
