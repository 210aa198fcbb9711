"""Router: learned routing beats random routing at equal cost, cost accounting, goals, edge cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_blobs, make_classification
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from crossfeed.combine import Router
from crossfeed.combine._routing import lambda_grid, pareto_front, route, routing_outcomes
from crossfeed.exceptions import LabelMismatchError, NotFittedError, ValidationError

SMALL_COST, LARGE_COST = 1.0, 10.0


def _gated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Half the input space is linear (x1 > 0), the other half an XOR (x1 * x2 > 0); x0 says which.

    A linear model is right on the easy half only, a forest on both, and which half a sample
    lies in can be read off the input: the situation a router is for.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.where(X[:, 0] > 0, X[:, 1] > 0, X[:, 1] * X[:, 2] > 0).astype(int)
    return X, y


class Counting(ClassifierMixin, BaseEstimator):
    """Wraps a classifier and records how many rows each predict_proba call got (test helper)."""

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> Counting:
        self.model_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.model_.classes_
        self.rows_seen_: list[int] = []
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        self.rows_seen_.append(len(X))
        return self.model_.predict_proba(X)


class Flipped(ClassifierMixin, BaseEstimator):
    """A binary classifier that predicts the other class of a fitted logistic regression."""

    def fit(self, X: Any, y: Any) -> Flipped:
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(X)[:, ::-1]


@pytest.fixture(scope="module")
def gated() -> dict[str, Any]:
    X_tr, y_tr = _gated(1500, 0)
    X_cal, y_cal = _gated(1000, 1)
    X_te, y_te = _gated(1500, 2)
    small = LogisticRegression().fit(X_tr, y_tr)
    large = RandomForestClassifier(n_estimators=60, min_samples_leaf=3, random_state=0, n_jobs=1).fit(X_tr, y_tr)
    return {
        "X_tr": X_tr, "y_tr": y_tr, "X_cal": X_cal, "y_cal": y_cal, "X_te": X_te, "y_te": y_te,
        "members": [("small", small), ("large", large)],
        "acc_small": small.score(X_te, y_te), "acc_large": large.score(X_te, y_te),
    }


def _router(d: dict[str, Any], **kwargs: Any) -> Router:
    return Router(d["members"], costs=[SMALL_COST, LARGE_COST], prefit=True, random_state=0, **kwargs).fit(
        d["X_cal"], d["y_cal"]
    )


# ----------------------------------------------------------------- the technique works
@pytest.mark.parametrize("features", ["input", "first_stage"])
def test_learned_routing_beats_random_routing_at_the_same_cost(gated, features) -> None:
    d = gated
    assert d["acc_large"] > d["acc_small"] + 0.2  # the members differ, so routing matters
    r = _router(d, budget=5.5, features=features)
    proba, member = r.predict_with_members(d["X_te"])
    share = float((member == 1).mean())
    assert 0.2 < share < 0.8  # a real mix, not one member for everything
    acc = r.score(d["X_te"], d["y_te"])
    # random routing: each sample to the large member with probability `share`, so the same
    # expected cost (both members run the same way) and the interpolated accuracy
    random_acc = (1 - share) * d["acc_small"] + share * d["acc_large"]
    assert acc > random_acc + 0.08
    # "first_stage": the small member runs on every sample, so a sample sent to the large one costs both
    small_share = 1.0 if features == "first_stage" else 1 - share
    assert r.expected_cost(d["X_te"]) == pytest.approx(small_share * SMALL_COST + share * LARGE_COST)
    assert r.expected_cost_ <= 5.5 and r.lam_ > 0


def test_budget_at_the_cheap_cost_routes_everything_to_the_cheap_member(gated) -> None:
    d = gated
    r = _router(d, budget=SMALL_COST)
    assert r.expected_cost_ == pytest.approx(SMALL_COST) and r.large_call_rate_ == 0
    _, member = r.predict_with_members(d["X_te"])
    assert (member == 1).mean() <= 0.02
    assert r.expected_cost(d["X_te"]) <= SMALL_COST + 0.02 * LARGE_COST
    assert r.score(d["X_te"], d["y_te"]) == pytest.approx(d["acc_small"], abs=0.02)


def test_default_target_is_the_large_members_accuracy(gated) -> None:
    d = gated
    r = _router(d)
    assert r.target_accuracy_ is not None and r.target_accuracy_ > 0.95
    # negative lambdas reach "always the large member", so the target is reached on the held-out part
    assert r.validation_accuracy_ >= r.target_accuracy_ - 1e-12
    assert r.score(d["X_te"], d["y_te"]) >= d["acc_large"] - 0.02
    assert r.expected_cost(d["X_te"]) <= LARGE_COST
    # an explicit lower target is reached more cheaply
    cheaper = _router(d, target_accuracy=0.9)
    assert cheaper.validation_accuracy_ >= 0.9 and cheaper.expected_cost_ < r.expected_cost_


def test_curve_is_a_front_sorted_by_cost(gated) -> None:
    r = _router(gated, budget=5.5)
    curve = r.curve_
    assert set(curve) == {"cost", "accuracy", "lam", "large_call_rate"}
    n = curve["cost"].size
    assert n >= 5 and all(v.shape == (n,) for v in curve.values())
    assert np.all(np.diff(curve["cost"]) >= 0) and np.all(np.diff(curve["accuracy"]) > 0)
    assert np.all(np.diff(curve["lam"]) <= 0)  # paying more as lambda falls
    assert np.all((curve["large_call_rate"] >= 0) & (curve["large_call_rate"] <= 1))
    # the cheapest point sends everything to the small member; the chosen point is on the front
    assert curve["cost"][0] == pytest.approx(SMALL_COST) and curve["large_call_rate"][0] == 0
    chosen = np.flatnonzero(curve["lam"] == r.lam_)
    assert chosen.size == 1
    assert curve["accuracy"][chosen[0]] == pytest.approx(r.validation_accuracy_)
    assert curve["cost"][chosen[0]] == pytest.approx(r.expected_cost_)


# ----------------------------------------------------------------- cost accounting and prediction
def test_first_stage_charges_the_cheap_member_to_every_sample(gated) -> None:
    d = gated
    r = _router(d, features="first_stage", budget=SMALL_COST)
    assert r.route_costs_.tolist() == [SMALL_COST, SMALL_COST + LARGE_COST]
    assert r.costs_.tolist() == [SMALL_COST, LARGE_COST]
    assert r.expected_cost(d["X_te"]) >= SMALL_COST  # never below the first stage
    # the routers see X, the small member's 2 probabilities, its top probability and its margin
    assert r.routers_[0].n_features_in_ == d["X_cal"].shape[1] + 2 + 2
    assert _router(d).route_costs_.tolist() == [SMALL_COST, LARGE_COST]  # "input": no first stage


def test_each_member_runs_only_on_the_samples_routed_to_it(gated) -> None:
    d = gated
    members = [(name, Counting(est).fit(d["X_tr"], d["y_tr"])) for name, est in d["members"]]
    for features, small_rows in [("input", None), ("first_stage", len(d["X_te"]))]:
        r = Router(members, costs=[SMALL_COST, LARGE_COST], prefit=True, budget=5.5, features=features,
                   random_state=0).fit(d["X_cal"], d["y_cal"])
        for _, est in members:
            est.rows_seen_.clear()
        proba, member = r.predict_with_members(d["X_te"])
        n_large = int((member == 1).sum())
        assert members[1][1].rows_seen_ == [n_large]
        expected_small = small_rows if small_rows is not None else len(d["X_te"]) - n_large
        assert members[0][1].rows_seen_ == [expected_small]
        # each row holds the chosen member's probabilities; predict is their argmax
        for m, (_, est) in enumerate(members):
            rows = member == m
            np.testing.assert_allclose(proba[rows], est.model_.predict_proba(d["X_te"][rows]))
        np.testing.assert_array_equal(r.predict(d["X_te"]), r.classes_[proba.argmax(axis=1)])


def test_three_members_in_any_order_with_estimated_costs(splits3) -> None:
    s = splits3
    members = [
        ("forest", RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1).fit(s["X_tr"], s["y_tr"])),
        ("lr", LogisticRegression().fit(s["X_tr"], s["y_tr"])),
        ("tree", DecisionTreeClassifier(max_depth=4, random_state=0).fit(s["X_tr"], s["y_tr"])),
    ]
    r = Router(members, prefit=True, budget=None, random_state=0).fit(s["X_val"], s["y_val"])
    assert r.costs_.shape == (3,) and np.all(r.costs_ > 0)
    assert r.costs_[0] == r.costs_.max()  # the forest costs most (FLOPs estimate)
    proba, member = r.predict_with_members(s["X_te"])
    assert proba.shape == (len(s["X_te"]), 3) and set(member.tolist()) <= {0, 1, 2}
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    p_right = r.correctness_proba(s["X_te"])
    assert p_right.shape == (len(s["X_te"]), 3) and np.all((p_right >= 0) & (p_right <= 1))
    assert r.expected_cost(s["X_te"]) == pytest.approx(r.costs_[member].mean())


# ----------------------------------------------------------------- fitting paths and edge cases
def test_prefit_false_fits_clones_and_leaves_the_callers_members_alone(gated) -> None:
    d = gated
    small, large = LogisticRegression(), RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1)
    X = np.vstack([d["X_tr"], d["X_cal"]])
    y = np.concatenate([d["y_tr"], d["y_cal"]])
    r = Router([("small", small), ("large", large)], costs=[SMALL_COST, LARGE_COST], budget=5.5,
               random_state=0).fit(X, y)
    assert not hasattr(small, "coef_") and not hasattr(large, "estimators_")  # untouched
    assert r.members_[0][1] is not small and r.members_[1][1] is not large
    assert r.members_[0][1].coef_.shape == (1, 4)
    assert len(r.routers_) == 2 and r.n_features_in_ == 4
    assert r.score(d["X_te"], d["y_te"]) > d["acc_small"] + 0.1
    # refitted on all the data: the members saw every sample
    assert r.members_[1][1].n_features_in_ == 4 and r.members_[1][1].classes_.tolist() == [0, 1]


def test_member_right_on_all_or_none_gets_a_constant_predictor() -> None:
    X, y = make_blobs(n_samples=400, centers=[[-6, 0], [6, 0]], cluster_std=0.5, random_state=0)
    good = LogisticRegression().fit(X, y)
    bad = Flipped().fit(X, y)
    assert good.score(X, y) == 1.0 and (bad.predict_proba(X).argmax(axis=1) == y).mean() == 0.0
    r = Router([("bad", bad), ("good", good)], costs=[1.0, 10.0], prefit=True, random_state=0).fit(X, y)
    assert all(isinstance(router, DummyClassifier) for router in r.routers_)
    np.testing.assert_allclose(r.correctness_proba(X[:5]), [[0.0, 1.0]] * 5)
    _, member = r.predict_with_members(X)
    assert np.all(member == 1)  # always to the member that is always right, despite its cost
    assert r.score(X, y) == 1.0 and r.expected_cost(X) == 10.0


def test_members_with_different_label_spaces_are_refused_clearly(splits3) -> None:
    s = splits3
    two = s["y_tr"] < 2
    members = [
        ("three", LogisticRegression().fit(s["X_tr"], s["y_tr"])),
        ("two", LogisticRegression().fit(s["X_tr"][two], s["y_tr"][two])),
    ]
    with pytest.raises(LabelMismatchError, match=r"'three' has classes \[0, 1, 2\] but 'two' has \[0, 1\]") as info:
        Router(members, costs=[1.0, 2.0], prefit=True).fit(s["X_val"], s["y_val"])
    assert "same classes_" in str(info.value) and "Fit every member on the same labels" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_accuracy": 0.9, "budget": 3.0}, "at most one goal of target_accuracy, budget"),
        ({"target_accuracy": 0.0}, r"target_accuracy must be a number in \(0, 1\]"),
        ({"target_accuracy": 1.5}, r"target_accuracy must be a number in \(0, 1\]"),
        ({"target_accuracy": True}, r"target_accuracy must be a number in \(0, 1\]"),
        ({"budget": 0.0}, "budget must be a positive finite number"),
        ({"budget": -1.0}, "budget must be a positive finite number"),
        ({"budget": float("inf")}, "budget must be a positive finite number"),
        ({"features": "first"}, "features must be one of"),
        ({"router": "logreg"}, "router must be a scikit-learn classifier"),
        ({"router_fraction": 1.0}, "router_fraction must be a number strictly between 0 and 1"),
        ({"costs": [1.0]}, r"costs must have one number per member \(2\)"),
        ({"costs": [1.0, -2.0]}, "costs must be finite and >= 0"),
    ],
)
def test_bad_parameters_are_refused_in_fit(gated, kwargs, match) -> None:
    d = gated
    params = {"costs": [SMALL_COST, LARGE_COST], **kwargs}
    with pytest.raises(ValidationError, match=match):
        Router(d["members"], prefit=True, **params).fit(d["X_cal"], d["y_cal"])


def test_predict_before_fit_raises() -> None:
    X, y = make_classification(n_samples=50, random_state=0)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Router([("lr", LogisticRegression().fit(X, y))], prefit=True).predict(X)


# ----------------------------------------------------------------- the pure maths
def test_route_picks_the_best_value_and_breaks_ties_to_the_cheaper_member() -> None:
    p = np.array([[0.6, 0.8], [0.8, 0.8]])  # cheap member listed first, expensive second
    costs = np.array([1.0, 4.0])
    assert route(p, costs, 0.0).tolist() == [1, 0]  # tie on sample 1 goes to the cheaper member
    assert route(p, costs, 1.0).tolist() == [0, 0]
    assert route(p[::-1], costs[::-1], 0.0).tolist() == [0, 1]  # the same in the other member order


def test_lambda_grid_spans_every_change_of_routing() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(3, 200))
    costs = np.array([1.0, 3.0, 9.0])
    lams = lambda_grid(p, costs)
    assert 0.0 in lams and lams[0] < 0 and np.all(np.diff(lams) > 0)
    acc, cost, large = routing_outcomes(p, p > 0.5, costs, lams)
    assert cost[-1] == pytest.approx(1.0) and large[-1] == 0  # the last lambda: all to the cheapest
    assert cost[0] == pytest.approx(9.0) and large[0] == 1  # the first: all to the most expensive
    np.testing.assert_array_equal(route(p, costs, 0.0), p.argmax(axis=0))  # lambda 0: most likely right
    assert np.all(np.diff(cost) <= 1e-12)  # paying less as lambda grows
    # no cost difference, nothing to scan
    assert lambda_grid(p, np.ones(3)).tolist() == [0.0]


def test_routing_outcomes_and_front_on_known_values() -> None:
    p = np.array([[0.9, 0.2], [0.5, 0.9]])
    correct = np.array([[True, False], [False, True]])
    acc, cost, large = routing_outcomes(p, correct, np.array([1.0, 10.0]), np.array([0.0, 10.0]))
    assert acc.tolist() == [1.0, 0.5] and cost.tolist() == [5.5, 1.0] and large.tolist() == [0.5, 0.0]
    assert pareto_front(cost, acc).tolist() == [1, 0]


def test_linear_fast_path_matches_the_routers() -> None:
    """The default routers folded into one matrix give the routers' own probabilities."""
    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, random_state=3)
    cheap = LogisticRegression().fit(X[:300], y[:300])
    strong = RandomForestClassifier(50, random_state=0).fit(X[:300], y[:300])
    router = Router([("cheap", cheap), ("strong", strong)], costs=[1.0, 10.0], prefit=True, random_state=0)
    router.fit(X[300:], y[300:])
    assert router.linear_routers_ is not None
    fast = router.correctness_proba(X[:50])
    router.linear_routers_ = None
    slow = router.correctness_proba(X[:50])
    np.testing.assert_allclose(fast, slow, atol=1e-9)
