"""Cascade: calibrated thresholds, cost accounting, the search, the stage bookkeeping."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB

from crossfeed.combine import CONFIDENCE_RULES, Cascade, _cascade_search
from crossfeed.combine._cascade_search import cascade_outcomes, search_thresholds

LARGE_COST, SMALL_COST = 10.0, 1.0


def _members() -> list:
    # listed large first on purpose: the cascade must order them by cost
    return [
        ("large", RandomForestClassifier(n_estimators=60, min_samples_leaf=2, random_state=0, n_jobs=1)),
        ("small", LogisticRegression()),
    ]


@pytest.fixture(scope="module")
def binary() -> dict[str, np.ndarray]:
    X, y = make_classification(
        n_samples=3000, n_features=20, n_informative=10, n_classes=2, flip_y=0.02, random_state=2
    )
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 3, random_state=0, stratify=y)
    return {"X_tr": X_tr, "y_tr": y_tr, "X_te": X_te, "y_te": y_te}


@pytest.fixture(scope="module")
def target_cascade(binary) -> Cascade:
    return Cascade(_members(), costs=[LARGE_COST, SMALL_COST], random_state=0).fit(binary["X_tr"], binary["y_tr"])


def test_target_mode_matches_the_large_model_for_less_cost(binary, target_cascade) -> None:
    c, d = target_cascade, binary
    assert c.order_.tolist() == [1, 0] and c.costs_.tolist() == [LARGE_COST, SMALL_COST]
    assert 0.0 < c.escalation_rate_ < 1.0  # only part of the data goes to the large model
    assert c.validation_accuracy_ >= c.target_accuracy_
    large, small = c.members_[0][1], c.members_[1][1]
    acc = c.score(d["X_te"], d["y_te"])
    assert acc >= c.target_accuracy_ - 0.01  # the target holds on held-out data (within 1 point)
    # the refitted large model (trained on all the data) is a bit stronger than the one the
    # target was measured on, so allow a little more slack against it
    assert acc >= large.score(d["X_te"], d["y_te"]) - 0.015
    assert acc >= small.score(d["X_te"], d["y_te"]) + 0.02  # the escalation is what buys accuracy
    assert c.expected_cost_ < LARGE_COST
    test_cost = c.expected_cost(d["X_te"])
    assert SMALL_COST < test_cost < LARGE_COST


def test_curve_is_a_front_sorted_by_cost(target_cascade) -> None:
    curve = target_cascade.curve_
    n = curve["cost"].size
    assert n >= 3
    assert curve["accuracy"].shape == curve["escalation_rate"].shape == (n,)
    assert curve["thresholds"].shape == (n, 2)
    assert np.all(np.diff(curve["cost"]) >= 0)
    assert np.all(np.diff(curve["accuracy"]) > 0)
    assert np.all((curve["escalation_rate"] >= 0) & (curve["escalation_rate"] <= 1))
    # cheapest point: the small model answers everything; the chosen point lies on the front
    assert curve["cost"][0] == pytest.approx(SMALL_COST) and curve["escalation_rate"][0] == 0
    chosen = np.flatnonzero(np.isclose(curve["cost"], target_cascade.expected_cost_))
    assert chosen.size == 1 and curve["accuracy"][chosen[0]] == pytest.approx(target_cascade.validation_accuracy_)


def test_predict_with_stages_is_consistent_with_predict(binary, target_cascade) -> None:
    c, X = target_cascade, binary["X_te"]
    proba, stage = c.predict_with_stages(X)
    assert proba.shape == (len(X), 2) and stage.shape == (len(X),)
    assert set(np.unique(stage)) == {0, 1}
    assert np.allclose(proba, c.predict_proba(X))
    assert np.array_equal(c.predict(X), c.classes_[proba.argmax(axis=1)])
    assert proba.sum(axis=1) == pytest.approx(1.0)
    small = c.members_[c.order_[0]][1]
    first = stage == 0
    assert np.allclose(proba[first], small.predict_proba(X[first]))  # stage 0 answered with its own output
    assert c.expected_cost(X) == pytest.approx(np.where(first, SMALL_COST, SMALL_COST + LARGE_COST).mean())


def test_budget_mode_respects_the_budget(binary) -> None:
    d = binary
    accs = []
    for budget in (2.0, 4.0):
        c = Cascade(_members(), costs=[LARGE_COST, SMALL_COST], budget=budget, random_state=0).fit(d["X_tr"], d["y_tr"])
        assert c.expected_cost_ <= budget
        assert c.target_accuracy_ is None
        accs.append(c.validation_accuracy_)
    assert accs[1] >= accs[0] > c.curve_["accuracy"][0]  # more budget, more accuracy; better than small alone


def test_budget_below_the_cheapest_stage_warns_and_uses_it(splits3, caplog) -> None:
    s = splits3
    fitted = [("large", GaussianNB().fit(s["X_tr"], s["y_tr"])), ("small", LogisticRegression().fit(s["X_tr"], s["y_tr"]))]
    with caplog.at_level(logging.WARNING, logger="crossfeed.combine._cascade_search"):
        c = Cascade(fitted, costs=[5.0, 1.0], budget=0.5, prefit=True).fit(s["X_val"], s["y_val"])
    assert "budget" in caplog.text
    assert c.expected_cost_ == pytest.approx(1.0) and c.escalation_rate_ == 0.0


def test_unreachable_target_warns_and_uses_the_most_accurate(splits3, caplog) -> None:
    s = splits3
    fitted = [("large", GaussianNB().fit(s["X_tr"], s["y_tr"])), ("small", LogisticRegression().fit(s["X_tr"], s["y_tr"]))]
    with caplog.at_level(logging.WARNING, logger="crossfeed.combine._cascade_search"):
        c = Cascade(fitted, costs=[5.0, 1.0], target_accuracy=1.0, prefit=True).fit(s["X_val"], s["y_val"])
    assert "target" in caplog.text
    assert c.validation_accuracy_ == pytest.approx(c.curve_["accuracy"].max())


@pytest.mark.parametrize("rule", ["max_prob", "margin", "entropy"])
def test_thresholds_for_each_rule(splits3, rule: str) -> None:
    s = splits3
    large = RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1).fit(s["X_tr"], s["y_tr"])
    small = LogisticRegression().fit(s["X_tr"], s["y_tr"])
    c = Cascade([("small", small), ("large", large)], costs=[1.0, 8.0], rule=rule, prefit=True)
    c.fit(s["X_val"], s["y_val"])
    assert c.members_[0][1] is small and c.members_[1][1] is large  # prefit: used as they are
    assert c.thresholds_.shape == (2,) and c.thresholds_[-1] == -np.inf
    low, high = {"max_prob": (1 / 3, 1.0), "margin": (0.0, 1.0), "entropy": (-np.log(3), 0.0)}[rule]
    assert low <= c.thresholds_[0] <= high or c.thresholds_[0] == np.inf
    score = CONFIDENCE_RULES[rule](small.predict_proba(s["X_te"]))
    _, stage = c.predict_with_stages(s["X_te"])
    assert np.all(score[stage == 0] >= c.thresholds_[0])
    assert np.all(score[stage == 1] < c.thresholds_[0])


def test_three_stages_are_ordered_by_cost(splits3) -> None:
    s = splits3
    members = [
        ("large", RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1)),
        ("tiny", GaussianNB()),
        ("small", LogisticRegression()),
    ]
    c = Cascade(members, costs=[20.0, 1.0, 3.0], random_state=0).fit(s["X_tr"], s["y_tr"])
    assert c.order_.tolist() == [1, 2, 0]
    assert c.thresholds_.shape == (3,) and c.thresholds_[-1] == -np.inf
    assert c.curve_["thresholds"].shape[1] == 3
    assert c.expected_cost_ < 1.0 + 3.0 + 20.0
    _, stage = c.predict_with_stages(s["X_te"])
    assert stage.min() >= 0 and stage.max() <= 2


def test_costs_default_to_flops_per_sample(monkeypatch, splits3) -> None:
    """costs=None asks crossfeed.models.cost.flops_per_sample for each member (faked here)."""
    monkeypatch.setattr("crossfeed.combine._cascade.flops_per_sample",
                        lambda est, X: 500.0 if isinstance(est, RandomForestClassifier) else 20.0)
    s = splits3
    c = Cascade(_members(), random_state=0).fit(s["X_tr"], s["y_tr"])
    assert c.costs_.tolist() == [500.0, 20.0] and c.order_.tolist() == [1, 0]


# ----------------------------------------------------------------- the search alone
def _synthetic_stages(n_stages: int, n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage k is right more often, and confidence predicts correctness."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(n_stages, n))
    skill = np.linspace(0.6, 0.95, n_stages)[:, None]
    correct = rng.uniform(size=(n_stages, n)) < skill * (0.5 + scores) / 1.5 + (1 - skill) * 0.3
    costs = np.geomspace(1.0, 30.0, n_stages)
    return scores, correct, costs


def test_cascade_outcomes_extremes() -> None:
    scores, correct, costs = _synthetic_stages(3)
    all_first = np.array([[-np.inf, -np.inf, -np.inf]])
    all_last = np.array([[np.inf, np.inf, -np.inf]])
    acc, cost, esc = cascade_outcomes(scores, correct, costs, np.vstack([all_first, all_last]))
    assert acc.tolist() == [correct[0].mean(), correct[-1].mean()]
    assert cost == pytest.approx([costs[0], costs.sum()])
    assert esc.tolist() == [0.0, 1.0]


def test_exhaustive_search_finds_the_cheapest_point_reaching_the_target() -> None:
    scores, correct, costs = _synthetic_stages(3)
    target = correct[-1].mean()
    res = search_thresholds(scores, correct, costs, target=target, n_candidates=20)
    assert res.exhaustive and res.accuracy >= target
    # brute force over the same grid
    grids = [_cascade_search.candidate_thresholds(scores[k], 20) for k in range(2)]
    pts = np.array([[a, b, -np.inf] for a in grids[0] for b in grids[1]])
    acc, cost, _ = cascade_outcomes(scores, correct, costs, pts)
    assert res.cost == pytest.approx(cost[acc >= target].min())


def test_coordinate_search_for_long_cascades(monkeypatch) -> None:
    scores, correct, costs = _synthetic_stages(5)
    monkeypatch.setattr(_cascade_search, "MAX_GRID", 10)  # force the coordinate search
    target = correct[-1].mean()
    res = search_thresholds(scores, correct, costs, target=target, n_candidates=20)
    assert not res.exhaustive
    assert res.accuracy >= target and res.cost < costs.sum()
    budget_res = search_thresholds(scores, correct, costs, budget=3.0, n_candidates=20)
    assert budget_res.cost <= 3.0 and budget_res.accuracy > correct[0].mean()
