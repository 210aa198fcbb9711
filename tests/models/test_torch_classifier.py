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
