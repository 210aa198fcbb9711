"""Risk-controlled cascades (Learn then Test) and automatic ladders."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.base import BaseEstimator, ClassifierMixin

from crossfeed.combine import Cascade
from crossfeed.combine._risk import accuracy_loss, binomial_p_value, fixed_sequence, wsr_p_value
from crossfeed.exceptions import ValidationError


class Lookup(ClassifierMixin, BaseEstimator):
    """A fixed model of a synthetic population: column 0 of X is the sample's row in ``table``."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table

    def fit(self, X: Any, y: Any) -> Lookup:
        self.classes_ = np.arange(self.table.shape[1])
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.table[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def population() -> dict[str, Any]:
    """40,000 samples, 4 classes; a cheap model (about 79% right), a useless costlier one, the reference (about 97%)."""
    rng = np.random.default_rng(0)
    n, k = 40_000, 4
    y = rng.integers(0, k, n)
    shared = rng.normal(size=(n, k))  # hard samples are hard for every model
    onehot = np.eye(k)[y]
    cheap = _softmax(2.0 * onehot + 0.7 * shared + 0.8 * rng.normal(size=(n, k)))
    useless = _softmax(1.0 * onehot + 0.7 * shared + 1.2 * rng.normal(size=(n, k)))
    reference = _softmax(2.8 * onehot + 0.7 * shared + 0.5 * rng.normal(size=(n, k)))
    models = {name: Lookup(t).fit(None, None) for name, t in
              [("cheap", cheap), ("useless", useless), ("reference", reference)]}
    return {"X": np.arange(n)[:, None], "y": y, "models": models}


def _draw(population: dict[str, Any], rng: np.random.Generator, n_cal: int, n_test: int):
    idx = rng.permutation(population["y"].size)
    cal, test = idx[:n_cal], idx[n_cal : n_cal + n_test]
    X, y = population["X"], population["y"]
    return X[cal], y[cal], X[test], y[test]


def test_certified_cascade_keeps_its_promise_where_plain_calibration_does_not(population) -> None:
    """Over many calibration draws the certified loss bound fails at most about delta of the time, while
    calibrating the same cascade to "reference accuracy minus epsilon" on validation fails about half the time."""
    m = population["models"]
    members = [("cheap", m["cheap"]), ("reference", m["reference"])]
    epsilon, delta, rng = 0.01, 0.1, np.random.default_rng(1)
    certified_fails, plain_fails, cheaper = 0, 0, 0
    draws = 40
    for seed in range(draws):
        X_cal, y_cal, X_te, y_te = _draw(population, rng, 2000, 8000)
        ref_test = float((m["reference"].predict(X_te) == y_te).mean())
        ref_cal = float((m["reference"].predict(X_cal) == y_cal).mean())
        certified = Cascade(members, costs=[1.0, 10.0], epsilon=epsilon, delta=delta, prefit=True,
                            random_state=seed).fit(X_cal, y_cal)
        plain = Cascade(members, costs=[1.0, 10.0], target_accuracy=ref_cal - epsilon, prefit=True,
                        random_state=seed).fit(X_cal, y_cal)
        certified_fails += ref_test - float((certified.predict(X_te) == y_te).mean()) > epsilon
        plain_fails += ref_test - float((plain.predict(X_te) == y_te).mean()) > epsilon
        cheaper += certified.expected_cost(X_te) < 10.0
    assert certified_fails / draws <= delta + 0.075  # binomial slack over 40 draws
    assert plain_fails / draws >= 0.25
    assert cheaper >= draws // 2  # and it is not the reference alone every time


def test_certificate_records_the_promise(population) -> None:
    m = population["models"]
    X_cal, y_cal, _, _ = _draw(population, np.random.default_rng(2), 3000, 1)
    cascade = Cascade([("cheap", m["cheap"]), ("reference", m["reference"])], costs=[1.0, 10.0], epsilon=0.02,
                      delta=0.05, prefit=True, random_state=0).fit(X_cal, y_cal)
    cert = cascade.certificate_
    assert (cert.epsilon, cert.delta, cert.test) == (0.02, 0.05, "wsr")
    assert cert.n_search + cert.n_test == 3000 and cert.n_certified >= 1 and not cert.fallback
    assert cert.p_value <= 0.05 and cert.n_tested in (cert.n_certified, cert.n_certified + 1)
    assert cascade.thresholds_.shape == cascade.order_.shape and np.isneginf(cascade.thresholds_[-1])
    assert set(cert.to_dict()) >= {"epsilon", "delta", "p_value", "test_loss", "fallback"}


def test_nothing_certifiable_falls_back_to_the_reference_alone(population, caplog) -> None:
    m = population["models"]
    X_cal, y_cal, X_te, _ = _draw(population, np.random.default_rng(3), 200, 500)
    with caplog.at_level(logging.WARNING, logger="crossfeed.combine._cascade"):
        cascade = Cascade([("cheap", m["cheap"]), ("reference", m["reference"])], costs=[1.0, 10.0], epsilon=0.001,
                          risk_test="binomial", prefit=True, random_state=0).fit(X_cal, y_cal)
    assert cascade.certificate_.fallback and "reference alone answers" in caplog.text
    assert cascade.order_.tolist() == [1] and cascade.expected_cost(X_te) == pytest.approx(10.0)


def test_auto_ladder_drops_a_member_that_does_not_pay(population) -> None:
    m = population["models"]
    X_cal, y_cal, X_te, y_te = _draw(population, np.random.default_rng(4), 4000, 4000)
    members = [("cheap", m["cheap"]), ("useless", m["useless"]), ("reference", m["reference"])]
    kwargs = {"costs": [1.0, 4.0, 10.0], "prefit": True, "random_state": 0}
    every = Cascade(members, **kwargs).fit(X_cal, y_cal)
    auto = Cascade(members, stages="auto", **kwargs).fit(X_cal, y_cal)
    assert [n for n, _ in members if n != "useless"] == [members[i][0] for i in auto.order_]
    assert auto.expected_cost_ <= every.expected_cost_ + 1e-9
    assert auto.validation_accuracy_ >= auto.target_accuracy_ - 1e-9
    names = {tuple(d["members"]) for d in auto.ladders_}
    assert names == {("reference",), ("cheap", "reference"), ("useless", "reference"),
                     ("cheap", "useless", "reference")}
    # the ladder it kept never runs the useless member
    _, stage = auto.predict_with_stages(X_te[:50])
    assert set(stage.tolist()) <= {0, 1}


def test_max_stages_bounds_the_ladders(population) -> None:
    m = population["models"]
    X_cal, y_cal, _, _ = _draw(population, np.random.default_rng(5), 1000, 1)
    members = [("cheap", m["cheap"]), ("useless", m["useless"]), ("reference", m["reference"])]
    cascade = Cascade(members, costs=[1.0, 4.0, 10.0], stages="auto", max_stages=2, prefit=True).fit(X_cal, y_cal)
    assert all(len(d["members"]) <= 2 for d in cascade.ladders_) and len(cascade.ladders_) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0}, "epsilon must be a number strictly between 0 and 1"),
        ({"epsilon": 1.0}, "epsilon must be a number strictly between 0 and 1"),
        ({"epsilon": -0.1}, "epsilon must be"),
        ({"epsilon": 0.01, "delta": 1.5}, "delta must be"),
        ({"epsilon": 0.01, "target_accuracy": 0.9}, "at most one goal"),
        ({"epsilon": 0.01, "budget": 3.0}, "at most one goal"),
        ({"epsilon": 0.01, "risk_test": "hoeffding"}, "risk_test must be one of"),
        ({"stages": "some"}, "stages must be one of"),
        ({"stages": "auto", "max_stages": 1}, "max_stages must be an integer >= 2"),
    ],
)
def test_bad_goals_are_refused(population, kwargs, match) -> None:
    m = population["models"]
    cascade = Cascade([("cheap", m["cheap"]), ("reference", m["reference"])], costs=[1.0, 10.0], prefit=True,
                      **kwargs)
    with pytest.raises(ValidationError, match=match):
        cascade.fit(population["X"][:100], population["y"][:100])


