import numpy as np
import pytest

from crossfeed.data import load_suite
from crossfeed.exceptions import ValidationError
from crossfeed.federated import class_counts, dirichlet_partition, domain_partition

Y = np.repeat(np.arange(10), 100)


def _mean_entropy(parts) -> float:
    counts = class_counts(Y, parts).astype(float)
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(np.mean([-(r[r > 0] * np.log(r[r > 0])).sum() for r in p]))


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_every_row_goes_to_exactly_one_client(alpha):
    parts = dirichlet_partition(Y, 10, alpha, seed=3)
    assert len(parts) == 10 and min(map(len, parts)) >= 1
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(Y)))
    assert all(np.array_equal(a, b) for a, b in zip(parts, dirichlet_partition(Y, 10, alpha, seed=3)))


def test_small_alpha_skews_the_labels_and_large_alpha_approaches_iid():
    entropy = {a: np.median([_mean_entropy(dirichlet_partition(Y, 10, a, seed=s)) for s in range(5)])
               for a in (0.1, 1.0, 10.0)}
    assert entropy[0.1] < entropy[1.0] < entropy[10.0]
    assert entropy[10.0] > 0.9 * np.log(10)  # near the uniform label distribution of an IID split
    assert entropy[0.1] < 0.5 * np.log(10)


def test_min_samples_is_honoured_or_refused():
    parts = dirichlet_partition(Y, 20, 0.5, seed=0, min_samples=5)
    assert min(map(len, parts)) >= 5
    with pytest.raises(ValidationError, match="raise alpha, use fewer clients"):
        dirichlet_partition(Y, 100, 0.01, seed=0, min_samples=9, max_tries=3)


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), True])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValidationError, match="alpha must be a finite number > 0"):
        dirichlet_partition(Y, 4, alpha)


def test_more_clients_than_samples_is_refused():
    with pytest.raises(ValidationError, match="use at most 1000 clients"):
        dirichlet_partition(Y, 1001, 1.0)


def test_one_client_per_domain():
    suite = load_suite("mnist1d", seed=0, n_per_domain=200)
    parts = domain_partition(suite)
    assert list(parts) == suite.names and all(len(y) == len(suite[n].y_train) for n, (_, y) in parts.items())
    with pytest.raises(ValidationError, match="split must be"):
        domain_partition(suite, "field")
