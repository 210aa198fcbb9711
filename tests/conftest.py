"""Shared fixtures: small fixed-seed mnist1d data, cached in a temporary folder per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ.setdefault("CROSSFEED_CACHE", str(tmp_path_factory.mktemp("crossfeed-cache")))
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_suite():
    from crossfeed.data import load_suite

    return load_suite("mnist1d", seed=0, n_per_domain=400)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(3, 6))
    y = rng.integers(0, 3, size=300)
    X = (centers[y] + rng.normal(size=(300, 6))).astype(np.float32)
    return X, y
