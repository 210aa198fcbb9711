"""Risk control for cascades: thresholds whose accuracy loss is guaranteed on unseen data.

A cascade calibrated to "reach the large model's validation accuracy" overfits its validation
data: the chosen thresholds sit where validation noise happened to favour them, and on test data
the cascade lands below the large model. Learn then Test (Angelopoulos, Bates, Candès, Jordan,
Lei, "Learn then Test: Calibrating Predictive Algorithms to Achieve Risk Control", arXiv
2110.01052) turns the choice into multiple hypothesis testing: for every candidate configuration
``c`` (a ladder of members with its thresholds) test

    H_c : R(c) > epsilon,   R(c) = accuracy(reference) - accuracy(cascade c),

on calibration data, and keep only configurations whose null is rejected. With a family-wise
error rate ``delta`` over the tests, every kept configuration, and so the cheapest of them,
satisfies ``P(R(c) <= epsilon) >= 1 - delta`` over the draw of the calibration data, for new data
from the same distribution.

The configurations have no natural order when a cascade has more than two stages, so this module
follows Pareto Testing (Laufer-Goldshtein, Fisch, Barzilay, Jaakkola, "Efficiently Controlling
Multiple Risks with Calibration Certificates", arXiv 2210.07913): one part of the calibration data
(``search``) proposes the accuracy-cost front and orders it by estimated risk; the other part
(``test``) tests the front in that order with fixed-sequence testing (each test at level
``delta``, stopping at the first that fails), which controls the family-wise error rate at
``delta`` without a Bonferroni correction.

Per-sample losses are ``L_i = 1[reference right] - 1[cascade right]`` in ``{-1, 0, 1}``: the net
accuracy drop, so a cascade whose small stages fix some of the large model's errors is credited
for it. Two p-values:

- ``"wsr"`` (default): the betting test of Waudby-Smith & Ramdas ("Estimating means of bounded
  random variables by betting", JRSS-B 2024, arXiv 2010.09686), valid for any bounded loss and
  adaptive to its variance; most losses are 0 here (the cascade agrees with the large model),
  which this test exploits.
- ``"binomial"``: the exact binomial tail of the conservative binary loss ``1[reference right
  and cascade wrong]`` (an upper bound of the net drop that ignores the errors the cascade fixes).

A configuration that sends every sample to the reference alone has loss 0 by construction and is
always kept (it is the fallback when nothing else can be certified).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from crossfeed.evaluate import wsr_p_value
from crossfeed.exceptions import ValidationError

__all__ = [
    "RISK_TESTS",
    "RiskCertificate",
    "accuracy_loss",
    "binomial_p_value",
    "fixed_sequence",
    "risk_p_value",
    "wsr_p_value",
]

#: The p-values a risk-controlled cascade accepts, by name.
RISK_TESTS = ("binomial", "wsr")


@dataclass(frozen=True)
class RiskCertificate:
    """What the risk control of a cascade promised and what it measured on its calibration data.

    Attributes
    ----------
    epsilon, delta : the promise: accuracy loss against the reference <= ``epsilon`` with
        probability >= ``1 - delta``.
    test : the p-value used ("wsr" or "binomial").
    n_search, n_test : calibration samples that proposed the front / tested it.
    n_tested : hypotheses tested before the first failure (or the end of the front).
    n_certified : configurations certified (the tested ones with p-value <= delta).
    p_value : p-value of the chosen configuration (0.0 for the reference alone, whose loss is 0
        by construction).
    test_loss : the chosen configuration's mean loss on the test part of the calibration data.
    fallback : True when nothing but the reference alone could be certified.
    """

    epsilon: float
    delta: float
    test: str
    n_search: int
    n_test: int
    n_tested: int
    n_certified: int
    p_value: float
    test_loss: float
    fallback: bool

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Plain JSON-ready fields."""
        return dict(self.__dict__)


def check_risk_level(value: object, name: str) -> float:
    """``value`` as a float strictly inside (0, 1), or a ``ValidationError`` saying so."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not 0.0 < float(value) < 1.0:
        raise ValidationError(
            f"{name} must be a number strictly between 0 and 1 (a fraction: 0.005 = half a point of accuracy); "
            f"got {value!r}"
        )
    return float(value)


def accuracy_loss(correct: np.ndarray, reference_correct: np.ndarray) -> np.ndarray:
    """Per-sample net accuracy loss against a reference: ``1[reference right] - 1[right]``.

    Parameters
    ----------
    correct : bool array of shape (..., n_samples), whether the cascade is right.
    reference_correct : bool array of shape (n_samples,), whether the reference is right.

    Returns
    -------
    int array of the broadcast shape, values in {-1, 0, 1}; its mean is the accuracy drop.

    Example
    -------
    >>> accuracy_loss(np.array([True, False, True]), np.array([True, True, False])).tolist()
    [0, 1, -1]
    """
    return np.asarray(reference_correct, dtype=np.int8) - np.asarray(correct, dtype=np.int8)


def binomial_p_value(losses: np.ndarray, epsilon: float) -> float:
    """Exact p-value of ``H: P(loss = 1) > epsilon`` for the binary loss ``losses > 0``.

    Only the samples where the reference is right and the cascade wrong count as losses; the
    net drop is at most their rate, so rejecting this null also bounds the net drop.

    Parameters
    ----------
    losses : array of shape (n_samples,) of per-sample losses (see :func:`accuracy_loss`).
    epsilon : the risk level tested, in (0, 1).

    Returns
    -------
    ``P(Binomial(n, epsilon) <= k)`` with ``k`` the number of positive losses.

    Example
    -------
    >>> round(binomial_p_value(np.zeros(3000), 0.001), 4)  # 3000 samples, no loss at all
    0.0497
    """
    losses = np.asarray(losses)
    k = int(np.count_nonzero(losses > 0))
    return float(binom.cdf(k, losses.size, epsilon))


def risk_p_value(test: str, losses: np.ndarray, epsilon: float, delta: float) -> float:
    """The p-value named ``test`` ("wsr" or "binomial") of ``H: risk > epsilon``."""
    if test == "binomial":
        return binomial_p_value(losses, epsilon)
    return wsr_p_value(losses, epsilon, delta=delta)


def fixed_sequence(p_values: np.ndarray, delta: float) -> int:
    """Number of leading hypotheses rejected by fixed-sequence testing at level ``delta``.

    The hypotheses are tested in the given order, each at level ``delta``, stopping at the first
    p-value above it; the family-wise error rate of the rejected prefix is at most ``delta``
    (the order must not depend on the data the p-values come from).

    Example
    -------
    >>> fixed_sequence(np.array([0.01, 0.04, 0.2, 0.01]), 0.05)
    2
    """
    above = np.flatnonzero(np.asarray(p_values) > delta)
    return int(above[0]) if above.size else len(p_values)
