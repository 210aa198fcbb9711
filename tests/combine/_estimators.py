"""Helper estimators for the combine tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class RandomProba(ClassifierMixin, BaseEstimator):
    """A useless classifier: random probabilities (Dirichlet(1) rows), whatever the input."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> RandomProba:
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        rng = np.random.default_rng([self.random_state, len(X)])
        return rng.dirichlet(np.ones(len(self.classes_)), size=len(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class NoProba(ClassifierMixin, BaseEstimator):
    """A classifier without predict_proba."""

    def fit(self, X: Any, y: Any) -> NoProba:
        self.classes_ = np.unique(y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), self.classes_[0])
