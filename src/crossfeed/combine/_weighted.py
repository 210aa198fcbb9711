"""Weighted average of member probabilities, weights learned on validation data.

Two ways to learn the weights, both minimising validation log-loss over the simplex:
``method="slsqp"`` solves the convex problem directly (:func:`optimize_simplex_weights`),
``method="caruana"`` runs greedy ensemble selection with replacement
(:func:`caruana_selection`, Caruana et al. 2004).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from crossfeed.combine._base import (
    BaseCombiner,
    Member,
    check_choice,
    check_fraction,
    holdout_split,
    subset,
)
from crossfeed.combine._math import (
    caruana_selection,
    mean_log_loss,
    optimize_simplex_weights,
)
from crossfeed.exceptions import ValidationError

__all__ = ["WeightedEnsemble"]

logger = logging.getLogger(__name__)

_METHODS = ("caruana", "slsqp")


class WeightedEnsemble(BaseCombiner):
    """Average member probabilities with weights on the simplex fitted to validation log-loss.

    ``predict_proba(X) = sum_m weights_[m] * members[m].predict_proba(X)`` with
    ``weights_ >= 0`` and ``sum(weights_) = 1``; a member that does not help gets weight 0 (and
    is then not even run at prediction time).

    Validation data:

    - ``prefit=True``: the members are already trained, and the ``(X, y)`` given to ``fit`` IS
      the held-out validation data the weights are fitted on (do not pass the members'
      training data, or the weights favour whoever overfits most).
    - ``prefit=False``: a stratified ``validation_fraction`` of ``(X, y)`` is held out, clones
      of the members are fitted on the rest, the weights are fitted on the held-out part, and
      then (deliberate choice) the members are refitted on all of ``(X, y)`` so no data is
      wasted; the weights are kept. This mirrors ``CalibratedClassifierCV(ensemble=False)``.

    Parameters
    ----------
    members : list of (name, estimator) pairs
        Classifiers with ``predict_proba`` sharing ``classes_``; names unique.
    method : "slsqp" or "caruana", default "slsqp"
        "slsqp": exact convex optimisation of the log-loss over the simplex (SLSQP).
        "caruana": greedy forward selection with replacement over ``n_iter`` rounds; weights
        are multiples of 1/k (Caruana et al., "Ensemble selection from libraries of models",
        ICML 2004).
    prefit : bool, default False
        See "Validation data" above.
    calibrate : bool, default False
        Temperature-scale each member on the validation data before fitting weights
        (Guo et al. 2017, arXiv 1706.04599); the temperatures are applied at prediction too.
    validation_fraction : float in (0, 1), default 0.2
        Share of ``(X, y)`` held out when ``prefit=False``.
    n_iter : int, default 50
        Rounds of Caruana selection (ignored by "slsqp").
    random_state : int, RandomState or None
        Seeds the hold-out split.

    Attributes
    ----------
    weights_ : array of shape (n_members,)
        Non-negative weights summing to 1, in the order of ``members``.
    members_ : list of (name, fitted estimator)
    temperatures_ : array of shape (n_members,) or None
        Per-member temperatures when ``calibrate=True``, else None.
    member_log_losses_ : array of shape (n_members,)
        Each member's log-loss on the validation data (after calibration, if any).
    validation_log_loss_ : float
        The weighted ensemble's log-loss on the same data.
    classes_ : array of shape (n_classes,)
    n_features_in_ : int

    Example
    -------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = make_classification(n_samples=300, random_state=0)
    >>> ens = WeightedEnsemble([("lr", LogisticRegression()), ("nb", GaussianNB())], random_state=0)
    >>> round(float(ens.fit(X, y).weights_.sum()), 6)
    1.0
    """

    def __init__(
        self,
        members: list[Member],
        *,
        method: Literal["slsqp", "caruana"] = "slsqp",
        prefit: bool = False,
        calibrate: bool = False,
        validation_fraction: float = 0.2,
        n_iter: int = 50,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.members = members
        self.method = method
        self.prefit = prefit
        self.calibrate = calibrate
        self.validation_fraction = validation_fraction
        self.n_iter = n_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> WeightedEnsemble:
        """Fit (or adopt) the members, then the weights on validation data.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,)

        Returns
        -------
        self
        """
        # 1. validate
        method = check_choice(self.method, "method", _METHODS)
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int | np.integer) or self.n_iter < 1:
            raise ValidationError(f"n_iter must be a positive integer; got {self.n_iter!r}")
        members = self._validate_members()
        _, X_members, y = self._validate_fit_data(X, y)

        # 2. members and their predictions on validation data
        if self.prefit:
            fitted = self._adopt_prefit(members)
            X_val, y_val = X_members, y
        else:
            fraction = check_fraction(self.validation_fraction, "validation_fraction")
            train, val = holdout_split(y, fraction, self.random_state)
            fitted = self._fit_clones(members, subset(X_members, train), y[train])
            X_val, y_val = subset(X_members, val), y[val]
        self.classes_ = self._shared_classes(fitted)
        y_idx = self._encode(y_val, self.classes_)
        probas = self._member_probas(fitted, X_val, self.classes_.size)

        # 3. optional per-member temperature scaling on the same data
        self.temperatures_ = self._fit_temperatures(probas, y_idx) if self.calibrate else None
        probas = self._scale(probas, self.temperatures_)

        # 4. weights
        if method == "slsqp":
            self.weights_ = optimize_simplex_weights(probas, y_idx)
        else:
            self.weights_ = caruana_selection(probas, y_idx, n_iter=int(self.n_iter))
        self.member_log_losses_ = np.array([mean_log_loss(p, y_idx) for p in probas])
        self.validation_log_loss_ = mean_log_loss(np.tensordot(self.weights_, probas, axes=1), y_idx)
        logger.info(
            "WeightedEnsemble(%s): weights %s, validation log-loss %.4f (best member %.4f)",
            method,
            dict(zip([n for n, _ in members], np.round(self.weights_, 4).tolist(), strict=True)),
            self.validation_log_loss_,
            self.member_log_losses_.min(),
        )

        # 5. refit on all the data (prefit=False only)
        if not self.prefit:
            fitted = self._fit_clones(members, X_members, y)
            self._shared_classes(fitted)
        self.members_ = fitted
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Weighted average of the members' probabilities, array of shape (n_samples, n_classes)."""
        _, X_members = self._check_predict_X(X)
        used = np.flatnonzero(self.weights_ > 0)
        probas = self._member_probas([self.members_[i] for i in used], X_members, self.classes_.size)
        if self.temperatures_ is not None:
            probas = self._scale(probas, self.temperatures_[used])
        return np.tensordot(self.weights_[used], probas, axes=1)
