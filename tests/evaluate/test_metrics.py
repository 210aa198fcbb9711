import numpy as np
import pytest

from crossfeed.evaluate import accuracy, cost_to_match, ece, label_indices, nll, normalized_auc, score_all
from crossfeed.exceptions import LabelMismatchError, ValidationError


def test_metrics_on_known_values():
    y = np.array([0, 1, 1])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert accuracy(y, p) == pytest.approx(2 / 3)
    assert nll(y, p) == pytest.approx(-(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3)
    # bins: 0.9 (correct), 0.8 (correct), 0.6 (wrong) -> |1-.9|/3 + |1-.8|/3 + |0-.6|/3
    assert ece(y, p, n_bins=10) == pytest.approx((0.1 + 0.2 + 0.6) / 3)
    assert set(score_all(y, p)) == {"accuracy", "nll", "ece"}


def test_perfectly_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20000)
    y = (rng.uniform(size=conf.size) > conf).astype(int)  # class 0 correct with probability conf
    p = np.column_stack([conf, 1 - conf])
    assert ece(y, p) < 0.02
    assert ece(np.ones_like(y), p) > 0.5


def test_cost_to_match_and_auc():
    m = cost_to_match([1, 3, 10], [0.80, 0.899, 0.90], reference_accuracy=0.90, reference_cost=10)
    assert m.fraction == pytest.approx(0.3) and m.accuracy == 0.899
    none = cost_to_match([1, 3], [0.5, 0.6], reference_accuracy=0.9, reference_cost=10)
    assert none.fraction is None
    # a curve that reaches the large accuracy only at the large cost adds no area
    assert normalized_auc([1, 10], [0.8, 0.9], small=(1, 0.8), large=(10, 0.9)) < 0.01
    # a curve that jumps to the large accuracy right away covers the whole rectangle
    assert normalized_auc([1, 1.0001, 10], [0.8, 0.9, 0.9], small=(1, 0.8), large=(10, 0.9)) > 0.99


def test_label_indices_and_bad_input():
    assert label_indices(["b", "a"], ["a", "b"]).tolist() == [1, 0]
    with pytest.raises(LabelMismatchError):
        label_indices([3], [0, 1])
    with pytest.raises(ValidationError, match="shape"):
        accuracy([0, 1], np.ones((3, 2)))
    with pytest.raises(ValidationError, match="NaN"):
        nll([0], np.array([[np.nan, 1.0]]))


def test_spread_is_median_min_max_and_refuses_nothing() -> None:
    from crossfeed.evaluate import spread

    assert spread([3, 1, 2, 10]) == {"median": 2.5, "min": 1.0, "max": 10.0}
    with pytest.raises(ValidationError, match="at least one value"):
        spread([])
