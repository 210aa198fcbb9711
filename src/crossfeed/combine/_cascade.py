"""Cost-aware cascade: cheap members answer when confident, unsure samples escalate.

References: P. Viola, M. Jones, "Rapid object detection using a boosted cascade of simple
features", CVPR 2001; X. Wang et al., "Wisdom of Committees: An Overlooked Approach to Faster
and More Accurate Models" (arXiv 2012.01988).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from crossfeed.combine._base import BaseCombiner, Member, check_choice, check_fraction, holdout_split, subset
from crossfeed.combine._cascade_search import search_thresholds
from crossfeed.combine._confidence import CONFIDENCE_RULES
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
    for 2-3 stages and by coordinate search beyond) to either

    - reach ``target_accuracy`` at the lowest expected cost (default target: the validation
      accuracy of the most expensive member, i.e. "match the large model"), or
    - maximise accuracy with expected cost per sample <= ``budget``.

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
        Maximum expected cost per sample; give either this or ``target_accuracy``.
    prefit : bool, default False
    calibrate : bool, default False
        Temperature-scale each member on the validation data first (Guo et al. 2017,
        arXiv 1706.04599); the scaled probabilities are scored and returned.
    validation_fraction : float in (0, 1), default 0.3
    random_state : int, RandomState or None
        Seeds the hold-out split.

    Attributes
    ----------
    order_ : int array of shape (n_members,)
        ``order_[k]`` is the index in ``members`` of stage ``k`` (costs ascending, stable).
    costs_ : array of shape (n_members,)
        Cost per sample of each member, in ``members`` order.
    thresholds_ : array of shape (n_members,)
        Threshold of each stage, in stage order; the last is ``-inf``.
    curve_ : dict of arrays
        The accuracy-versus-cost front the search evaluated on validation data: ``cost``,
        ``accuracy``, ``escalation_rate`` of shape (n_points,), ``thresholds`` of shape
        (n_points, n_members); sorted by cost, accuracy increasing.
    expected_cost_ : float
        Mean cost per sample of the chosen thresholds on the validation data.
    validation_accuracy_ : float
    escalation_rate_ : float
        Share of validation samples not answered by stage 0.
    target_accuracy_ : float or None
        The target used (None in budget mode).
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
        explicit_costs = self._check_costs(len(members))
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

        # 5. threshold search
        budget = None if self.budget is None else float(self.budget)
        target = None
        if budget is None:
            target = float(correct[-1].mean()) if self.target_accuracy is None else float(self.target_accuracy)
        result = search_thresholds(scores, correct, self.costs_[self.order_], target=target, budget=budget,
                                   n_candidates=N_CANDIDATES)
        self.thresholds_ = result.thresholds
        self.curve_ = result.curve
        self.expected_cost_ = result.cost
        self.validation_accuracy_ = result.accuracy
        self.escalation_rate_ = result.escalation_rate
        self.target_accuracy_ = target
        # temperatures_ is stored in members order, like costs_
        self.temperatures_ = None if temperatures is None else temperatures[np.argsort(self.order_)]
        logger.info(
            "Cascade: thresholds %s, validation accuracy %.4f (target %s), expected cost %.4g, escalation %.1f%%",
            np.round(self.thresholds_, 4).tolist(), result.accuracy, target, result.cost,
            100 * result.escalation_rate,
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
        if self.target_accuracy is not None and self.budget is not None:
            raise ValidationError(
                f"give either target_accuracy or budget, not both (got {self.target_accuracy!r} and "
                f"{self.budget!r}); set the other to None"
            )
        t = self.target_accuracy
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float | np.number) or not 0 < t <= 1):
            raise ValidationError(f"target_accuracy must be a number in (0, 1] or None; got {t!r}")
        b = self.budget
        if b is not None and (
            isinstance(b, bool) or not isinstance(b, int | float | np.number) or not np.isfinite(b) or b <= 0
        ):
            raise ValidationError(f"budget must be a positive finite number (cost per sample) or None; got {b!r}")

    def _check_costs(self, n_members: int) -> np.ndarray | None:
        if self.costs is None:
            return None
        try:
            costs = np.asarray(self.costs, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"costs must be a list of numbers, one per member; got {self.costs!r}") from exc
        if costs.ndim != 1 or costs.size != n_members:
            raise ValidationError(
                f"costs must have one number per member ({n_members}); got {costs.size} ({self.costs!r})"
            )
        if not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise ValidationError(f"costs must be finite and >= 0 (cost per sample); got {costs.tolist()}")
        return costs

    def _estimated_costs(self, fitted: list[Member], X: Any) -> np.ndarray:
        costs = np.array([float(flops_per_sample(est, X)) for _, est in fitted])
        if not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise ValidationError(
                f"estimated FLOPs per sample are not all finite and >= 0: {costs.tolist()}; pass costs=[...]"
            )
        logger.info("Cascade: estimated FLOPs per sample %s", costs.tolist())
        return costs
