"""APGR (RouteLLM's average performance gap recovered): reference values and bad input."""

import numpy as np
import pytest

from crossfeed.evaluate import apgr
from crossfeed.exceptions import ValidationError

WEAK, STRONG = 0.6, 0.8


def test_random_routing_scores_one_half() -> None:
    rates = np.linspace(0, 1, 11)
    assert apgr(rates, WEAK + rates * (STRONG - WEAK), weak_accuracy=WEAK, strong_accuracy=STRONG) == pytest.approx(0.5)
    # the endpoints alone (an empty curve) are random routing too; the points' order does not matter
    assert apgr([], [], weak_accuracy=WEAK, strong_accuracy=STRONG) == pytest.approx(0.5)
    assert apgr(rates[::-1], (WEAK + rates * (STRONG - WEAK))[::-1], weak_accuracy=WEAK,
                strong_accuracy=STRONG) == pytest.approx(0.5)


def test_oracle_curve_scores_close_to_one() -> None:
    # strong accuracy reached with 1% of the calls: the area is 0.01 / 2 + 0.99
    score = apgr([0.01, 0.5, 1.0], [STRONG, STRONG, STRONG], weak_accuracy=WEAK, strong_accuracy=STRONG)
    assert score == pytest.approx(0.995)
    assert score > 0.99


def test_known_value_and_running_maximum() -> None:
    # PGR 0 -> 1 at rate 0.2, then a worse point at 0.6 that the running maximum ignores
    assert apgr([0.2, 0.6], [0.8, 0.7], weak_accuracy=WEAK, strong_accuracy=STRONG) == pytest.approx(0.9)
    # a router no better than the weak model until it calls the strong one for everything
    assert apgr([0.5], [WEAK], weak_accuracy=WEAK, strong_accuracy=STRONG) == pytest.approx(0.25)
    # beating the strong model scores above 1
    assert apgr([0.1], [0.9], weak_accuracy=WEAK, strong_accuracy=STRONG) > 1


@pytest.mark.parametrize(
    ("rates", "accs", "weak", "strong", "match"),
    [
        ([0.5], [0.7], 0.7, 0.7, "strong_accuracy > weak_accuracy"),
        ([0.5], [0.7], 0.8, 0.6, "swapped"),
        ([1.5], [0.7], WEAK, STRONG, r"in \[0, 1\]"),
        ([-0.1], [0.7], WEAK, STRONG, r"in \[0, 1\]"),
        ([0.2, 0.5], [0.7], WEAK, STRONG, "equally long"),
        ([np.nan], [0.7], WEAK, STRONG, "finite"),
        ([0.5], [0.7], WEAK, np.inf, "finite"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(rates, accs, weak, strong, match) -> None:
    with pytest.raises(ValidationError, match=match):
        apgr(rates, accs, weak_accuracy=weak, strong_accuracy=strong)
