"""MeanEnsemble, WeightedEnsemble and StackingEnsemble: each does what it promises."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from crossfeed.combine import MeanEnsemble, StackingEnsemble, WeightedEnsemble

from ._estimators import RandomProba


# ----------------------------------------------------------------- MeanEnsemble
def test_mean_is_the_average_of_members(splits3) -> None:
    s = splits3
    lr, nb = LogisticRegression().fit(s["X_tr"], s["y_tr"]), GaussianNB().fit(s["X_tr"], s["y_tr"])
    ens = MeanEnsemble([("lr", lr), ("nb", nb)], prefit=True).fit(s["X_val"], s["y_val"])
    expected = (lr.predict_proba(s["X_te"]) + nb.predict_proba(s["X_te"])) / 2
    assert np.allclose(ens.predict_proba(s["X_te"]), expected)
    assert np.array_equal(ens.predict(s["X_te"]), ens.classes_[expected.argmax(axis=1)])
    assert ens.members_[0][1] is lr  # prefit members are used as they are, not cloned


# ----------------------------------------------------------------- WeightedEnsemble
def _members_with_useless() -> list:
    return [("lr", LogisticRegression()), ("nb", GaussianNB()), ("random", RandomProba())]


@pytest.mark.parametrize("method", ["slsqp", "caruana"])
def test_weighted_gives_a_useless_member_near_zero_weight_prefit(gaussian3, method: str) -> None:
    s = gaussian3
    fitted = [(n, m.fit(s["X_tr"], s["y_tr"])) for n, m in _members_with_useless()]
    ens = WeightedEnsemble(fitted, method=method, prefit=True).fit(s["X_val"], s["y_val"])
    assert ens.weights_.shape == (3,)
    assert ens.weights_.sum() == pytest.approx(1.0) and np.all(ens.weights_ >= 0)
    assert ens.weights_[2] < 0.05
    # the optimum on the validation data is at least as good as the best member there
    assert ens.validation_log_loss_ <= ens.member_log_losses_.min() + 1e-9
    assert ens.validation_log_loss_ == pytest.approx(log_loss(s["y_val"], ens.predict_proba(s["X_val"])), abs=1e-6)
    # and the learned weights beat equal weights (which give the random member 1/3) on test data
    mean = MeanEnsemble(fitted, prefit=True).fit(s["X_val"], s["y_val"])
    assert log_loss(s["y_te"], ens.predict_proba(s["X_te"])) < log_loss(s["y_te"], mean.predict_proba(s["X_te"])) - 0.05


@pytest.mark.parametrize("method", ["slsqp", "caruana"])
def test_weighted_gives_a_useless_member_near_zero_weight_fitted_here(gaussian3, method: str) -> None:
    X, y = gaussian3["X"], gaussian3["y"]
    ens = WeightedEnsemble(_members_with_useless(), method=method, random_state=0).fit(X, y)
    assert ens.weights_.sum() == pytest.approx(1.0)
    assert ens.weights_[2] < 0.05
    assert ens.validation_log_loss_ <= ens.member_log_losses_.min() + 1e-9


@pytest.mark.parametrize("method", ["slsqp", "caruana"])
def test_weighted_calibrate_removes_the_smoothing_value_of_a_random_member(splits3, method: str) -> None:
    """With overconfident members a random one earns weight as a smoother; temperatures fix that."""
    s = splits3
    fitted = [(n, m.fit(s["X_tr"], s["y_tr"])) for n, m in _members_with_useless()]
    plain = WeightedEnsemble(fitted, method=method, prefit=True).fit(s["X_val"], s["y_val"])
    calibrated = WeightedEnsemble(fitted, method=method, prefit=True, calibrate=True).fit(s["X_val"], s["y_val"])
    assert plain.weights_[2] > 0.05
    assert calibrated.weights_[2] < 0.05


def test_weighted_refits_members_on_all_data(data3) -> None:
    X, y = data3
    ens = WeightedEnsemble([("nb", GaussianNB()), ("lr", LogisticRegression())], random_state=0).fit(X, y)
    assert ens.members_[0][1].class_count_.sum() == len(y)  # documented choice: refit on everything


def test_weighted_is_reproducible_with_random_state(data3) -> None:
    X, y = data3
    a = WeightedEnsemble(_members_with_useless(), random_state=3).fit(X, y).weights_
    b = WeightedEnsemble(_members_with_useless(), random_state=3).fit(X, y).weights_
    assert np.array_equal(a, b)


# ----------------------------------------------------------------- StackingEnsemble
def _first_half(Z: np.ndarray) -> np.ndarray:
    return Z[:, :4]


def _second_half(Z: np.ndarray) -> np.ndarray:
    return Z[:, 4:]


def _half_members() -> list:
    """Two members, each seeing half of the features: complementary by construction."""
    return [
        ("left", make_pipeline(FunctionTransformer(_first_half), LogisticRegression())),
        ("right", make_pipeline(FunctionTransformer(_second_half), LogisticRegression())),
    ]


@pytest.fixture(scope="module")
def additive() -> dict[str, np.ndarray]:
    """y depends on the sum of all 8 features: each half alone is a weak predictor."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 8))
    y = (X.sum(axis=1) + 0.5 * rng.normal(size=900) > 0).astype(int)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 3, random_state=0, stratify=y)
    return {"X_tr": X_tr, "y_tr": y_tr, "X_te": X_te, "y_te": y_te}


