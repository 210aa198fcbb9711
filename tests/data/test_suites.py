import numpy as np
import pytest

from crossfeed.data import MNIST1D_DOMAINS, Domain, DomainSuite, load_suite
from crossfeed.exceptions import EmptyDataError, LabelMismatchError, UnknownNameError, ValidationError


def test_mnist1d_has_five_shifted_domains_with_all_splits(small_suite):
    assert small_suite.names == ["default", "noisy", "sheared", "shifted", "scaled"]
    assert small_suite.classes.tolist() == list(range(10))
    for d in small_suite:
        assert d.X_train.shape[1:] == (40,) and d.X_train.dtype == np.float32
        assert len(d.X_train) == 200 and len(d.X_val) == 50 and len(d.X_test) == 100 and len(d.X_field) == 50
        assert set(np.unique(d.y_train)) == set(range(10))


def test_domains_really_differ(small_suite):
    # Different generator arguments give different signal statistics, not relabelled copies.
    stats = {d.name: np.abs(np.diff(d.X_train, axis=1)).mean() for d in small_suite}
    assert len({round(v, 3) for v in stats.values()}) == len(stats)
    assert stats["noisy"] > stats["default"]


def test_generation_is_deterministic_and_seeded(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path))
    a = load_suite("mnist1d", seed=3, n_per_domain=100, domains=["default"])
    b = load_suite("mnist1d", seed=3, n_per_domain=100, domains=["default"], cache=False)
    c = load_suite("mnist1d", seed=4, n_per_domain=100, domains=["default"], cache=False)
    np.testing.assert_array_equal(a["default"].X_train, b["default"].X_train)
    assert not np.array_equal(a["default"].X_train, c["default"].X_train)
    assert list((tmp_path / "mnist1d").glob("*.npz")), "the generated domain is cached on disk"


def test_generation_leaves_global_numpy_state_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    load_suite("mnist1d", seed=9, n_per_domain=100, domains=["noisy"], cache=False)
    assert np.random.rand() == expected


def test_corrupt_cache_entry_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path))
    first = load_suite("mnist1d", seed=1, n_per_domain=100, domains=["default"])
    for f in (tmp_path / "mnist1d").glob("*.npz"):
        f.write_bytes(b"not an npz")
    again = load_suite("mnist1d", seed=1, n_per_domain=100, domains=["default"])
    np.testing.assert_array_equal(first["default"].X_test, again["default"].X_test)


def test_pooled_views(small_suite):
    X, y = small_suite.pooled("test")
    assert X.shape == (500, 40) and y.shape == (500,)
    X2, y2, idx = small_suite.pooled_with_domain("val")
    assert np.bincount(idx).tolist() == [50] * 5
    Xs, _ = small_suite.pooled("train", domains=["noisy"])
    np.testing.assert_array_equal(Xs, small_suite["noisy"].X_train)


def test_unknown_suite_and_domain_names_list_the_options(small_suite):
    with pytest.raises(UnknownNameError, match="mnist1d") as info:
        load_suite("mnist1e")
    assert "did you mean 'mnist1d'" in str(info.value)
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="sheared"):
        small_suite["sheered"]
    with pytest.raises(ValidationError, match="available"):
        load_suite("mnist1d", domains=["windy"])
    assert set(MNIST1D_DOMAINS) == set(small_suite.names)


def _domain(name, n=20, n_classes=2, shape=(3,)):
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    return Domain(name, X, y, X, y, X, y)


def test_empty_domain_is_a_clear_error():
    X = np.zeros((0, 3), np.float32)
    y = np.zeros(0, int)
    with pytest.raises(EmptyDataError, match="train split is empty") as info:
        Domain("void", X, y, X, y, X, y)
    assert isinstance(info.value, ValueError)


def test_suite_rejects_mismatched_shapes_and_labels():
    with pytest.raises(ValidationError, match="one input shape"):
        DomainSuite.from_domains("s", [_domain("a"), _domain("b", shape=(4,))])
    with pytest.raises(LabelMismatchError, match="classes"):
        DomainSuite.from_domains("s", [_domain("a", n_classes=2), _domain("b", n_classes=3)])
    with pytest.raises(EmptyDataError):
        DomainSuite.from_domains("s", [])
    with pytest.raises(ValidationError, match="unique"):
        DomainSuite.from_domains("s", [_domain("a"), _domain("a")])


def test_too_few_samples_is_rejected():
    with pytest.raises(ValidationError, match="at least 80"):
        load_suite("mnist1d", n_per_domain=10)


def test_suite_options_are_checked_against_the_loader_with_a_suggestion():
    from crossfeed.data import check_suite_kwargs

    with pytest.raises(ValidationError, match=r"suite 'mnist1d' has no option 'n_per_domian'; did you mean "
                                              r"'n_per_domain'\? Its loader load_mnist1d takes: n_per_domain, domains, cache"):
        load_suite("mnist1d", n_per_domian=200)
    with pytest.raises(ValidationError, match=r"suite 'movielens' has no option 'n_per_domain'\. .*max_users"):
        load_suite("movielens", n_per_domain=200)  # refused before it looks for any file
    with pytest.raises(ValidationError, match="did you mean 'directory'"):
        check_suite_kwargs("fashion", {"directry": "/data"})
    with pytest.raises(ValidationError, match="pass the seed as load_suite's seed argument"):
        check_suite_kwargs("mnist1d", {"seed": 1})
    with pytest.raises(UnknownNameError, match="did you mean 'amazon'"):
        check_suite_kwargs("amazn", {})
    check_suite_kwargs("amazon", {"n_per_domain": 100, "max_len": 64})  # fine: nothing is loaded
