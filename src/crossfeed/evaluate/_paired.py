"""Paired tests of "is model A not worse than model B by more than a margin?" on the same samples.

A model change (a new large model, a cascade) is judged on one held-out set where both models
answered every sample, so the per-sample differences ``d_i = 1[A right] - 1[B right]`` (in
``{-1, 0, 1}``) carry all the evidence: most are 0, and the paired tests below exploit it (an
unpaired comparison of the two accuracies would waste it). Each test returns the p-value of the
non-inferiority null

    H: E[d] <= -margin       (A is worse than B by more than ``margin``),

so a small p-value certifies "A loses at most ``margin`` accuracy against B".

- :func:`paired_bootstrap`: the paired percentile bootstrap (Efron & Tibshirani 1993, ch. 16):
  resample the samples with replacement, keeping pairs together; asymptotically valid.
- :func:`wsr_p_value`: the betting test of Waudby-Smith & Ramdas (JRSS-B 2024, arXiv 2010.09686),
  valid at every sample size for any bounded difference (more conservative).
- :func:`holm`: Holm's step-down adjustment (Holm 1979), so that many such tests (one per domain
  and candidate) keep a family-wise error rate: the chance that *any* certified "not worse" is
  false is at most the level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossfeed.exceptions import ValidationError

__all__ = ["PAIRED_TESTS", "PairedTest", "holm", "noninferiority", "paired_bootstrap", "wsr_p_value"]

#: The paired non-inferiority tests :func:`noninferiority` runs, by name.
PAIRED_TESTS = ("bootstrap", "wsr")


def wsr_p_value(losses: np.ndarray, epsilon: float, *, delta: float = 0.1, low: float = -1.0, high: float = 1.0,
                cap: float = 0.75) -> float:
    """Betting p-value of ``H: E[loss] > epsilon`` for losses bounded in ``[low, high]``.

    The losses are mapped to ``x`` in [0, 1] and tested against ``m``, the image of
    ``epsilon``. A gambler bets against the null: capital ``K_t = prod_{i <= t} (1 + lam_i (m -
    x_i))`` with ``lam_i >= 0`` chosen from the first ``i - 1`` samples only (the predictable
    plug-in rule of Waudby-Smith & Ramdas, tuned for level ``delta``). Under the null the capital
    is a non-negative supermartingale, so by Ville's inequality ``p = min(1, 1 / max_t K_t)`` is a
    valid p-value. The samples are used in the order given (shuffle them beforehand if their
    order carries information).

    Parameters
    ----------
    losses : array of shape (n_samples,), values in ``[low, high]``.
    epsilon : the risk level tested, strictly inside ``(low, high)``.
    delta : the level the bets are tuned for (any level gives a valid p-value).
    low, high : the bounds of the loss.
    cap : the largest bet as a share of the largest safe one, in (0, 1).

    Returns
    -------
    float in (0, 1].

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> safe = rng.choice([-1, 0, 1], size=2000, p=[0.03, 0.96, 0.01])   # mean loss -0.02
    >>> wsr_p_value(safe, 0.005) < 0.01
    True
    >>> risky = rng.choice([-1, 0, 1], size=2000, p=[0.01, 0.96, 0.03])  # mean loss +0.02
    >>> wsr_p_value(risky, 0.005)
    1.0
    """
    x = (np.asarray(losses, dtype=float) - low) / (high - low)
    if x.size == 0:
        return 1.0
    m = (epsilon - low) / (high - low)
    t = np.arange(1, x.size + 1)
    mean = (0.5 + np.cumsum(x)) / (t + 1)  # running mean after sample t, shrunk towards 1/2
    # running variance before sample t (only past samples choose the bet): 1/4 before any sample
    var_prev = np.concatenate([[0.25], (0.25 + np.cumsum((x - mean) ** 2)[:-1]) / t[:-1]])
    lam = np.minimum(np.sqrt(2.0 * np.log(1.0 / delta) / (x.size * var_prev)), cap / (1.0 - m))
    log_capital = np.cumsum(np.log1p(lam * (m - x)))
    return float(min(1.0, np.exp(-max(0.0, log_capital.max()))))


def paired_bootstrap(differences: np.ndarray, margin: float, *, resamples: int = 2000,
                     rng: np.random.Generator | int | None = 0) -> tuple[float, np.ndarray]:
    """Paired bootstrap p-value of ``H: E[d] <= -margin`` and the bootstrap means.

    ``p = (1 + #{b : mean(d*_b) <= -margin}) / (resamples + 1)``: the share of resampled mean
    differences at or below the null's boundary (the "+1" keeps it a valid p-value at finite
    ``resamples``). ``p <= alpha`` exactly when the one-sided ``1 - alpha`` percentile lower
    bound of the mean difference lies above ``-margin``.

    Parameters
    ----------
    differences : array of shape (n_samples,): ``1[A right] - 1[B right]`` per sample.
    margin : the tolerated loss, >= 0 (0.01 = one point of accuracy).
    resamples : bootstrap resamples.
    rng : seed or generator of the resampling.

    Returns
    -------
    (p_value, means) with ``means`` the ``resamples`` bootstrap mean differences.

    Example
    -------
    >>> d = np.r_[np.ones(30), -np.ones(10), np.zeros(460)]      # A fixes 30 errors, makes 10
    >>> p, _ = paired_bootstrap(d, 0.01)
    >>> p < 0.01                                                # certainly not worse by 1 point
    True
    """
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return 1.0, np.empty(0)
    generator = np.random.default_rng(rng)
    counts = generator.multinomial(d.size, np.full(d.size, 1.0 / d.size), size=resamples)
    means = counts @ d / d.size
    p = (1.0 + np.count_nonzero(means <= -margin + 1e-12)) / (resamples + 1.0)
    return float(p), means


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values: reject ``H_i`` at family-wise level ``alpha`` iff ``adj_i <= alpha``.

    ``adj_(k) = max_{j <= k} min(1, (m - j + 1) p_(j))`` over the p-values sorted ascending.

    Example
    -------
    >>> holm(np.array([0.01, 0.04, 0.03])).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """One non-inferiority test of model A against model B on the same samples.

    Attributes
    ----------
    test : "bootstrap" or "wsr".
    n : samples both models answered.
    accuracy_a, accuracy_b : their accuracies on them.
    difference : ``accuracy_a - accuracy_b``.
    lower, upper : two-sided ``confidence`` interval of the difference (paired bootstrap
        percentiles; reported for both tests).
    margin : the tolerated loss of A against B.
    p_value : p-value of ``H: A worse than B by more than margin`` (before any correction).
    """

    test: str
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    lower: float
    upper: float
    margin: float
    p_value: float

    def to_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def noninferiority(correct_a: np.ndarray, correct_b: np.ndarray, margin: float, *, test: str = "bootstrap",
                   confidence: float = 0.9, resamples: int = 2000,
                   rng: np.random.Generator | int | None = 0) -> PairedTest:
    """Is A not worse than B by more than ``margin``? A paired test on the samples both answered.

    Parameters
    ----------
    correct_a, correct_b : bool arrays of shape (n_samples,): whether A / B is right on each sample.
    margin : tolerated accuracy loss of A against B, in [0, 1).
    test : "bootstrap" (:func:`paired_bootstrap`) or "wsr" (:func:`wsr_p_value`, finite-sample valid).
    confidence : of the reported interval (and the level the WSR bets are tuned for).
    resamples : bootstrap resamples.
    rng : seed or generator of the resampling.

    Example
    -------
    >>> a = np.r_[np.ones(450, bool), np.zeros(50, bool)]
    >>> t = noninferiority(a, a.copy(), 0.01)         # the same model: difference 0, tiny p
    >>> t.difference, t.p_value < 0.01
    (0.0, True)
    """
    if test not in PAIRED_TESTS:
        raise ValidationError(f"test must be one of {', '.join(PAIRED_TESTS)}; got {test!r}")
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValidationError(
            f"correct_a and correct_b must be 1-d and the same length (one entry per sample both models answered); "
            f"got shapes {a.shape} and {b.shape}"
        )
    if not 0.0 <= margin < 1.0:
        raise ValidationError(f"margin must be in [0, 1) (a fraction: 0.01 = one point); got {margin!r}")
    if not 0.0 < confidence < 1.0:
        raise ValidationError(f"confidence must be strictly between 0 and 1; got {confidence!r}")
    d = a.astype(np.int8) - b.astype(np.int8)
    p, means = paired_bootstrap(d, margin, resamples=resamples, rng=rng)
    if test == "wsr":
        p = wsr_p_value(-d, margin, delta=1.0 - confidence) if d.size else 1.0
    tail = (1.0 - confidence) / 2.0
    lower, upper = (np.quantile(means, [tail, 1.0 - tail]) if means.size else (np.nan, np.nan))
    return PairedTest(test, int(d.size), float(a.mean()) if a.size else float("nan"),
                      float(b.mean()) if b.size else float("nan"), float(d.mean()) if d.size else float("nan"),
                      float(lower), float(upper), float(margin), float(p))
