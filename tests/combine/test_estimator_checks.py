"""scikit-learn's own conformance checks over every combiner."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from crossfeed.combine import Cascade, MeanEnsemble, StackingEnsemble, WeightedEnsemble
from crossfeed.combine._router import Router


def _members() -> list[tuple[str, Any]]:
    return [
        ("lr", LogisticRegression()),
        ("nb", GaussianNB()),
        ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
    ]


ESTIMATORS = [
    MeanEnsemble(_members()),
    WeightedEnsemble(_members(), method="slsqp", random_state=0),
    WeightedEnsemble(_members(), method="caruana", n_iter=10, random_state=0),
    WeightedEnsemble(_members(), calibrate=True, random_state=0),
    StackingEnsemble(_members(), cv=3, random_state=0),
    StackingEnsemble(_members(), cv=3, passthrough=True, calibrate=True, random_state=0),
    Cascade(_members(), costs=[1.0, 2.0, 5.0], random_state=0),
    Cascade(_members(), costs=[3.0, 1.0, 2.0], rule="margin", budget=2.5, random_state=0),
    Router(_members(), costs=[1.0, 2.0, 5.0], random_state=0),
    Router(_members(), costs=[3.0, 1.0, 2.0], features="first_stage", budget=2.5, random_state=0),
]

# Checks that cannot apply to these combiners, with the reason. Every check currently passes,
# so this is empty; a check added here must say why it cannot apply (not merely that it fails).
# prefit=True is not put through the checks: they clone the estimator, and a clone's members are
# unfitted by construction (the same holds for sklearn's own prefit meta-estimators).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _expected_failed_checks(estimator: Any) -> dict[str, str]:
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator: Any, check: Any) -> None:
    check(estimator)
