"""Shared data of the federated tests: four Gaussian blobs in 8 dimensions, fixed seed."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def blobs():
    """600 rows ``(X, y)``: 4 classes around random centres (scale 2), unit noise."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=2.0, size=(4, 8))
    y = rng.integers(0, 4, 600)
    return (centres[y] + rng.normal(size=(600, 8))).astype(np.float32), y
