"""Temperature scaling (Guo et al. 2017) alone and inside the ensembles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from crossfeed.combine import (
    Cascade,
    StackingEnsemble,
    TemperatureScaler,
    WeightedEnsemble,
    fit_temperature,
    mean_log_loss,
)
from crossfeed.exceptions import NotFittedError, ValidationError


def _calibrated_logits(n: int = 4000, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution (labels are sampled from it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, k))
    p = softmax(logits, axis=1)
    y = np.array([rng.choice(k, p=row) for row in p])
    return logits, y


def test_fit_temperature_is_one_on_calibrated_inputs() -> None:
    logits, y = _calibrated_logits()
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.08)


def test_overconfident_probabilities_get_t_above_one_and_lower_nll() -> None:
    logits, y = _calibrated_logits()
    overconfident = softmax(3.0 * logits, axis=1)
    scaler = TemperatureScaler().fit(overconfident, y)
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.1)
    calibrated = scaler.transform(overconfident)
    assert mean_log_loss(calibrated, y) < mean_log_loss(overconfident, y) - 0.1
    assert np.array_equal(calibrated.argmax(axis=1), overconfident.argmax(axis=1))  # accuracy unchanged
    assert calibrated.sum(axis=1) == pytest.approx(1.0)


def test_underconfident_logits_get_t_below_one() -> None:
    logits, y = _calibrated_logits()
    scaler = TemperatureScaler(input="logits").fit(logits / 2.0, y)
    assert scaler.temperature_ == pytest.approx(0.5, rel=0.1)


def test_temperature_scaler_errors() -> None:
    logits, y = _calibrated_logits(n=50)
    with pytest.raises(NotFittedError):
        TemperatureScaler().transform(softmax(logits, axis=1))
    with pytest.raises(ValidationError, match="class indices"):
        TemperatureScaler().fit(softmax(logits, axis=1), y + 10)
    with pytest.raises(ValidationError, match="NaN"):
        fit_temperature(np.full((3, 2), np.nan), np.array([0, 1, 0]))
    with pytest.raises(ValidationError, match="input"):
        TemperatureScaler(input="probability").fit(softmax(logits, axis=1), y)
    with pytest.raises(ValidationError, match="classes"):
        TemperatureScaler().fit(softmax(logits, axis=1), y).transform(np.full((2, 3), 1 / 3))


def _overconfident_members() -> list:
    # a fully grown tree predicts 0/1 probabilities: very overconfident on held-out data
    return [("tree", DecisionTreeClassifier(random_state=0)), ("lr", LogisticRegression())]


def test_calibrate_lowers_the_overconfident_members_loss(splits3) -> None:
    s = splits3
    fitted = [(n, m.fit(s["X_tr"], s["y_tr"])) for n, m in _overconfident_members()]
    plain = WeightedEnsemble(fitted, prefit=True).fit(s["X_val"], s["y_val"])
    calibrated = WeightedEnsemble(fitted, prefit=True, calibrate=True).fit(s["X_val"], s["y_val"])
    assert plain.temperatures_ is None
    assert calibrated.temperatures_.shape == (2,)
    assert calibrated.temperatures_[0] > 1.5  # the tree is overconfident
    assert calibrated.member_log_losses_[0] < plain.member_log_losses_[0] - 0.5
    assert calibrated.validation_log_loss_ <= calibrated.member_log_losses_.min() + 1e-9


def test_calibrate_in_stacking_and_cascade(splits3) -> None:
    s = splits3
    st = StackingEnsemble(_overconfident_members(), cv=3, calibrate=True, random_state=0).fit(s["X_tr"], s["y_tr"])
    assert st.temperatures_.shape == (2,) and st.temperatures_[0] > 1.5
    c = Cascade(_overconfident_members(), costs=[2.0, 1.0], calibrate=True, random_state=0).fit(s["X_tr"], s["y_tr"])
    assert c.temperatures_.shape == (2,) and c.temperatures_[0] > 1.5  # members order, not stage order
    proba, _ = c.predict_with_stages(s["X_te"])
    assert proba.max() < 1.0  # the tree's one-hot rows were softened
