"""Learned router: look at each sample once and send it to the one member likely to get it right cheaply.

Where :class:`~crossfeed.combine.Cascade` runs the cheapest member first and escalates when it is
unsure, a router predicts up front, from the input, how likely each member is to be right, and
runs only the member it picks (RouteLLM style).

Reference: I. Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data" (arXiv
2406.18665); the routing rule "most likely right, minus the price of the call" is the
willingness-to-pay trade-off of cost-aware routing. The pure maths (the routing rule, the lambda
grid, the accuracy-cost front, the folded linear routers) is in :mod:`crossfeed.combine._routing`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
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
from crossfeed.combine._confidence import margin_confidence, max_prob_confidence
from crossfeed.combine._routing import lambda_grid, pareto_front, route, routing_outcomes, stacked_linear
from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.models.cost import flops_per_sample

__all__ = ["Router"]

logger = logging.getLogger(__name__)

FEATURES = ("input", "first_stage")
_TOL = 1e-12


class Router(BaseCombiner):
    """Send each sample to ONE member, chosen from the input by per-member correctness models.

    For each member ``m`` a binary classifier (a clone of ``router``) learns P(m is right | x)
    on calibration data, the label being "member m's argmax equals y". A sample goes to
    ``argmax_m P(m right | x) - lam_ * route_costs_[m] / max(route_costs_)`` (ties: the cheaper
    member), and only that member runs on it. A member right on all or none of the router
    training samples gets a constant predictor with that rate (a ``DummyClassifier``).

    The calibration data is split in two (stratified by ``y``): ``router_fraction`` of it trains
    the correctness models, the rest scans lambda (0 and a grid covering every change of
    routing, see :func:`lambda_grid`), so the operating point is not chosen on the data the
    routers were trained on. The lambda chosen either

    - reaches ``target_accuracy`` at the lowest expected cost (default target: the most
      expensive member's accuracy on that held-out part), or
    - maximises accuracy with expected cost per sample <= ``budget``.

    lambda > 0 trades predicted accuracy for cost; lambda < 0 pays for the more expensive
    member even where the routers predict it less likely right (the routers are imperfect), so
    the curve runs from "every sample to the cheapest member" to "every sample to the most
    expensive one" and a target equal to the large member's accuracy is reachable. When no
    lambda reaches the target the most accurate one is used, with a warning.

    Calibration data, as for :class:`Cascade`: with ``prefit=True`` the ``(X, y)`` given to
    ``fit`` is held-out data for the already-fitted members; with ``prefit=False`` a stratified
    ``validation_fraction`` is held out, clones are fitted on the rest and calibrated on it,
    then refitted on all the data (routers and lambda kept).

    Parameters
    ----------
    members : list of (name, estimator) pairs
        Classifiers with ``predict_proba`` sharing ``classes_``, in any order.
    costs : list of float, one per member (in ``members`` order), default None
        Cost per sample of running each member (any unit, >= 0). None:
        ``crossfeed.models.cost.flops_per_sample(member, X)`` for each fitted member.
    router : classifier template with predict_proba, default None
        Cloned once per member. None: ``make_pipeline(StandardScaler(),
        LogisticRegression(max_iter=1000, C=1.0))``.
    features : "input" or "first_stage", default "input"
        What the routers see. "input": ``X``. "first_stage": ``X`` followed by the cheapest
        member's probabilities, top probability and margin (the last two because correctness is
        not monotone in the probabilities themselves, so a linear router needs the confidence
        spelt out). The cheapest member then runs on every sample and its cost is charged to
        every sample (see ``route_costs_``).
    target_accuracy : float in (0, 1], default None
        Give either this or ``budget``; neither means the most expensive member's accuracy.
    budget : float > 0, default None
        Maximum expected cost per sample.
    prefit : bool, default False
    validation_fraction : float in (0, 1), default 0.3
        Share held out for calibration when ``prefit=False``.
    router_fraction : float in (0, 1), default 0.5
        Share of the calibration data that trains the routers; the rest chooses lambda.
    random_state : int, RandomState or None
        Seeds both splits.

    Attributes
    ----------
    members_ : list of (name, fitted estimator), in ``members`` order
    routers_ : list of fitted classifiers, one per member (in ``members`` order); class 1 of
        each is "the member is right".
    linear_routers_ : (W, b) or None
        The routers folded into one linear map (see :func:`stacked_linear`) when every router is
        linear (the default): prediction then costs one matrix product, not one scikit-learn
        call per member.
    costs_ : array of shape (n_members,), cost per sample of running each member.
    route_costs_ : array of shape (n_members,), cost of a sample routed to each member:
        ``costs_`` for "input"; with "first_stage" the cheapest member's cost is added to
        every other member's.
    lam_ : float, the chosen willingness to pay.
    curve_ : dict of arrays of shape (n_points,): ``cost``, ``accuracy``, ``lam``,
        ``large_call_rate`` (share of samples sent to the most expensive member), the Pareto
        front over the lambda grid on the held-out part, sorted by cost, accuracy increasing.
    expected_cost_, validation_accuracy_, large_call_rate_ : floats, the chosen point on the
        held-out part.
    target_accuracy_ : float or None (budget mode).
    classes_ : array of shape (n_classes,)
    n_features_in_ : int

    Example
    -------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = make_classification(n_samples=600, random_state=0)
    >>> router = Router([("small", LogisticRegression()), ("large", RandomForestClassifier(random_state=0))],
    ...                 costs=[1.0, 50.0], random_state=0).fit(X, y)
    >>> proba, member = router.predict_with_members(X[:5])
    >>> proba.shape, member.shape, set(member.tolist()) <= {0, 1}
    ((5, 2), (5,), True)
    """

    def __init__(
        self,
        members: list[Member],
        *,
        costs: list[float] | None = None,
        router: Any = None,
        features: Literal["input", "first_stage"] = "input",
        target_accuracy: float | None = None,
        budget: float | None = None,
        prefit: bool = False,
        validation_fraction: float = 0.3,
        router_fraction: float = 0.5,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.members = members
        self.costs = costs
        self.router = router
        self.features = features
        self.target_accuracy = target_accuracy
        self.budget = budget
        self.prefit = prefit
        self.validation_fraction = validation_fraction
        self.router_fraction = router_fraction
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> Router:
        """Fit (or adopt) the members, train one correctness model per member, choose lambda.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,)

        Returns
        -------
        self
        """
        # 1. validate
        check_choice(self.features, "features", FEATURES)
        check_goal(target_accuracy=self.target_accuracy, budget=self.budget)
        template = self._check_router()
        router_fraction = check_fraction(self.router_fraction, "router_fraction")
        members = self._validate_members()
        explicit_costs = check_costs(self.costs, len(members))
        X_arr, X_members, y = self._validate_fit_data(X, y)
        rng = check_random_state(self.random_state)

        # 2. members and the calibration data
        if self.prefit:
            fitted = self._adopt_prefit(members)
            cal = np.arange(y.shape[0])
        else:
            train, cal = holdout_split(y, check_fraction(self.validation_fraction, "validation_fraction"), rng)
            fitted = self._fit_clones(members, subset(X_members, train), y[train])
        self.classes_ = self._check_classes(fitted)
        X_cal, y_cal = subset(X_members, cal), y[cal]
        y_idx = self._encode(y_cal, self.classes_)

        # 3. costs: of each member, and of a sample routed to each member
        self.costs_ = explicit_costs if explicit_costs is not None else self._estimated_costs(fitted, X_members)
        self.route_costs_ = self._route_costs(self.costs_)

        # 4. who is right on the calibration data, and what the routers see
        probas = self._member_probas(fitted, X_cal, self.classes_.size)
        correct = np.argmax(probas, axis=2) == y_idx[None, :]  # (n_members, n_cal)
        feats = self._router_features(X_arr[cal], probas[self._cheapest])

        # 5. routers on one part, lambda chosen on the other
        fit_idx, sel_idx = self._router_split(y_cal, 1.0 - router_fraction, rng)
        self.routers_ = [self._fit_router(template, feats[fit_idx], correct[m, fit_idx]) for m in range(len(fitted))]
        self.linear_routers_ = stacked_linear(self.routers_)
        p_right = self._p_right(feats[sel_idx])
        self._choose_lambda(p_right, correct[:, sel_idx])

        # 6. refit on all the data (prefit=False only)
        if not self.prefit:
            fitted = self._fit_clones(members, X_members, y)
            self._check_classes(fitted)
        self.members_ = fitted
        return self

    def correctness_proba(self, X: Any) -> np.ndarray:
        """Predicted P(member right | x) of each member, array of shape (n_samples, n_members).

        With ``features="first_stage"`` this runs the cheapest member on every sample.
        """
        X_arr, X_members = self._check_predict_X(X)
        return self._p_right(self._predict_features(X_arr, X_members)[0]).T

    def predict_with_members(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Route each sample and run each member only on the samples sent to it.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        proba : array of shape (n_samples, n_classes), the chosen member's probabilities.
        member : int array of shape (n_samples,), the chosen member's index in ``members``.
        """
        X_arr, X_members = self._check_predict_X(X)
        feats, first = self._predict_features(X_arr, X_members)
        member = route(self._p_right(feats), self.route_costs_, self.lam_)
        proba = np.zeros((X_arr.shape[0], self.classes_.size))
        for m in range(len(self.members_)):
            rows = np.flatnonzero(member == m)
            if rows.size == 0:
                continue
            if first is not None and m == self._cheapest:  # already run on every sample
                proba[rows] = first[rows]
            else:
                proba[rows] = self._member_probas([self.members_[m]], subset(X_members, rows), self.classes_.size)[0]
        return proba, member

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of the member each sample was routed to, array of shape (n_samples, n_classes)."""
        return self.predict_with_members(X)[0]

    def expected_cost(self, X: Any) -> float:
        """Mean cost per sample of routing ``X`` (array of shape (n_samples, n_features)), first stage included."""
        _, member = self.predict_with_members(X)
        return float(self.route_costs_[member].mean())

    # ----------------------------------------------------------------- helpers
    @property
    def _cheapest(self) -> int:
        return int(np.argsort(self.costs_, kind="stable")[0])

    def _check_router(self) -> Any:
        template = (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
            if self.router is None
            else self.router
        )
        if not (hasattr(template, "fit") and hasattr(template, "predict_proba") and hasattr(template, "get_params")):
            raise ValidationError(
                f"router must be a scikit-learn classifier with fit and predict_proba (it is cloned once per "
                f"member); got {type(template).__name__}. Leave it None for StandardScaler + LogisticRegression"
            )
        return template

    def _check_classes(self, fitted: list[Member]) -> np.ndarray:
        try:
            return self._shared_classes(fitted)
        except LabelMismatchError as exc:
            raise LabelMismatchError(
                f"{exc}. A Router returns the probabilities of the one member it picks, so every member must "
                "have the same classes_ in the same order"
            ) from exc

    def _estimated_costs(self, fitted: list[Member], X: Any) -> np.ndarray:
        costs = np.array([float(flops_per_sample(est, X)) for _, est in fitted])
        if not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise ValidationError(
                f"estimated FLOPs per sample are not all finite and >= 0: {costs.tolist()}; pass costs=[...]"
            )
        logger.info("Router: estimated FLOPs per sample %s", costs.tolist())
        return costs

    def _route_costs(self, costs: np.ndarray) -> np.ndarray:
        if self.features == "input":
            return costs.copy()
        cheapest = int(np.argsort(costs, kind="stable")[0])
        out = costs + costs[cheapest]
        out[cheapest] = costs[cheapest]
        return out

    def _router_features(self, X_arr: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Router inputs, shape (n_samples, n_router_features), from X and the cheapest member's proba."""
        X_flat = X_arr.reshape(X_arr.shape[0], -1)
        if self.features == "input":
            return X_flat
        return np.hstack([X_flat, first, max_prob_confidence(first)[:, None], margin_confidence(first)[:, None]])

    def _predict_features(self, X_arr: np.ndarray, X_members: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(router features, cheapest member's proba or None) at prediction time."""
        if self.features == "input":
            return X_arr.reshape(X_arr.shape[0], -1), None
        first = self._member_probas([self.members_[self._cheapest]], X_members, self.classes_.size)[0]
        return self._router_features(X_arr, first), first

    def _router_split(self, y_cal: np.ndarray, fraction: float, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """(router-training, lambda-selection) indices into the calibration data."""
        try:
            return holdout_split(y_cal, fraction, rng)
        except ValidationError:  # every class a single sample: nothing to split
            logger.warning(
                "Router: %d calibration samples cannot be split between the routers and the choice of lambda; "
                "both use all of them (pass more calibration data)", y_cal.shape[0]
            )
            every = np.arange(y_cal.shape[0])
            return every, every

    @staticmethod
    def _fit_router(template: Any, feats: np.ndarray, right: np.ndarray) -> Any:
        labels = right.astype(int)  # never empty: the split keeps a sample of every class here
        if labels.min() == labels.max():  # right on all or none: a constant rate
            logger.info("Router: a member is right on %d%% of the router data; constant predictor",
                        100 * labels[0])
            return DummyClassifier(strategy="prior").fit(feats, labels)
        return clone(template).fit(feats, labels)

    def _p_right(self, feats: np.ndarray) -> np.ndarray:
        """P(member right) from each router, array of shape (n_members, n_samples)."""
        linear = getattr(self, "linear_routers_", None)
        if linear is not None:  # one matrix product instead of one scikit-learn call per member
            weights, bias = linear
            return (1.0 / (1.0 + np.exp(-(feats @ weights + bias)))).T
        out = np.zeros((len(self.routers_), feats.shape[0]))
        for m, router in enumerate(self.routers_):
            col = np.flatnonzero(np.asarray(router.classes_) == 1)
            if col.size:  # a router that only saw "wrong" keeps 0
                out[m] = np.asarray(router.predict_proba(feats), dtype=float)[:, col[0]]
        return out

    def _choose_lambda(self, p_right: np.ndarray, correct: np.ndarray) -> None:
        """Scan lambda on the held-out part, keep the front, pick the point the goal asks for."""
        lams = lambda_grid(p_right, self.route_costs_)
        large = int(np.argsort(self.costs_, kind="stable")[-1])
        acc, cost, large_rate = routing_outcomes(p_right, correct, self.route_costs_, lams, large=large)
        idx = pareto_front(cost, acc)
        front = {"cost": cost[idx], "accuracy": acc[idx], "lam": lams[idx], "large_call_rate": large_rate[idx]}
        self.curve_ = front
        budget = None if self.budget is None else float(self.budget)
        target = None
        if budget is None:
            target = float(correct[large].mean()) if self.target_accuracy is None else float(self.target_accuracy)
            ok = np.flatnonzero(front["accuracy"] >= target - _TOL)
            i = int(ok[0]) if ok.size else front["cost"].size - 1  # cheapest reaching it, else most accurate
            if not ok.size:
                logger.warning("Router: no lambda reaches target accuracy %.4f on held-out data; best is %.4f",
                               target, front["accuracy"][i])
        else:
            ok = np.flatnonzero(front["cost"] <= budget + _TOL)
            i = int(ok[-1]) if ok.size else 0  # most accurate within budget, else cheapest
            if not ok.size:
                logger.warning("Router: no lambda fits budget %.4g; the cheapest routing costs %.4g per sample",
                               budget, front["cost"][0])
        self.lam_ = float(front["lam"][i])
        self.expected_cost_ = float(front["cost"][i])
        self.validation_accuracy_ = float(front["accuracy"][i])
        self.large_call_rate_ = float(front["large_call_rate"][i])
        self.target_accuracy_ = target
        logger.info("Router: lambda %.4g, held-out accuracy %.4f (target %s), expected cost %.4g, large calls %.1f%%",
                    self.lam_, self.validation_accuracy_, target, self.expected_cost_, 100 * self.large_call_rate_)
