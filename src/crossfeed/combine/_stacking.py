"""Stacked generalisation: a meta-model learns to combine the members' probabilities.

Reference: D. H. Wolpert, "Stacked generalization", Neural Networks 5(2), 1992.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from crossfeed.combine._base import BaseCombiner, Member
from crossfeed.exceptions import ValidationError

__all__ = ["StackingEnsemble"]

logger = logging.getLogger(__name__)


class StackingEnsemble(BaseCombiner):
    """Fit a meta-model (``final_estimator``) on the members' out-of-fold probabilities.

    The meta-features of a sample are the class probabilities of every member (for two
    classes only the second column, as in scikit-learn, since the first is redundant),
    optionally followed by the raw features (``passthrough=True``). The meta-model must never
    see predictions a member made on its own training data, so:

    - ``prefit=False``: members are cloned and fitted on all of ``(X, y)`` (used at prediction),
      and the meta-features come from ``cross_val_predict`` over ``cv`` stratified folds.
    - ``prefit=True``: the members are already trained elsewhere, and the ``(X, y)`` given to
      ``fit`` is the held-out split: their predictions on it are the meta-features directly.

    Parameters
    ----------
    members : list of (name, estimator) pairs
        Classifiers with ``predict_proba`` sharing ``classes_``; names unique.
    final_estimator : classifier with predict_proba, default None
        The meta-model, cloned before fitting; None means ``LogisticRegression(max_iter=1000)``.
    cv : int or cross-validation splitter, default 5
        Folds for the out-of-fold predictions when ``prefit=False``. An int gives
        ``StratifiedKFold(cv, shuffle=True, random_state=random_state)``, lowered to the size
        of the largest class if that is smaller (with at least 2 folds).
    passthrough : bool, default False
        Also give the meta-model the raw features (flattened to 2-D).
    prefit : bool, default False
        See above.
    calibrate : bool, default False
        Temperature-scale each member on its out-of-fold (or held-out) probabilities before
        stacking (Guo et al. 2017, arXiv 1706.04599); applied at prediction too.
    random_state : int, RandomState or None
        Seeds the fold shuffling.

    Attributes
    ----------
    members_ : list of (name, fitted estimator)
    final_estimator_ : the fitted meta-model; ``final_estimator_.n_features_in_`` is the number
        of meta-features.
    temperatures_ : array of shape (n_members,) or None
    classes_ : array of shape (n_classes,)
    n_features_in_ : int

    Example
    -------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = make_classification(n_samples=300, random_state=0)
    >>> st = StackingEnsemble([("lr", LogisticRegression()), ("nb", GaussianNB())], cv=3, random_state=0)
    >>> st.fit(X, y).final_estimator_.n_features_in_   # one probability column per member
    2
    """

    def __init__(
        self,
        members: list[Member],
        *,
        final_estimator: Any = None,
        cv: int | Any = 5,
        passthrough: bool = False,
        prefit: bool = False,
        calibrate: bool = False,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.members = members
        self.final_estimator = final_estimator
        self.cv = cv
        self.passthrough = passthrough
        self.prefit = prefit
        self.calibrate = calibrate
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> StackingEnsemble:
        """Fit the members, collect out-of-fold probabilities, fit the meta-model on them.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,)

        Returns
        -------
        self
        """
        # 1. validate
        members = self._validate_members()
        X_arr, X_members, y = self._validate_fit_data(X, y)
        self._check_classes_for_meta_model(y)
        final = self._check_final_estimator()
        cv = None if self.prefit else self._folds(y)

        # 2. fit the members (or adopt prefit ones)
        fitted = self._adopt_prefit(members) if self.prefit else self._fit_clones(members, X_members, y)
        self.classes_ = self._shared_classes(fitted)
        y_idx = self._encode(y, self.classes_)

        # 3. out-of-fold predictions: (n_members, n_samples, n_classes)
        if self.prefit:
            probas = self._member_probas(fitted, X_members, self.classes_.size)
        else:
            probas = np.stack([
                self._check_proba(name, cross_val_predict(clone(est), X_members, y, cv=cv, method="predict_proba"),
                                  len(y), self.classes_.size)
                for name, est in members
            ])
        self.temperatures_ = self._fit_temperatures(probas, y_idx) if self.calibrate else None
        meta = self._meta_features(self._scale(probas, self.temperatures_), X_arr)

        # 4. fit the meta-model
        self.final_estimator_ = final.fit(meta, y)
        self._final_columns = self._encode(np.asarray(self.final_estimator_.classes_), self.classes_)
        self.members_ = fitted
        logger.info("StackingEnsemble: meta-model fitted on %d samples x %d meta-features", *meta.shape)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Meta-model probabilities on the members' probabilities, array of shape (n_samples, n_classes)."""
        X_arr, X_members = self._check_predict_X(X)
        probas = self._scale(self._member_probas(self.members_, X_members, self.classes_.size), self.temperatures_)
        meta_proba = self.final_estimator_.predict_proba(self._meta_features(probas, X_arr))
        out = np.zeros((X_arr.shape[0], self.classes_.size))
        out[:, self._final_columns] = meta_proba  # a class absent from the meta-model's data keeps 0
        return out

    # ----------------------------------------------------------------- helpers
    def _check_classes_for_meta_model(self, y: np.ndarray) -> None:
        """The meta-model is a classifier too: it needs two classes, and with out-of-fold
        predictions every class needs 2 samples, or some fold trains a member without it."""
        labels, counts = np.unique(y, return_counts=True)
        if labels.size < 2:
            raise ValidationError(
                f"StackingEnsemble fits its meta-model (final_estimator) on y, which needs at least 2 classes; "
                f"got 1 class ({labels.tolist()}) in {y.shape[0]} samples. Pass data holding every class "
                "(with prefit=True: held-out data labelled like the members' training data), or use "
                "MeanEnsemble, which learns nothing from y"
            )
        if not self.prefit and counts.min() < 2:
            rare = labels[counts < 2].tolist()
            raise ValidationError(
                f"StackingEnsemble needs at least 2 samples of every class for its out-of-fold predictions; "
                f"classes {rare} have a single sample. Pass more data of those classes, or fit the members "
                "yourself and use prefit=True with held-out data"
            )

    def _check_final_estimator(self) -> Any:
        final = LogisticRegression(max_iter=1000) if self.final_estimator is None else self.final_estimator
        if not (hasattr(final, "fit") and hasattr(final, "predict_proba")):
            raise ValidationError(
                f"final_estimator must be a classifier with fit and predict_proba; got {type(final).__name__}. "
                "Leave it None for LogisticRegression"
            )
        return clone(final)

    def _folds(self, y: np.ndarray) -> Any:
        splitter = hasattr(self.cv, "split") and not isinstance(self.cv, str)
        if isinstance(self.cv, bool) or not (isinstance(self.cv, int | np.integer) or splitter):
            raise ValidationError(f"cv must be an int >= 2 or a cross-validation splitter; got {self.cv!r}")
        if not isinstance(self.cv, int | np.integer):
            return self.cv
        if self.cv < 2:
            raise ValidationError(f"cv must be at least 2 folds; got {self.cv}")
        largest = int(np.unique(y, return_counts=True)[1].max())
        n_splits = max(2, min(int(self.cv), largest))
        if n_splits < self.cv:
            logger.info("StackingEnsemble: cv lowered from %d to %d folds (largest class has %d samples)",
                        self.cv, n_splits, largest)
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)

    def _meta_features(self, probas: np.ndarray, X_arr: np.ndarray) -> np.ndarray:
        """(n_members, n_samples, n_classes) probabilities [+ raw X] -> (n_samples, n_meta_features)."""
        cols = probas[:, :, 1:] if probas.shape[2] == 2 else probas
        meta = np.concatenate(list(cols), axis=1)
        if self.passthrough:
            meta = np.hstack([meta, X_arr.reshape(X_arr.shape[0], -1)])
        return meta
