"""Simple average of the members' class probabilities (soft voting with equal weights)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from crossfeed.combine._base import BaseCombiner, Member

__all__ = ["MeanEnsemble"]

logger = logging.getLogger(__name__)


class MeanEnsemble(BaseCombiner):
    """Average the predicted probabilities of several classifiers.

    ``predict_proba(X) = mean_m members[m].predict_proba(X)``; ``predict`` is its argmax. The
    simplest combiner and a strong baseline for the weighted ones.

    Parameters
    ----------
    members : list of (name, estimator) pairs
        Classifiers with ``predict_proba``; names must be unique. They must share ``classes_``.
    prefit : bool, default False
        If True, members are already fitted and used as they are (neither cloned nor refitted);
        ``fit(X, y)`` then only checks them and records ``classes_`` and ``n_features_in_``.
        If False, each member is cloned and the clone fitted on ``(X, y)``.

    Attributes
    ----------
    members_ : list of (name, fitted estimator)
    classes_ : array of shape (n_classes,)
    n_features_in_ : int

    Example
    -------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> ens = MeanEnsemble([("lr", LogisticRegression()), ("nb", GaussianNB())]).fit(X, y)
    >>> ens.predict_proba(X[:2]).shape
    (2, 2)
    """

    def __init__(self, members: list[Member], *, prefit: bool = False) -> None:
        self.members = members
        self.prefit = prefit

    def fit(self, X: Any, y: Any) -> MeanEnsemble:
        """Fit clones of the members on ``(X, y)``, or adopt prefit members.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,)

        Returns
        -------
        self
        """
        members = self._validate_members()
        _, X_members, y = self._validate_fit_data(X, y)
        fitted = self._adopt_prefit(members) if self.prefit else self._fit_clones(members, X_members, y)
        self.classes_ = self._shared_classes(fitted)
        if self.prefit:
            self._encode(y, self.classes_)  # labels must be ones the members know
        self.members_ = fitted
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the members' probabilities, array of shape (n_samples, n_classes)."""
        _, X_members = self._check_predict_X(X)
        return self._member_probas(self.members_, X_members, self.classes_.size).mean(axis=0)
