"""The colored_fashion suite: the Colored MNIST protocol on Fashion-MNIST images."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.data import load_suite
from crossfeed.data._colored import POSITIVE_CLASSES, color_environment, colored_fashion
from crossfeed.data._fashion import locate_files
from crossfeed.exceptions import MissingDataError, ValidationError


def _colour(X: np.ndarray) -> np.ndarray:
    """1 where the green channel holds the image, 0 where the red one does."""
    mass = X.reshape(len(X), 2, -1).sum(axis=2)
    return (mass[:, 1] > mass[:, 0]).astype(int)


def test_color_environment_follows_the_protocol():
    rng = np.random.default_rng(0)
    n = 20000
    images = rng.integers(1, 256, size=(n, 28, 28)).astype(np.uint8)
    classes = rng.integers(0, 10, n)
    X, y = color_environment(images, classes, 0.2, np.random.default_rng(1))
    assert X.shape == (n, 392) and X.dtype == np.float32 and 0.0 <= X.min() and X.max() <= 1.0
    clean = np.isin(classes, POSITIVE_CLASSES).astype(int)
    assert (y != clean).mean() == pytest.approx(0.25, abs=0.01)        # label noise
    assert (_colour(X) == y).mean() == pytest.approx(0.8, abs=0.01)    # colour correlation 1 - e
    shown = X.reshape(n, 2, 14, 14)[np.arange(n), _colour(X)]
    np.testing.assert_allclose(shown, images[:, ::2, ::2] / np.float32(255), atol=1e-6)   # 2x subsampled


def test_color_environment_refuses_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValidationError, match=r"shape \(n, 28, 28\)"):
        color_environment(np.zeros((3, 14, 14)), np.zeros(3), 0.1, rng)
    with pytest.raises(ValidationError, match="e must be a probability"):
        color_environment(np.zeros((3, 28, 28)), np.zeros(3), 1.5, rng)
    with pytest.raises(ValidationError, match="label_noise"):
        color_environment(np.zeros((3, 28, 28)), np.zeros(3), 0.1, rng, label_noise=0.5)


def test_bad_suite_arguments_fail_before_any_file_is_read():
    with pytest.raises(ValidationError, match="n_per_domain must be an integer from 80"):
        colored_fashion(n_per_domain=50)
    with pytest.raises(ValidationError, match="positive_classes"):
        colored_fashion(n_per_domain=200, positive_classes=(3, 12))


def _have_fashion() -> bool:
    try:
        locate_files()
    except MissingDataError:
        return False
    return True


@pytest.mark.skipif(not _have_fashion(), reason="Fashion-MNIST files not installed")
def test_load_suite_builds_the_three_environments():
    suite = load_suite("colored_fashion", seed=0, n_per_domain=2000)
    assert suite.names == ["colour_0.9", "colour_0.8", "colour_0.1"]
    assert suite.general_domain == "colour_0.9" and suite.meta["test_domain"] == "colour_0.1"
    for domain, correlation in zip(suite, (0.9, 0.8, 0.1), strict=True):
        X, y = domain.X_train, domain.y_train
        assert X.shape == (1000, 392) and set(np.unique(y)) == {0, 1}
        assert (_colour(X) == y).mean() == pytest.approx(correlation, abs=0.04)
    again = load_suite("colored_fashion", seed=0, n_per_domain=2000)
    np.testing.assert_array_equal(again["colour_0.8"].X_test, suite["colour_0.8"].X_test)
