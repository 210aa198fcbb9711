"""Pure maths: simplex weights, Caruana selection, log-loss, confidence scores."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.combine import (
    caruana_selection,
    entropy_confidence,
    margin_confidence,
    max_prob_confidence,
    mean_log_loss,
    optimize_simplex_weights,
)
from crossfeed.exceptions import ValidationError

N, K = 400, 3


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, K, size=N)


def _informative(y: np.ndarray, p_true: float, seed: int) -> np.ndarray:
    """Probabilities putting about ``p_true`` on the true class (sometimes wrong)."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(K), size=y.size) * (1 - p_true)
    proba[np.arange(y.size), y] += p_true
    return proba / proba.sum(axis=1, keepdims=True)


def _random(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(K), size=N)


def _half_experts(y: np.ndarray) -> np.ndarray:
    """Two members: each confident and right on its half of the samples, uniform on the other."""
    half = np.arange(y.size) < y.size // 2
    a = np.full((y.size, K), 1.0 / K)
    b = a.copy()
    onehot = np.eye(K)[y] * 0.9 + 0.1 / K
    a[half], b[~half] = onehot[half], onehot[~half]
    return np.stack([a, b])


# ----------------------------------------------------------------- optimize_simplex_weights
def test_simplex_weights_recover_the_better_member() -> None:
    y = _labels()
    w = optimize_simplex_weights(np.stack([_random(1), _informative(y, 0.7, 2), _random(3)]), y)
    assert w.shape == (3,)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert w[1] > 0.95


def test_simplex_weights_find_an_interior_optimum() -> None:
    """Complementary members: the optimum mixes them; a vertex (picking one) would be wrong."""
    y = _labels()
    w = optimize_simplex_weights(_half_experts(y), y)
    assert w == pytest.approx([0.5, 0.5], abs=0.02)


def test_simplex_weights_match_a_brute_force_grid() -> None:
    y = _labels(5)
    probas = np.stack([_informative(y, 0.5, 6), _informative(y, 0.4, 7)])
    w = optimize_simplex_weights(probas, y)
    grid = np.linspace(0, 1, 1001)
    losses = [mean_log_loss(a * probas[0] + (1 - a) * probas[1], y) for a in grid]
    assert mean_log_loss(np.tensordot(w, probas, axes=1), y) <= min(losses) + 1e-6


def test_simplex_weights_single_member() -> None:
    y = _labels()
    assert optimize_simplex_weights(_random(0)[None], y).tolist() == [1.0]


# ----------------------------------------------------------------- caruana_selection
def test_caruana_recovers_the_better_member() -> None:
    y = _labels()
    w = caruana_selection(np.stack([_random(1), _informative(y, 0.7, 2), _random(3)]), y, n_iter=20)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert w[1] >= 0.9


def test_caruana_mixes_complementary_members_in_multiples_of_one_over_k() -> None:
    y = _labels()
    w = caruana_selection(_half_experts(y), y, n_iter=20)
    assert w == pytest.approx([0.5, 0.5], abs=0.1)
    k = next(k for k in range(1, 21) if np.allclose(w * k, np.round(w * k)))
    assert k >= 2  # more than one pick: a real ensemble, not the best single member


def test_caruana_with_a_custom_loss() -> None:
    y = _labels()
    error = lambda p, t: float(np.mean(p.argmax(axis=1) != t))  # noqa: E731
    w = caruana_selection(np.stack([_random(1), _informative(y, 0.7, 2)]), y, n_iter=5, loss=error)
    assert w[1] == pytest.approx(1.0)


def test_caruana_rejects_bad_n_iter() -> None:
    y = _labels()
    with pytest.raises(ValidationError, match="n_iter"):
        caruana_selection(np.stack([_random(1), _random(2)]), y, n_iter=0)


@pytest.mark.parametrize("fn", [optimize_simplex_weights, caruana_selection])
def test_pure_functions_validate_shapes(fn) -> None:
    y = _labels()
    with pytest.raises(ValidationError, match="n_members, n_samples, n_classes"):
        fn(_random(0), y)
    with pytest.raises(ValidationError, match="y_idx"):
        fn(np.stack([_random(0)]), y[:-1])
    with pytest.raises(ValidationError, match="class indices"):
        fn(np.stack([_random(0)]), y + K)


def test_mean_log_loss() -> None:
    assert mean_log_loss(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([0, 0])) == pytest.approx(np.log(2) / 2)


# ----------------------------------------------------------------- confidence scores
def test_confidence_scores() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    assert max_prob_confidence(p) == pytest.approx([1.0, 0.6, 1 / 3])
    assert margin_confidence(p) == pytest.approx([1.0, 0.3, 0.0])
    assert entropy_confidence(p) == pytest.approx(
        [0.0, 0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1), -np.log(3)]
    )
    for fn in (max_prob_confidence, margin_confidence, entropy_confidence):
        s = fn(p)
        assert s.shape == (3,) and s[0] > s[1] > s[2]  # one-hot > peaked > uniform