def test_wsr_p_value_is_valid_at_the_boundary_and_powerful_away_from_it() -> None:
    rng = np.random.default_rng(0)
    epsilon, delta, n = 0.01, 0.1, 1500
    # mean loss exactly epsilon: P(-1) = 0.02, P(+1) = 0.03
    at_null = [wsr_p_value(rng.choice([-1, 0, 1], size=n, p=[0.02, 0.95, 0.03]), epsilon, delta=delta)
               for _ in range(400)]
    assert np.mean(np.array(at_null) <= delta) <= delta + 0.03
    safe = [wsr_p_value(rng.choice([-1, 0, 1], size=n, p=[0.03, 0.96, 0.01]), epsilon, delta=delta)
            for _ in range(100)]
    assert np.mean(np.array(safe) <= delta) >= 0.9
    assert wsr_p_value(np.ones(100), epsilon) == 1.0 and wsr_p_value(np.array([]), epsilon) == 1.0


def test_binomial_p_value_counts_only_losses() -> None:
    losses = np.array([1, 0, -1, 0, 1] * 200)  # 400 losses in 1000
    assert binomial_p_value(losses, 0.5) == pytest.approx(binom.cdf(400, 1000, 0.5))
    assert binomial_p_value(np.zeros(3000), 0.001) == pytest.approx(0.999**3000)


def test_accuracy_loss_and_fixed_sequence() -> None:
    assert accuracy_loss(np.array([[True, False]]), np.array([False, True])).tolist() == [[-1, 1]]
    assert fixed_sequence(np.array([0.2, 0.01]), 0.05) == 0
    assert fixed_sequence(np.array([0.01, 0.02]), 0.05) == 2
    assert fixed_sequence(np.array([]), 0.05) == 0
