"""The gate: paired non-inferiority tests, Holm's correction, and per-domain serving decisions."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.config import GateConfig
from crossfeed.cycle import ServedRef, decide
from crossfeed.evaluate import holm, noninferiority, paired_bootstrap
from crossfeed.exceptions import ValidationError

OLD, NEW = ServedRef("large g0", "gen-000/large"), ServedRef("large g1", "gen-001/large")


def _pair(rng, n, acc_b, delta, discordant=0.12):
    """Correctness of B (accuracy acc_b) and of A, differing from B on about ``discordant`` of the
    samples, A's accuracy acc_b + delta."""
    b = rng.random(n) < acc_b
    a = b.copy()
    flip_up = (~b) & (rng.random(n) < (discordant / 2 + delta / 2) / max(1e-9, 1 - acc_b))
    flip_down = b & (rng.random(n) < (discordant / 2 - delta / 2) / acc_b)
    a[flip_up], a[flip_down] = True, False
    return a, b


def test_holm_controls_the_family_and_is_no_weaker_than_bonferroni():
    p = np.array([0.001, 0.02, 0.03, 0.2])
    adj = holm(p)
    assert adj.tolist() == pytest.approx([0.004, 0.06, 0.06, 0.2])
    assert np.all(adj <= np.minimum(1, p * p.size)) and np.all(adj >= p)


@pytest.mark.parametrize("test", ["bootstrap", "wsr"])
def test_noninferiority_rejects_rarely_at_the_boundary_and_often_when_clearly_better(test):
    rng = np.random.default_rng(1)
    margin, alpha, n = 0.02, 0.1, 600
    at_boundary = [noninferiority(*_pair(rng, n, 0.8, -margin), margin, test=test, resamples=500, rng=k).p_value
                   for k in range(150)]
    better = [noninferiority(*_pair(rng, n, 0.8, 0.03), margin, test=test, resamples=500, rng=k).p_value
              for k in range(40)]
    rate = np.mean(np.array(at_boundary) <= alpha)
    assert rate <= alpha + 0.06, f"type-I rate {rate:.3f} at the boundary exceeds {alpha}"
    assert np.mean(np.array(better) <= alpha) >= 0.8


def test_noninferiority_reports_the_paired_difference_and_refuses_bad_input():
    a = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    b = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    t = noninferiority(a, b, 0.01)
    assert (t.n, t.accuracy_a, t.accuracy_b, t.difference) == (100, 0.6, 0.5, pytest.approx(0.1))
    assert t.lower <= 0.1 <= t.upper
    p, means = paired_bootstrap(a.astype(int) - b.astype(int), 0.01, resamples=300)
    assert means.shape == (300,) and p == t.p_value or 0 < p <= 1
    with pytest.raises(ValidationError, match="same length"):
        noninferiority(a, b[:10], 0.01)
    with pytest.raises(ValidationError, match="margin"):
        noninferiority(a, b, -0.1)
    with pytest.raises(ValidationError, match="test must be one of"):
        noninferiority(a, b, 0.01, test="z")


def _correct(rng, accs: dict[tuple[str, str], float], n: int = 800) -> dict[tuple[str, str], np.ndarray]:
    base = rng.random(n)
    return {key: base < acc for key, acc in accs.items()}  # nested: the better model is right wherever the worse is


def test_a_domain_switches_only_to_a_certified_better_model():
    rng = np.random.default_rng(0)
    expert = {d: ServedRef(f"expert:{d} g1", f"gen-001/experts/{d}") for d in ("noisy", "shifted")}
    accs = {(OLD.label, "default"): 0.95, (NEW.label, "default"): 0.90,        # the new large model forgot
            (OLD.label, "noisy"): 0.60, (NEW.label, "noisy"): 0.75, (expert["noisy"].label, "noisy"): 0.85}
    correct = _correct(rng, accs)
    # on shifted the candidates differ from the old model on a fifth of the samples, both ways, and
    # gain about half a point: noise on 800 samples, not a certified improvement
    new, old = _pair(rng, 800, 0.70, 0.005, discordant=0.2)
    ex, _ = _pair(np.random.default_rng(5), 800, 0.70, 0.005, discordant=0.2)
    correct |= {(OLD.label, "shifted"): old, (NEW.label, "shifted"): new, (expert["shifted"].label, "shifted"): ex}
    served = {d: OLD for d in ("default", "noisy", "shifted")}
    options = {"default": [NEW], "noisy": [NEW, expert["noisy"]], "shifted": [NEW, expert["shifted"]]}
    out = decide(GateConfig(margin=0.01), served, correct, options, NEW, OLD, seed=0)
    assert out.served["default"] == OLD                 # worse: keeps the model it had
    assert out.served["noisy"] == expert["noisy"]       # the best certified candidate serves
    assert out.served["shifted"] == OLD                 # a half-point gain is not certified on 800 samples
    chosen = [x for x in out.decisions if x.chosen]
    assert [(x.domain, x.candidate) for x in chosen] == [("noisy", expert["noisy"].label)]
    assert all(x.p_adjusted >= x.p_value for x in out.decisions)
    assert out.advanced  # mean gate accuracy rose


def test_without_routing_round_one_rule_keeps_the_old_large_model_when_any_domain_loses():
    rng = np.random.default_rng(0)
    accs = {(OLD.label, "a"): 0.9, (NEW.label, "a"): 0.85, (OLD.label, "b"): 0.5, (NEW.label, "b"): 0.9}
    served = {"a": OLD, "b": OLD}
    options = {"a": [NEW], "b": [NEW]}
    round1 = GateConfig(test="tolerance", margin=0.02, route=False, holdout=0.0, advance="all")
    out = decide(round1, served, _correct(rng, accs), options, NEW, OLD, seed=0)
    assert not out.advanced and out.served == served
    ungated = decide(GateConfig(test="none", route=False, holdout=0.0, advance="all"), served,
                     _correct(rng, accs), options, NEW, OLD, seed=0)
    assert ungated.advanced and ungated.served == {"a": NEW, "b": NEW}