def test_stacking_beats_the_best_member_when_members_are_complementary(additive) -> None:
    d = additive
    st = StackingEnsemble(_half_members(), random_state=0).fit(d["X_tr"], d["y_tr"])
    best = max(m.score(d["X_te"], d["y_te"]) for _, m in st.members_)
    assert st.score(d["X_te"], d["y_te"]) >= best + 0.05


def test_stacking_prefit_uses_the_fit_data_as_held_out_split(additive) -> None:
    d = additive
    X_a, X_b, y_a, y_b = train_test_split(d["X_tr"], d["y_tr"], test_size=0.5, random_state=0, stratify=d["y_tr"])
    fitted = [(n, m.fit(X_a, y_a)) for n, m in _half_members()]
    coefs = [m[-1].coef_.copy() for _, m in fitted]
    st = StackingEnsemble(fitted, prefit=True).fit(X_b, y_b)
    assert all(st.members_[i][1] is fitted[i][1] for i in range(2))
    assert all(np.array_equal(m[-1].coef_, c) for (_, m), c in zip(fitted, coefs, strict=True))  # not refitted
    best = max(m.score(d["X_te"], d["y_te"]) for _, m in fitted)
    assert st.score(d["X_te"], d["y_te"]) >= best + 0.05
    assert st.final_estimator_.n_features_in_ == 2


def test_stacking_passthrough_adds_the_raw_features(additive) -> None:
    d = additive
    plain = StackingEnsemble(_half_members(), cv=3, random_state=0).fit(d["X_tr"], d["y_tr"])
    through = StackingEnsemble(_half_members(), cv=3, passthrough=True, random_state=0).fit(d["X_tr"], d["y_tr"])
    assert plain.final_estimator_.n_features_in_ == 2  # binary: one probability column per member
    assert through.final_estimator_.n_features_in_ == 2 + 8


def test_stacking_multiclass_meta_features_and_custom_final_estimator(data3) -> None:
    X, y = data3
    st = StackingEnsemble(
        [("lr", LogisticRegression()), ("nb", GaussianNB())], final_estimator=GaussianNB(), cv=3, random_state=0
    ).fit(X, y)
    assert isinstance(st.final_estimator_, GaussianNB)
    assert st.final_estimator_.n_features_in_ == 2 * 3
    assert st.predict_proba(X[:5]).shape == (5, 3)


def test_stacking_prefit_validation_split_missing_a_class(splits3) -> None:
    """The meta-model never saw class 2: its column is 0, the others still sum to 1."""
    s = splits3
    fitted = [("lr", LogisticRegression().fit(s["X_tr"], s["y_tr"])), ("nb", GaussianNB().fit(s["X_tr"], s["y_tr"]))]
    keep = s["y_val"] != 2
    st = StackingEnsemble(fitted, prefit=True).fit(s["X_val"][keep], s["y_val"][keep])
    proba = st.predict_proba(s["X_te"])
    assert proba.shape == (len(s["y_te"]), 3)
    assert np.all(proba[:, 2] == 0) and proba.sum(axis=1) == pytest.approx(1.0)


# ----------------------------------------------------------------- caller's objects
@pytest.mark.parametrize(
    "make",
    [
        lambda m: MeanEnsemble(m),
        lambda m: WeightedEnsemble(m, random_state=0),
        lambda m: WeightedEnsemble(m, method="caruana", calibrate=True, random_state=0),
        lambda m: StackingEnsemble(m, cv=3, random_state=0),
    ],
)
def test_never_mutates_the_callers_estimators(data3, make) -> None:
    X, y = data3
    lr, nb = LogisticRegression(C=0.5), GaussianNB()
    before = [clone(lr).get_params(), clone(nb).get_params()]
    ens = make([("lr", lr), ("nb", nb)]).fit(X, y)
    assert not hasattr(lr, "coef_") and not hasattr(nb, "class_count_")
    assert [lr.get_params(), nb.get_params()] == before
    assert ens.members_[0][1] is not lr


def test_nested_params_reach_members() -> None:
    ens = WeightedEnsemble([("lr", LogisticRegression()), ("nb", GaussianNB())])
    assert ens.get_params()["lr__C"] == 1.0
    ens.set_params(lr__C=0.1, method="caruana")
    assert ens.members[0][1].C == 0.1 and ens.method == "caruana"
