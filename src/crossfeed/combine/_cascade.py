"""Cost-aware cascade: cheap members answer when confident, unsure samples escalate.

References: P. Viola, M. Jones, "Rapid object detection using a boosted cascade of simple
features", CVPR 2001; X. Wang et al., "Wisdom of Committees: An Overlooked Approach to Faster
and More Accurate Models" (arXiv 2012.01988).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Literal

import numpy as np
from sklearn.utils import check_random_state

from crossfeed.combine._base import (
    BaseCombiner,
    Member,
    check_choice,
    check_costs,
    check_fraction,
    check_goal,
    holdout_split,
    subset,
)
from crossfeed.combine._cascade_search import (
    best_point,
    cascade_outcomes,
    cascade_stages,
    pareto_curve,
    search_thresholds,
)
from crossfeed.combine._confidence import CONFIDENCE_RULES
from crossfeed.combine._risk import (
    RISK_TESTS,
    RiskCertificate,
    accuracy_loss,
    check_risk_level,
    fixed_sequence,
    risk_p_value,
)
from crossfeed.exceptions import ValidationError
from crossfeed.models.cost import flops_per_sample

__all__ = ["Cascade"]

logger = logging.getLogger(__name__)

#: Quantile levels per stage in the threshold grid.
N_CANDIDATES = 50


class Cascade(BaseCombiner):
    """Run members from cheapest to most expensive; each answers only when confident enough.

    Stage ``k`` (member ``order_[k]``) answers a sample if its confidence score (``rule``)
    is ``>= thresholds_[k]``; otherwise the sample goes on to stage ``k + 1``. The last, most
    expensive stage always answers (``thresholds_[-1] = -inf``). A sample answered at stage
    ``k`` costs the sum of the costs of stages ``0..k``, since each of them ran on it.

    Thresholds are calibrated on validation data (see the search in
    :mod:`crossfeed.combine._cascade_search`: a quantile grid per stage, searched exhaustively
    for 2-3 stages and by coordinate search beyond) to one of three goals:

    - ``epsilon`` (risk control, the one that holds on unseen data): the cheapest configuration
      whose accuracy loss against the most expensive member (the reference) is at most
      ``epsilon`` with probability at least ``1 - delta``, by Learn then Test with Pareto
      Testing (see :mod:`crossfeed.combine._risk`): a ``search_fraction`` of the validation data
      proposes the accuracy-cost front, the rest certifies it; ``certificate_`` records what was
      promised and tested. When nothing can be certified the reference alone answers.
    - ``target_accuracy``: reach it on the validation data at the lowest expected cost (default
      when no goal is given: the validation accuracy of the most expensive member, i.e. "match
      the large model"; on test data this lands below it, since the threshold is fitted to the
      validation noise);
    - ``budget``: maximise validation accuracy with expected cost per sample <= ``budget``.

    Ladders: with ``stages="auto"`` the cascade chooses which members to use (always ending
    with the most expensive one, at most ``max_stages`` of them), searching every such ladder
    and keeping the one that best meets the goal; members left out never run.

    Validation data, as for :class:`WeightedEnsemble`: with ``prefit=True`` the ``(X, y)``
    given to ``fit`` is the held-out calibration data; with ``prefit=False`` a stratified
    ``validation_fraction`` is held out, clones are fitted on the rest, thresholds calibrated
    on the held-out part, then the members are refitted on all the data (thresholds kept).

    Parameters
    ----------
    members : list of (name, estimator) pairs
        Classifiers with ``predict_proba`` sharing ``classes_``; any order (sorted by cost).
    costs : list of float, one per member (in ``members`` order), default None
        Cost per sample of running each member (FLOPs, milliseconds, dollars: any unit, >= 0).
        None: ``crossfeed.models.cost.flops_per_sample(member, X)`` for each fitted member.
    rule : "max_prob", "margin" or "entropy", default "max_prob"
        Confidence score: top probability, top-1 minus top-2 probability, negative entropy.
    target_accuracy : float in (0, 1], default None
        Accuracy to reach on the validation data; None (and no ``budget``) means the most
        expensive member's validation accuracy.
    budget : float > 0, default None
        Maximum expected cost per sample; give at most one of ``epsilon``, ``target_accuracy``
        and ``budget``.
    epsilon : float in (0, 1), default None
        Largest accuracy loss against the most expensive member to certify (0.005 = half a
        point), with probability ``1 - delta`` over the validation data.
    delta : float in (0, 1), default 0.1
        Allowed probability that the certified loss bound fails.
    risk_test : "wsr" or "binomial", default "wsr"
        p-value of the certification: the variance-adaptive betting test on the net accuracy
        loss, or the exact binomial test of the conservative "reference right, cascade wrong"
        rate.
    stages : "all" or "auto", default "all"
        Use every member as a stage, or choose the ladder (see above).
    max_stages : int >= 2, default 4
        Longest ladder ``stages="auto"`` considers.
    search_fraction : float in (0, 1), default 0.5
        Share of the validation data that proposes configurations in ``epsilon`` mode.
    prefit : bool, default False
    calibrate : bool, default False
        Temperature-scale each member on the validation data first (Guo et al. 2017,
        arXiv 1706.04599); the scaled probabilities are scored and returned.
    validation_fraction : float in (0, 1), default 0.3
    random_state : int, RandomState or None
        Seeds the hold-out split.

    Attributes
    ----------
    order_ : int array of shape (n_stages,)
        ``order_[k]`` is the index in ``members`` of stage ``k`` (costs ascending, stable); all
        members with ``stages="all"`` (except a risk-control fallback to the reference alone),
        the chosen ladder with ``stages="auto"``.
    costs_ : array of shape (n_members,)
        Cost per sample of each member, in ``members`` order.
    thresholds_ : array of shape (n_stages,)
        Threshold of each stage, in stage order; the last is ``-inf``.
    curve_ : dict of arrays
        The accuracy-versus-cost front the search evaluated on validation data for the chosen
        ladder: ``cost``, ``accuracy``, ``escalation_rate`` of shape (n_points,), ``thresholds``
        of shape (n_points, n_stages); sorted by cost, accuracy increasing.
    ladders_ : list of dict
        Every ladder searched: ``members`` (names, cheapest first), ``accuracy`` and ``cost`` of
        its best point on the validation data for the goal.
    certificate_ : RiskCertificate or None
        The risk control's promise and tests (``epsilon`` mode only).
    expected_cost_ : float
        Mean cost per sample of the chosen thresholds on the validation data.
    validation_accuracy_ : float
    escalation_rate_ : float
        Share of validation samples not answered by stage 0.
    target_accuracy_ : float or None
        The target used (None in budget and epsilon modes).
    members_ : list of (name, fitted estimator), in ``members`` order
    temperatures_ : array of shape (n_members,) or None
    classes_ : array of shape (n_classes,)
    n_features_in_ : int

    Example
    -------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = make_classification(n_samples=600, random_state=0)
    >>> cascade = Cascade([("small", LogisticRegression()), ("large", RandomForestClassifier(random_state=0))],
    ...                   costs=[1.0, 50.0], random_state=0).fit(X, y)
    >>> proba, stage = cascade.predict_with_stages(X[:5])
    >>> proba.shape, stage.shape
    ((5, 2), (5,))
    """

    def __init__(
        self,
        members: list[Member],
        *,
        costs: list[float] | None = None,
        rule: Literal["max_prob", "margin", "entropy"] = "max_prob",
        target_accuracy: float | None = None,
        budget: float | None = None,
        epsilon: float | None = None,
        delta: float = 0.1,
        risk_test: Literal["wsr", "binomial"] = "wsr",
        stages: Literal["all", "auto"] = "all",
        max_stages: int = 4,
        search_fraction: float = 0.5,
        prefit: bool = False,
        calibrate: bool = False,
        validation_fraction: float = 0.3,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.members = members
        self.costs = costs
        self.rule = rule
        self.target_accuracy = target_accuracy
        self.budget = budget
        self.epsilon = epsilon
        self.delta = delta
        self.risk_test = risk_test
        self.stages = stages
        self.max_stages = max_stages
        self.search_fraction = search_fraction
        self.prefit = prefit
        self.calibrate = calibrate
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> Cascade:
        """Fit (or adopt) the members, order them by cost, calibrate the thresholds.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,)

        Returns
        -------
        self
        """
        # 1. validate
        score_fn = CONFIDENCE_RULES[check_choice(self.rule, "rule", tuple(CONFIDENCE_RULES))]
        self._check_goal()
        members = self._validate_members()
        explicit_costs = check_costs(self.costs, len(members))
        _, X_members, y = self._validate_fit_data(X, y)

        # 2. members and the calibration data
        if self.prefit:
            fitted = self._adopt_prefit(members)
            X_val, y_val = X_members, y
        else:
            train, val = holdout_split(y, check_fraction(self.validation_fraction, "validation_fraction"),
                                       self.random_state)
            fitted = self._fit_clones(members, subset(X_members, train), y[train])
            X_val, y_val = subset(X_members, val), y[val]
        self.classes_ = self._shared_classes(fitted)
        y_idx = self._encode(y_val, self.classes_)

        # 3. costs and stage order
        self.costs_ = explicit_costs if explicit_costs is not None else self._estimated_costs(fitted, X_members)
        self.order_ = np.argsort(self.costs_, kind="stable")

        # 4. per-stage predictions on the calibration data
        probas = self._member_probas([fitted[i] for i in self.order_], X_val, self.classes_.size)
        temperatures = self._fit_temperatures(probas, y_idx) if self.calibrate else None
        probas = self._scale(probas, temperatures)
        scores = np.stack([score_fn(p) for p in probas])
        correct = np.argmax(probas, axis=2) == y_idx[None, :]

        # 5. choose the ladder and its thresholds
        costs = self.costs_[self.order_]
        ladders = self._ladders(len(members))
        self.certificate_ = None
        target = None
        if self.epsilon is not None:
            ladder, thresholds, curve, self.ladders_, self.certificate_ = self._certified_choice(
                ladders, scores, correct, costs
            )
        else:
            budget = None if self.budget is None else float(self.budget)
            if budget is None:
                target = float(correct[-1].mean()) if self.target_accuracy is None else float(self.target_accuracy)
            ladder, thresholds, curve, self.ladders_ = self._calibrated_choice(
                ladders, scores, correct, costs, target, budget
            )
        acc, cost, esc = cascade_outcomes(scores[ladder], correct[ladder], costs[ladder], thresholds[None, :])
        self.thresholds_ = thresholds
        self.curve_ = curve
        self.expected_cost_ = float(cost[0])
        self.validation_accuracy_ = float(acc[0])
        self.escalation_rate_ = float(esc[0])
        self.target_accuracy_ = target
        # temperatures_ is stored in members order, like costs_
        self.temperatures_ = None if temperatures is None else temperatures[np.argsort(self.order_)]
        self.order_ = self.order_[ladder]
        logger.info(
            "Cascade: stages %s, thresholds %s, validation accuracy %.4f (target %s), expected cost %.4g, "
            "escalation %.1f%%",
            [members[i][0] for i in self.order_], np.round(self.thresholds_, 4).tolist(), self.validation_accuracy_,
            target, self.expected_cost_, 100 * self.escalation_rate_,
        )

        # 6. refit on all the data (prefit=False only)
        if not self.prefit:
            fitted = self._fit_clones(members, X_members, y)
            self._shared_classes(fitted)
        self.members_ = fitted
        return self

    def predict_with_stages(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Run the cascade; stage ``k`` only sees the samples the earlier stages deferred.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        proba : array of shape (n_samples, n_classes), the answering stage's probabilities.
        stage : int array of shape (n_samples,), the answering stage (member ``order_[stage]``).
        """
        X_arr, X_members = self._check_predict_X(X)
        n_samples = X_arr.shape[0]
        score_fn = CONFIDENCE_RULES[self.rule]
        proba = np.zeros((n_samples, self.classes_.size))
        stage = np.full(n_samples, -1, dtype=np.intp)
        remaining = np.arange(n_samples)
        for k, member_idx in enumerate(self.order_):
            if remaining.size == 0:
                break
            p = self._member_probas([self.members_[member_idx]], subset(X_members, remaining), self.classes_.size)
            if self.temperatures_ is not None:
                p = self._scale(p, self.temperatures_[[member_idx]])
            p = p[0]
            answer = score_fn(p) >= self.thresholds_[k] if k < self.order_.size - 1 else np.ones(remaining.size, bool)
            proba[remaining[answer]] = p[answer]
            stage[remaining[answer]] = k
            remaining = remaining[~answer]
        return proba, stage

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of the stage that answered each sample, array of shape (n_samples, n_classes)."""
        return self.predict_with_stages(X)[0]

    def expected_cost(self, X: Any) -> float:
        """Mean cost per sample of running the cascade on ``X`` (array of shape (n_samples, n_features))."""
        _, stage = self.predict_with_stages(X)
        return float(np.cumsum(self.costs_[self.order_])[stage].mean())

    # ----------------------------------------------------------------- helpers
    def _check_goal(self) -> None:
        check_goal(epsilon=self.epsilon, target_accuracy=self.target_accuracy, budget=self.budget)
        if self.epsilon is not None:
            check_risk_level(self.epsilon, "epsilon")
            check_risk_level(self.delta, "delta")
            check_choice(self.risk_test, "risk_test", RISK_TESTS)
            check_fraction(self.search_fraction, "search_fraction")
        check_choice(self.stages, "stages", ("all", "auto"))
        m = self.max_stages
        if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 2:
            raise ValidationError(f"max_stages must be an integer >= 2 (the cheapest stage and the reference); got {m!r}")

    def _ladders(self, n_members: int) -> list[np.ndarray]:
        """Candidate ladders as positions in cost order, each ending with the most expensive member."""
        if self.stages == "all":
            return [np.arange(n_members)]
        cheaper = range(n_members - 1)
        return [
            np.array([*subset, n_members - 1])
            for size in range(min(self.max_stages, n_members))
            for subset in itertools.combinations(cheaper, size)
        ]

    def _ladder_summary(self, ladder: np.ndarray, accuracy: float, cost: float) -> dict[str, Any]:
        names = [self.members[int(self.order_[k])][0] for k in ladder]
        return {"members": names, "accuracy": float(accuracy), "cost": float(cost)}

    def _calibrated_choice(
        self, ladders: list[np.ndarray], scores: np.ndarray, correct: np.ndarray, costs: np.ndarray,
        target: float | None, budget: float | None,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """The ladder and thresholds best meeting ``target`` or ``budget`` on the validation data."""
        results = [
            search_thresholds(scores[lad], correct[lad], costs[lad], target=target, budget=budget,
                              n_candidates=N_CANDIDATES)
            for lad in ladders
        ]
        i = best_point(np.array([r.accuracy for r in results]), np.array([r.cost for r in results]), target, budget)
        summary = [self._ladder_summary(lad, r.accuracy, r.cost) for lad, r in zip(ladders, results, strict=True)]
        return ladders[i], results[i].thresholds, results[i].curve, summary

    def _certified_choice(
        self, ladders: list[np.ndarray], scores: np.ndarray, correct: np.ndarray, costs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[dict[str, Any]], RiskCertificate]:
        """Learn then Test with Pareto Testing: propose on one part of the data, certify on the other."""
        epsilon, delta = float(self.epsilon), float(self.delta)
        n = scores.shape[1]
        order = check_random_state(self.random_state).permutation(n)
        n_search = min(max(1, int(round(self.search_fraction * n))), n - 1)
        search, test = order[:n_search], order[n_search:]
        reference = correct.shape[0] - 1
        ref_search_acc = float(correct[reference, search].mean())

        # propose: every ladder's accuracy-cost front on the search part, its risk estimated there as
        # the test will measure it (net loss for "wsr", the binary loss for "binomial"), merged, safest first
        ref_search = correct[reference, search]
        candidates, summary = [], []
        for lad in ladders:
            result = search_thresholds(scores[lad][:, search], correct[lad][:, search], costs[lad],
                                       target=ref_search_acc - epsilon, n_candidates=N_CANDIDATES)
            summary.append(self._ladder_summary(lad, result.accuracy, result.cost))
            for cost, th in zip(result.curve["cost"], result.curve["thresholds"], strict=True):
                stage = cascade_stages(scores[lad][:, search], th)
                losses = accuracy_loss(correct[lad][stage, search], ref_search)
                risk = float((losses > 0).mean() if self.risk_test == "binomial" else losses.mean())
                candidates.append((risk, float(cost), lad, th))
        risk = np.array([c[0] for c in candidates])
        cost = np.array([c[1] for c in candidates])
        front = pareto_curve(-risk, cost, np.zeros_like(risk), np.arange(len(candidates))[:, None])
        sequence = front["thresholds"][::-1, 0].astype(int)  # lowest estimated risk first

        # test in that order on the other part, stopping at the first failure
        ref_test = correct[reference, test]
        p_values: list[float] = []
        for idx in sequence:
            _, _, lad, th = candidates[idx]
            stage = cascade_stages(scores[lad][:, test], th)
            losses = accuracy_loss(correct[lad][stage, test], ref_test)
            p_values.append(risk_p_value(self.risk_test, losses, epsilon, delta))
            if p_values[-1] > delta:
                break
        n_certified = fixed_sequence(np.array(p_values), delta)

        # choose: the cheapest certified configuration (cost on all the validation data), or the reference alone
        alone = np.array([reference])
        best = (float(costs[reference]), alone, np.array([-np.inf]), 0.0, 0.0)
        for j in range(n_certified):
            _, _, lad, th = candidates[sequence[j]]
            _, full_cost, _ = cascade_outcomes(scores[lad], correct[lad], costs[lad], th[None, :])
            if full_cost[0] < best[0] - 1e-12:
                stage = cascade_stages(scores[lad][:, test], th)
                test_loss = float(accuracy_loss(correct[lad][stage, test], ref_test).mean())
                best = (float(full_cost[0]), lad, th, p_values[j], test_loss)
        _, ladder, thresholds, p_value, test_loss = best
        fallback = ladder.size == 1
        if fallback:
            logger.warning(
                "Cascade: no configuration certified at epsilon=%g, delta=%g on %d test samples; the reference "
                "alone answers (more validation data, a larger epsilon or a larger delta make a cheaper one "
                "certifiable)", epsilon, delta, test.size,
            )
        certificate = RiskCertificate(
            epsilon=epsilon, delta=delta, test=self.risk_test, n_search=int(search.size), n_test=int(test.size),
            n_tested=len(p_values), n_certified=n_certified, p_value=float(p_value), test_loss=test_loss,
            fallback=fallback,
        )
        # the curve: the certified points of the chosen ladder, on all the validation data
        same = [candidates[sequence[j]][3] for j in range(n_certified) if candidates[sequence[j]][2] is ladder]
        points = np.array(same) if same else thresholds[None, :]
        curve = pareto_curve(*cascade_outcomes(scores[ladder], correct[ladder], costs[ladder], points), points)
        return ladder, thresholds, curve, summary, certificate

    def _estimated_costs(self, fitted: list[Member], X: Any) -> np.ndarray:
        costs = np.array([float(flops_per_sample(est, X)) for _, est in fitted])
        if not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise ValidationError(
                f"estimated FLOPs per sample are not all finite and >= 0: {costs.tolist()}; pass costs=[...]"
            )
        logger.info("Cascade: estimated FLOPs per sample %s", costs.tolist())
        return costs
