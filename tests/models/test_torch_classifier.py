import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.models import ARCHITECTURES, TorchClassifier

# Checks that cannot apply to a stochastic mini-batch learner, each with its reason.
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": (
        "mini-batch SGD: weighting a sample by 2 is not the same optimisation path as repeating it"
    ),
}


@parametrize_with_checks(
    [TorchClassifier("mlp", module_kwargs={"hidden": (32,)}, epochs=40, lr=1e-2, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_sklearn_conformance(estimator, check):
    check(estimator)


def test_fit_predict_on_mnist1d_cnn(small_suite):
    d = small_suite["default"]
    clf = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=15, lr=3e-3, random_state=0)
    clf.fit(d.X_train, d.y_train, X_val=d.X_val, y_val=d.y_val)
    proba = clf.predict_proba(d.X_test)
    assert proba.shape == (len(d.X_test), 10)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert np.mean(clf.predict(d.X_test) == d.y_test) > 0.3  # well above chance (0.1) on 200 samples
    assert len(clf.history_) == 15 and "val_accuracy" in clf.history_[-1]


def test_string_labels_and_soft_targets(blobs):
    X, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    clf = TorchClassifier("mlp", epochs=10, random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == ["a", "b", "c"] and set(clf.predict(X)) <= {"a", "b", "c"}
    # soft targets that always say class "c" override the labels
    soft = np.tile([0.0, 0.0, 1.0], (len(X), 1))
    clf2 = TorchClassifier("mlp", epochs=10, lr=1e-2, random_state=0).fit(X, labels, soft_targets=soft)
    assert np.mean(clf2.predict(X) == "c") > 0.95


def test_seeded_fits_are_identical_and_clone_is_unfitted(blobs):
    X, y = blobs
    a = TorchClassifier("mlp", epochs=5, random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not hasattr(clone(a), "module_")


def test_module_instance_is_never_trained_in_place(blobs):
    X, y = blobs
    module = torch.nn.Sequential(torch.nn.Linear(6, 3))
    before = module[0].weight.detach().clone()
    TorchClassifier(module, epochs=3, random_state=0).fit(X, y)
    torch.testing.assert_close(module[0].weight, before)


def test_factory_and_early_stopping_with_validation_fraction(blobs):
    X, y = blobs
    clf = TorchClassifier(lambda n_in, n_out: torch.nn.Linear(n_in, n_out), epochs=50, patience=2,
                          validation_fraction=0.25, lr=5e-2, random_state=0).fit(X, y)
    assert clf.best_epoch_ >= 1 and len(clf.history_) <= 50


def test_usable_in_cross_val_score(blobs):
    X, y = blobs
    scores = cross_val_score(TorchClassifier("mlp", epochs=10, random_state=0), X, y, cv=3)
    assert scores.mean() > 0.8


def test_bad_inputs_are_clear(blobs):
    X, y = blobs
    with pytest.raises(ValidationError, match="NaN"):
        TorchClassifier(epochs=1).fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValidationError, match="Expected 2D array"):
        TorchClassifier(epochs=1).fit(X[:, 0], y)
    with pytest.raises(ValidationError, match="inconsistent numbers of samples"):
        TorchClassifier(epochs=1).fit(X, y[:-1])
    clf = TorchClassifier(epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValidationError, match="is expecting 6 features"):
        clf.predict(X[:, :4])
    with pytest.raises(LabelMismatchError, match="n_classes"):
        TorchClassifier(epochs=1).fit(X, y, soft_targets=np.ones((len(X), 5)) / 5)
    with pytest.raises(LabelMismatchError, match="not among the classes"):
        TorchClassifier(epochs=1).fit(X, y, X_val=X, y_val=y + 7)
    with pytest.raises(KeyError, match="did you mean 'cnn1d'"):
        TorchClassifier("cnn1e", epochs=1).fit(X, y)
    with pytest.raises(ValidationError, match="size"):
        TorchClassifier("cnn1d", module_kwargs={"size": "huge"}, epochs=1).fit(X, y)


def test_cnn_ladder_grows():
    from crossfeed.models import CNN1D, CNN1D_SIZES

    sizes = [sum(p.numel() for p in CNN1D(40, 10, size=s).parameters()) for s in CNN1D_SIZES]
    assert sizes == sorted(sizes) and sizes[-1] > 20 * sizes[0]
    assert {"linear", "mlp", "cnn1d"} <= set(ARCHITECTURES.names())


def test_the_full_input_shape_is_recorded_and_enforced():
    """(n, 10, 4) has the 40 features of (n, 4, 10) in another layout: refused, naming both shapes."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4, 10)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    clf = TorchClassifier("mlp", module_kwargs={"hidden": (8,)}, epochs=1, random_state=0).fit(X, y)
    assert clf.input_shape_ == (4, 10) and clf.n_features_in_ == 40
    assert clf.predict(X).shape == (64,)
    with pytest.raises(ValidationError, match=r"shape \(10, 4\).*fitted on samples of shape \(4, 10\).*silently misread"):
        clf.predict(X.transpose(0, 2, 1))
    with pytest.raises(ValidationError, match=r"fitted on samples of shape \(4, 10\) .*; it is expecting 40 features, got 36"):
        clf.predict(X[:, :, :9].transpose(0, 2, 1))
    # flat rows are what the network reads: always accepted, the same answers
    np.testing.assert_allclose(clf.predict_proba(X.reshape(64, 40)), clf.predict_proba(X), rtol=1e-6)
    with pytest.raises(ValidationError, match=r"X_val has samples of shape \(10, 4\)"):
        TorchClassifier("mlp", epochs=1).fit(X, y, X_val=X.transpose(0, 2, 1), y_val=y)
    flat = TorchClassifier("mlp", module_kwargs={"hidden": (8,)}, epochs=1, random_state=0).fit(X.reshape(64, 40), y)
    assert flat.input_shape_ == (40,)
    with pytest.raises(ValidationError, match=r"fitted on samples of shape \(40,\)"):
        flat.predict(X)


def test_numpy_integers_are_accepted_for_epochs_and_batch_size(blobs):
    X, y = blobs
    clf = TorchClassifier("mlp", epochs=np.int64(2), batch_size=np.int32(64), random_state=0).fit(X, y)
    assert len(clf.history_) == 2
    for bad in (True, 0, "3", 2.5):
        with pytest.raises(ValidationError, match="epochs must be a positive integer"):
            TorchClassifier("mlp", epochs=bad).fit(X, y)
    with pytest.raises(ValidationError, match=r"got 2.0 of type float. Pass a whole number >= 1, e.g. epochs=2"):
        TorchClassifier("mlp", epochs=2.0).fit(X, y)
    with pytest.raises(ValidationError, match=r"batch_size must be a positive integer .* got np.int64\(0\)"):
        TorchClassifier("mlp", batch_size=np.int64(0)).fit(X, y)


@pytest.mark.parametrize(("size", "n_features", "needed"), [("tiny", 1, 2), ("small", 3, 4), ("large", 2, 4)])
def test_cnn1d_on_too_short_input(size, n_features, needed):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, n_features)), rng.integers(0, 2, 32)
    with pytest.raises(ValidationError, match=f"needs at least {needed} features per sample; got n_features={n_features}"):
        TorchClassifier("cnn1d", module_kwargs={"size": size}, epochs=1).fit(X, y)
    TorchClassifier("cnn1d", module_kwargs={"size": size}, epochs=1, random_state=0).fit(
        rng.normal(size=(32, needed)), y)  # the shortest input that works


def test_ragged_lists_are_refused_clearly(blobs):
    with pytest.raises(ValidationError, match="ragged list whose rows differ in length"):
        TorchClassifier("mlp", epochs=1).fit([[1.0, 2.0], [3.0]], [0, 1])
    X, y = blobs
    clf = TorchClassifier("mlp", epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValidationError, match="ragged list"):
        clf.predict([list(X[0]), list(X[1][:3])])
    with pytest.raises(ValidationError, match="X_val must be a rectangular array"):
        TorchClassifier("mlp", epochs=1).fit(X, y, X_val=[list(X[0]), [1.0]], y_val=y[:2])
