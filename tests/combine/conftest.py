"""Shared data for the combine tests (small, fixed seeds, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split


@pytest.fixture(scope="session")
def data3() -> tuple[np.ndarray, np.ndarray]:
    """600 samples, 8 features, 3 classes."""
    return make_classification(
        n_samples=600, n_features=8, n_informative=5, n_redundant=1, n_classes=3, random_state=0
    )


@pytest.fixture(scope="session")
def splits3(data3: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """data3 split into train (50%), validation (25%) and test (25%), stratified."""
    X, y = data3
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    X_val, X_te, y_val, y_te = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    return {"X_tr": X_tr, "y_tr": y_tr, "X_val": X_val, "y_val": y_val, "X_te": X_te, "y_te": y_te}


@pytest.fixture(scope="session")
def gaussian3() -> dict[str, np.ndarray]:
    """1200 samples of 3 Gaussian classes (identity covariance), split 50/25/25 as in splits3.

    Logistic regression and Gaussian naive Bayes are both well specified here, hence close to
    calibrated: the data for "a useless member gets no weight" (with overconfident members, a
    random member earns some weight as a smoother, which is right but not what is tested).
    """
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1200)
    X = rng.normal(scale=1.2, size=(3, 4))[y] + rng.normal(size=(1200, 4))
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    X_val, X_te, y_val, y_te = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    return {"X": X, "y": y, "X_tr": X_tr, "y_tr": y_tr, "X_val": X_val, "y_val": y_val, "X_te": X_te, "y_te": y_te}
