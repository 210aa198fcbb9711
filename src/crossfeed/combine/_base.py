"""Plumbing shared by every combiner: input checks, fitting or adopting members, probabilities.

Not public. The combiners read as their algorithm because this module owns the repetitive
parts: validating ``X`` and ``y``, cloning and fitting members (or checking prefit ones),
encoding labels as class indices, stacking member probabilities, the stratified hold-out
split and per-member temperature scaling.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin, clone
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from crossfeed._validation import (
    check_features,
    check_fitted_member,
    check_labels,
    check_members,
    check_same_classes,
    is_fitted,
)
from crossfeed.combine._calibration import fit_temperature, log_proba, scale_proba
from crossfeed.exceptions import (
    LabelMismatchError,
    NonNumericInputError,
    NotFittedError,
    ValidationError,
)

logger = logging.getLogger(__name__)

Member = tuple[str, Any]


def check_fraction(value: Any, name: str) -> float:
    """Return ``value`` as a float strictly between 0 and 1, or raise ``ValidationError``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not 0.0 < float(value) < 1.0:
        raise ValidationError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, options: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``options``, else raise ``ValidationError`` listing them."""
    if value not in options:
        raise ValidationError(f"{name} must be one of {sorted(options)}; got {value!r}")
    return str(value)


def check_goal(**goals: Any) -> None:
    """At most one goal given (not None); ``target_accuracy`` in (0, 1], ``budget`` positive and finite.

    Goals are passed by name (``target_accuracy=..., budget=..., epsilon=...``); only the first two
    are checked here, the others by their owner.
    """
    given = {k: v for k, v in goals.items() if v is not None}
    if len(given) > 1:
        names = ", ".join(goals)
        raise ValidationError(f"give at most one goal of {names}; got {given}; set the others to None")
    t = goals.get("target_accuracy")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float | np.number) or not 0 < t <= 1):
        raise ValidationError(f"target_accuracy must be a number in (0, 1] or None; got {t!r}")
    b = goals.get("budget")
    if b is not None and (
        isinstance(b, bool) or not isinstance(b, int | float | np.number) or not np.isfinite(b) or b <= 0
    ):
        raise ValidationError(f"budget must be a positive finite number (cost per sample) or None; got {b!r}")


def check_costs(costs: Any, n_members: int) -> np.ndarray | None:
    """``costs`` as a float array of shape (n_members,), finite and >= 0; None stays None."""
    if costs is None:
        return None
    try:
        arr = np.asarray(costs, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"costs must be a list of numbers, one per member; got {costs!r}") from exc
    if arr.ndim != 1 or arr.size != n_members:
        raise ValidationError(f"costs must have one number per member ({n_members}); got {arr.size} ({costs!r})")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValidationError(f"costs must be finite and >= 0 (cost per sample); got {arr.tolist()}")
    return arr


def holdout_split(y: np.ndarray, fraction: float, random_state: Any) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of sample indices into (train, validation).

    Each class puts ``round(fraction * n_c)`` of its samples in validation but always keeps at
    least one in training, so members fitted on the training part see every class. Classes
    with a single sample therefore stay in training only.

    Returns
    -------
    (train_idx, val_idx), two sorted int arrays partitioning ``range(len(y))``.
    """
    rng = check_random_state(random_state)
    _, y_enc = np.unique(y, return_inverse=True)
    parts = []
    for c in range(int(y_enc.max()) + 1):
        idx = rng.permutation(np.flatnonzero(y_enc == c))
        k = min(int(np.floor(fraction * idx.size + 0.5)), idx.size - 1)
        parts.append(idx[:k])
    val = np.sort(np.concatenate(parts))
    if val.size == 0:
        counts = np.bincount(y_enc)
        if counts.max() < 2:
            raise ValidationError(
                f"cannot hold out validation data: every class has a single sample ({y.shape[0]} samples); "
                "pass more data, or fit the members yourself and use prefit=True"
            )
        val = np.array([rng.choice(np.flatnonzero(y_enc == int(np.argmax(counts))))])
    train = np.setdiff1d(np.arange(y.shape[0]), val)
    return train, val


