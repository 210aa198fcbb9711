"""Shared fixtures: small fixed-seed mnist1d data, cached in a temporary folder per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ.setdefault("CROSSFEED_CACHE", str(tmp_path_factory.mktemp("crossfeed-cache")))
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # tests never touch the network
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


#: Skip reasons that mean "the data or an optional extra is not on this machine".
_MISSING_DATA_REASONS = ("Fashion-MNIST files absent", "amazon review files are not in", "MovieLens-100K is not on this machine",
                         "pip install 'crossfeed[text]'", "sentence-transformers is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CROSSFEED_REQUIRE_DATA=1 (set by .ci/run) a test skipped for missing data fails instead:
    CI installs every dataset, so a skip there would hide a broken set-up."""
    import os

    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CROSSFEED_REQUIRE_DATA") == "1":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(marker in reason for marker in _MISSING_DATA_REASONS):
            report.outcome = "failed"
            report.longrepr = f"CROSSFEED_REQUIRE_DATA=1 but the test was skipped: {reason}"
