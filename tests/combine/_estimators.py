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


class PoisonedProba(ClassifierMixin, BaseEstimator):
    """Logistic regression whose probabilities get ``poison`` (NaN, inf, a logit) in row 0 when set."""

    def __init__(self, poison: float | None = None) -> None:
        self.poison = poison

    def fit(self, X: Any, y: Any) -> PoisonedProba:
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = self.model_.predict_proba(X)
        if self.poison is not None:
            p[0, 0] = self.poison
        return p

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