class BaseCombiner(ClassifierMixin, _BaseComposition):
    """Base of the combiners: parameter handling over ``members`` plus shared fit/predict parts.

    Subclasses define ``__init__`` (storing ``members``, ``prefit`` and their own parameters),
    ``fit`` and ``predict_proba``; ``predict`` is the argmax of ``predict_proba``.
    """

    members: list[Member]
    prefit: bool

    # ----------------------------------------------------------------- parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters, including ``<member name>__<param>`` of each member when ``deep``."""
        return self._get_params("members", deep=deep)

    def set_params(self, **params: Any) -> BaseCombiner:
        """Set parameters; ``<member name>=estimator`` replaces a member, ``<name>__<param>`` tunes one."""
        self._set_params("members", **params)
        return self

    @property
    def _owner(self) -> str:
        return type(self).__name__

    # ----------------------------------------------------------------- validation
    def _validate_X(self, X: Any, *, reset: bool) -> tuple[np.ndarray, Any]:
        """Check ``X``; return (float array, what to pass to members: a DataFrame stays a DataFrame).

        Every combiner takes 2-D ``X`` of shape (n_samples, n_features) only: 1-D input and input
        with more than two dimensions are refused (``ValidationError``) in fit and in predict, so
        the combiner and its members always see the same array.
        """
        if sp.issparse(X):
            raise ValidationError(
                f"{self._owner} does not accept sparse input (got {type(X).__name__}); "
                "densify it with X.toarray(), or wrap the sparse-aware members in a dense-output Pipeline"
            )
        try:
            raw = np.asarray(X)
        except Exception:  # ragged input and the like: check_features explains
            raw = None
        if raw is not None:
            if raw.ndim < 2:
                raise ValidationError(
                    f"{self._owner} expected a 2-D array of shape (n_samples, n_features), got {raw.ndim}-D input "
                    f"of shape {raw.shape}. Reshape your data either using X.reshape(-1, 1) if it has a single "
                    "feature or X.reshape(1, -1) if it contains a single sample"
                )
            if raw.ndim > 2:  # one rule for every combiner: refused, not flattened behind the members' back
                raise ValidationError(
                    f"{self._owner} expected a 2-D array of shape (n_samples, n_features), got {raw.ndim}-D input "
                    f"of shape {raw.shape}. Combiners do not flatten: flatten each sample yourself with "
                    "X.reshape(len(X), -1) and fit the members on that same flat data (TorchClassifier "
                    "flattens internally, so its networks are unchanged)"
                )
            if np.iscomplexobj(raw):
                raise ValidationError(
                    f"Complex data not supported by {self._owner}; pass real numbers (e.g. np.abs(X) or X.real)"
                )
            if raw.dtype == object:  # numbers stored as objects (e.g. mixed DataFrame columns)
                try:
                    raw = raw.astype(float)
                except (TypeError, ValueError) as exc:
                    raise NonNumericInputError(
                        f"X must hold numbers; got an object array that cannot be converted to float ({exc}). "
                        "Encode non-numeric columns first (e.g. sklearn.preprocessing.OneHotEncoder)"
                    ) from exc
        X_num = X if raw is None else raw
        arr = check_features(X_num)
        if arr.ndim == 2 and arr.shape[1] == 0:
            raise ValidationError(
                f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required by "
                f"{self._owner}; pass at least one feature column"
            )
        try:
            validate_data(self, X, reset=reset, skip_check_array=True)
        except ValueError as exc:
            raise ValidationError(f"{exc} Pass data with the same columns as in fit") from exc
        return arr, (X if hasattr(X, "iloc") else arr)

    def _validate_y(self, y: Any, n_samples: int) -> np.ndarray:
        if y is None:
            raise ValidationError(
                f"{self._owner} requires y to be passed, but the target y is None; "
                "pass the class labels, shape (n_samples,)"
            )
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it was raveled to shape "
                f"({arr.shape[0]},). Pass y.ravel() to silence this warning",
                DataConversionWarning,
                stacklevel=3,
            )
        arr = check_labels(arr, n_samples)
        try:
            check_classification_targets(arr)
        except ValueError as exc:
            raise ValidationError(f"{exc}. {self._owner} is a classifier: pass discrete class labels") from exc
        return arr

    def _validate_fit_data(self, X: Any, y: Any) -> tuple[np.ndarray, Any, np.ndarray]:
        """Validate ``X`` and ``y`` for fit; with prefit=False at least two classes are required."""
        arr, X_members = self._validate_X(X, reset=True)
        y_arr = self._validate_y(y, arr.shape[0])
        if not self.prefit and np.unique(y_arr).size < 2:
            raise ValidationError(
                f"{self._owner} needs at least 2 classes to fit its members; got 1 class "
                f"({np.unique(y_arr).tolist()}). Pass data with more than one class"
            )
        return arr, X_members, y_arr

    def _validate_members(self) -> list[Member]:
        members = check_members(self.members, owner=self._owner)
        bad = [name for name, _ in members if "__" in name or name in self.get_params(deep=False)]
        if bad:
            raise ValidationError(
                f"{self._owner}: member names may not contain '__' or equal a parameter name; got {bad}. "
                "Rename them, e.g. 'small', 'large'"
            )
        if not isinstance(self.prefit, bool | np.bool_):
            raise ValidationError(f"prefit must be True or False; got {self.prefit!r}")
        return members

    def _check_predict_X(self, X: Any) -> tuple[np.ndarray, Any]:
        if not is_fitted(self):
            raise NotFittedError(f"this {self._owner} is not fitted yet; call fit(X, y) first")
        return self._validate_X(X, reset=False)

    # ----------------------------------------------------------------- members
    def _adopt_prefit(self, members: list[Member]) -> list[Member]:
        """Use already-fitted members as they are (prefit=True): no clone, no refit."""
        for name, est in members:
            check_fitted_member(name, est)
        return list(members)

    def _fit_clones(self, members: list[Member], X: Any, y: np.ndarray) -> list[Member]:
        """Clone every member and fit the clone on ``(X, y)``; the caller's objects stay untouched."""
        fitted = []
        for name, est in members:
            logger.debug("%s: fitting member %r on %d samples", self._owner, name, y.shape[0])
            fitted.append((name, clone(est).fit(X, y)))
        return fitted

    def _shared_classes(self, members: list[Member]) -> np.ndarray:
        for name, est in members:
            if not hasattr(est, "classes_"):
                raise ValidationError(
                    f"{self._owner}: member {name!r} ({type(est).__name__}) has no classes_ attribute; "
                    "combiners need scikit-learn classifiers (or crossfeed's TorchClassifier)"
                )
        return check_same_classes(members, owner=self._owner)

    def _encode(self, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Class indices of ``y`` in ``classes``; ``LabelMismatchError`` for an unknown label."""
        order = np.argsort(classes, kind="stable")
        try:
            pos = np.clip(np.searchsorted(classes[order], y), 0, classes.size - 1)
            idx = order[pos]
            ok = classes[idx] == y
        except TypeError as exc:
            raise LabelMismatchError(
                f"{self._owner}: labels of type {np.asarray(y).dtype} cannot be compared with the members' "
                f"classes {classes.tolist()}"
            ) from exc
        if not np.all(ok):
            unknown = np.unique(np.asarray(y)[~np.asarray(ok, dtype=bool)]).tolist()
            raise LabelMismatchError(
                f"{self._owner}: y holds labels {unknown} that the members do not know; their classes are "
                f"{classes.tolist()}. Pass data labelled with the members' classes"
            )
        return idx.astype(np.intp)

    def _member_probas(self, members: Sequence[Member], X: Any, n_classes: int) -> np.ndarray:
        """Stack ``predict_proba`` of each member: array of shape (n_members, n_samples, n_classes)."""
        n_samples = _num_samples(X)
        return np.stack([self._check_proba(name, est.predict_proba(X), n_samples, n_classes) for name, est in members])

    def _check_proba(self, name: str, proba: Any, n_samples: int, n_classes: int) -> np.ndarray:
        """``proba`` (a member's predict_proba) as a float array of shape (n_samples, n_classes).

        Raises ``ValidationError`` naming the member for a wrong shape, NaN / infinite values or
        values outside [0, 1]: a broken member is refused, never averaged into the answer.
        """
        p = np.asarray(proba, dtype=float)
        if p.shape != (n_samples, n_classes):
            raise ValidationError(
                f"{self._owner}: member {name!r} returned predict_proba of shape {p.shape}; expected "
                f"({n_samples}, {n_classes}) (one column per class in classes_)"
            )
        finite = np.isfinite(p)
        if not np.all(finite):
            rows = np.flatnonzero(~finite.all(axis=1))
            raise ValidationError(
                f"{self._owner}: member {name!r} returned NaN or infinite probabilities for {rows.size} of "
                f"{n_samples} samples (first rows {rows[:5].tolist()}); expected finite probabilities in [0, 1]. "
                "Fix or retrain that member (a diverged network gives NaN), or leave it out"
            )
        if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
            raise ValidationError(
                f"{self._owner}: member {name!r} returned predict_proba values in [{p.min():.4g}, {p.max():.4g}]; "
                "expected probabilities in [0, 1] (scores or logits must go through a softmax first)"
            )
        return p

    @staticmethod
    def _fit_temperatures(probas: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
        """One temperature per member, fitted on held-out probabilities (n_members, n_samples, n_classes)."""
        return np.array([fit_temperature(log_proba(p), y_idx) for p in probas])

    @staticmethod
    def _scale(probas: np.ndarray, temperatures: np.ndarray | None) -> np.ndarray:
        """Apply per-member temperatures to (n_members, n_samples, n_classes); ``None`` = unchanged."""
        if temperatures is None:
            return probas
        return np.stack([scale_proba(p, t) for p, t in zip(probas, temperatures, strict=True)])

    # ----------------------------------------------------------------- prediction
    def predict_proba(self, X: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels, shape (n_samples,): the class of highest combined probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _num_samples(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def subset(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array or DataFrame."""
    return _safe_indexing(X, idx)
