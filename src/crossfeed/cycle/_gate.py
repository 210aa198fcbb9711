"""The gate: which large model goes on, and which model answers each domain, with a stated guarantee.

Each generation ends with candidates per domain (the new large model, the domain's new expert)
and the model that serves the domain now. On the gate's held-out data of the domain, a candidate
replaces the served model only when

1. it is more accurate there, and
2. a paired non-inferiority test (:func:`crossfeed.evaluate.noninferiority`) rejects "it is worse
   than the served model by more than ``margin``" at family-wise level ``1 - confidence``, over
   every (domain, candidate) test of the generation (Holm or Bonferroni).

So with probability at least ``confidence`` (over the draw of the gate data), no domain's served
accuracy falls by more than ``margin`` in a generation: a switch is made only where it is
certified, and a domain without a certified improvement keeps the model it had. Among several
certified candidates the most accurate on the gate data serves (all are certified together).

Without ``route`` the large model that goes on answers every domain (round 1), and the
guarantee holds only with ``advance: all`` and a statistical test. Separately, the large model
the next generation starts from *advances* to the new one under
``advance: mean`` unless its mean gate accuracy over domains is below the previous large model's,
or under ``advance: all`` only if it passes the test against the previous large model on every
domain (round 1's rule with ``test: tolerance``). Which large model goes on steers learning; the
guarantee is about what is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossfeed.config import GateConfig
from crossfeed.evaluate import PairedTest, holm, noninferiority

__all__ = ["Decision", "GateOutcome", "ServedRef", "decide"]


@dataclass(frozen=True)
class ServedRef:
    """A model of the run: ``label`` as the report prints it ("large g2", "expert:noisy g1") and its
    checkpoint folder relative to the seed's run folder ("gen-002/large")."""

    label: str
    path: str

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "path": self.path}


@dataclass(frozen=True)
class Decision:
    """One test of the gate: ``candidate`` against ``reference`` on ``domain``'s gate data.

    ``purpose`` is "serve" (may the candidate answer the domain?) or "advance" (the new large
    model against the previous one). ``passed``: the test (after correction) certifies the
    candidate not worse by more than the margin. ``chosen``: it serves the domain from now on.
    """

    purpose: str
    domain: str
    candidate: str
    reference: str
    accuracy_candidate: float
    accuracy_reference: float
    p_value: float | None
    p_adjusted: float | None
    lower: float | None
    upper: float | None
    passed: bool
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GateOutcome:
    """The gate's answer: whether the large model advances, what serves each domain, and every test."""

    advanced: bool
    served: dict[str, ServedRef]
    decisions: list[Decision]


def decide(
    gate: GateConfig,
    served: Mapping[str, ServedRef],
    correct: Mapping[tuple[str, str], np.ndarray],
    candidates: Mapping[str, list[ServedRef]],
    new_large: ServedRef,
    old_large: ServedRef,
    *,
    seed: int,
) -> GateOutcome:
    """Run the gate of one generation.

    Parameters
    ----------
    gate : the settings (test, margin, confidence, correction, route, advance).
    served : domain -> the model serving it before this generation.
    correct : ``(model label, domain)`` -> bool array, whether that model is right on each of the
        domain's gate samples (every model the gate reads must be there).
    candidates : domain -> the new models that may serve it (the new large model, its expert).
    new_large, old_large : the feedback step's output and the large model it started from.
    seed : seed of the bootstrap resampling.
    """
    alpha = 1.0 - gate.confidence
    domains = list(served)

    def test(k: int, candidate: str, reference: str, domain: str) -> tuple[PairedTest | None, float, float]:
        a, b = correct[(candidate, domain)], correct[(reference, domain)]
        if gate.test in ("tolerance", "none"):
            return None, float(a.mean()), float(b.mean())
        t = noninferiority(a, b, gate.margin, test=gate.test, confidence=gate.confidence, resamples=gate.resamples,
                           rng=np.random.default_rng([seed, k]))
        return t, t.accuracy_a, t.accuracy_b

    # every (purpose, domain, candidate, reference) test of the generation, corrected together
    plan = [("advance", d, new_large.label, old_large.label) for d in domains if gate.advance == "all"]
    if gate.route:
        plan += [("serve", d, c.label, served[d].label) for d in domains for c in candidates.get(d, [])
                 if c.label != served[d].label]
    results = [test(k, c, r, d) for k, (_, d, c, r) in enumerate(plan)]
    p_raw = np.array([1.0 if t is None else t.p_value for t, _, _ in results])
    p_adj = _adjust(p_raw, gate.correction)
    decisions = []
    for (purpose, d, c, r), (t, acc_c, acc_r), p, q in zip(plan, results, p_raw, p_adj, strict=True):
        if gate.test == "none":
            passed = True
        elif gate.test == "tolerance":
            passed = acc_c >= acc_r - gate.margin
        else:
            passed = bool(q <= alpha)
        decisions.append(Decision(purpose, d, c, r, acc_c, acc_r, None if t is None else float(p),
                                  None if t is None else float(q), None if t is None else t.lower,
                                  None if t is None else t.upper, passed))

    if gate.advance == "all":
        advanced = all(x.passed for x in decisions if x.purpose == "advance")
    else:
        old = np.mean([correct[(old_large.label, d)].mean() for d in domains])
        new = np.mean([correct[(new_large.label, d)].mean() for d in domains])
        advanced = bool(new >= old)

    by_label = {c.label: c for cs in candidates.values() for c in cs} | {new_large.label: new_large}
    new_served = dict(served)
    if not gate.route:  # one model answers every domain: the large model that goes on
        if advanced:
            new_served = {d: new_large for d in domains}
    else:
        for d in domains:
            options = [x for x in decisions if x.purpose == "serve" and x.domain == d and x.passed
                       and x.accuracy_candidate > x.accuracy_reference]
            if options:
                best = max(options, key=lambda x: (x.accuracy_candidate, x.candidate == new_large.label))
                new_served[d] = by_label[best.candidate]
                decisions = [_chosen(x) if x is best else x for x in decisions]
    return GateOutcome(advanced, new_served, decisions)


def _chosen(x: Decision) -> Decision:
    return Decision(**{**x.__dict__, "chosen": True})


def _adjust(p: np.ndarray, correction: str) -> np.ndarray:
    if p.size == 0 or correction == "none":
        return p
    if correction == "bonferroni":
        return np.minimum(1.0, p * p.size)
    return holm(p)
