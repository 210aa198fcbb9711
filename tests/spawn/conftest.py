"""Shared data and models for the spawn tests: small mnist1d suites, fixed seeds, trained once.

The root conftest trains on one intra-op thread (two OpenMP threads on a loaded 2-core machine
can run many times slower).
"""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.data import DomainSuite, load_suite
from crossfeed.models import TorchClassifier


@pytest.fixture(scope="package")
def suite() -> DomainSuite:
    """mnist1d, 800 samples per domain: pooled train 2000, test 1000, field 500."""
    return load_suite("mnist1d", seed=0, n_per_domain=800)


@pytest.fixture(scope="package")
def pooled(suite: DomainSuite) -> dict[str, np.ndarray]:
    X, y = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    X_test, y_test = suite.pooled("test")
    X_field = np.concatenate([d.X_field for d in suite])
    return {"X": X, "y": y, "X_val": X_val, "y_val": y_val, "X_test": X_test, "y_test": y_test, "X_field": X_field}


@pytest.fixture(scope="package")
def teacher(pooled: dict[str, np.ndarray]) -> TorchClassifier:
    """A cnn1d medium trained on the pooled data (about 0.8 test accuracy)."""
    return TorchClassifier("cnn1d", module_kwargs={"size": "medium"}, epochs=30, lr=3e-3, random_state=0).fit(
        pooled["X"], pooled["y"]
    )


@pytest.fixture(scope="package")
def small_model(pooled: dict[str, np.ndarray]) -> TorchClassifier:
    """A cnn1d small trained briefly: the model the prune / quantize / export tests transform."""
    return TorchClassifier("cnn1d", module_kwargs={"size": "small"}, epochs=10, lr=3e-3, random_state=0).fit(
        pooled["X"], pooled["y"]
    )


@pytest.fixture(scope="package")
def mlp_model(pooled: dict[str, np.ndarray]) -> TorchClassifier:
    return TorchClassifier("mlp", module_kwargs={"hidden": (64, 64)}, epochs=15, lr=3e-3, random_state=0).fit(
        pooled["X"], pooled["y"]
    )

