"""Bad input fails early, with crossfeed's exceptions and messages that name the problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC

from crossfeed.combine import Cascade, MeanEnsemble, StackingEnsemble, WeightedEnsemble
from crossfeed.exceptions import LabelMismatchError, NotFittedError, ValidationError

from ._estimators import NoProba, PoisonedProba

COMBINERS = [
    pytest.param(lambda m, **kw: MeanEnsemble(m, **kw), id="mean"),
    pytest.param(lambda m, **kw: WeightedEnsemble(m, random_state=0, **kw), id="weighted"),
    pytest.param(lambda m, **kw: WeightedEnsemble(m, method="caruana", random_state=0, **kw), id="caruana"),
    pytest.param(lambda m, **kw: StackingEnsemble(m, cv=3, random_state=0, **kw), id="stacking"),
    pytest.param(lambda m, **kw: Cascade(m, costs=[1.0, 2.0], random_state=0, **kw), id="cascade"),
]


def _two() -> list[tuple[str, Any]]:
    return [("lr", LogisticRegression()), ("nb", GaussianNB())]


@pytest.mark.parametrize("make", COMBINERS)
def test_members_with_different_label_sets(make, data3) -> None:
    X, y = data3
    lr = LogisticRegression().fit(X, y)
    nb = GaussianNB().fit(X[y != 2], y[y != 2])
    with pytest.raises(LabelMismatchError, match="share one label set") as info:
        make([("lr", lr), ("nb", nb)], prefit=True).fit(X, y)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("make", COMBINERS)
def test_prefit_with_unknown_labels_in_y(make, data3) -> None:
    X, y = data3
    fitted = [(n, m.fit(X[y != 2], y[y != 2])) for n, m in _two()]
    with pytest.raises(LabelMismatchError, match=r"labels \[2\]"):
        make(fitted, prefit=True).fit(X, y)


@pytest.mark.parametrize("make", COMBINERS)
def test_prefit_with_an_unfitted_member_names_it(make, data3) -> None:
    X, y = data3
    members = [("lr", LogisticRegression().fit(X, y)), ("naive_bayes", GaussianNB())]
    with pytest.raises(NotFittedError, match="'naive_bayes'"):
        make(members, prefit=True).fit(X, y)


@pytest.mark.parametrize("make", COMBINERS)
def test_nan_in_X(make, data3) -> None:
    X, y = data3
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        make(_two()).fit(bad, y)
    est = make(_two()).fit(X, y)
    with pytest.raises(ValidationError, match="NaN"):
        est.predict(bad)


@pytest.mark.parametrize("make", COMBINERS)
def test_wrong_feature_count_at_predict(make, data3) -> None:
    X, y = data3
    est = make(_two()).fit(X, y)
    with pytest.raises(ValidationError, match="X has 7 features, but .* is expecting 8"):
        est.predict_proba(X[:, :7])


@pytest.mark.parametrize("make", COMBINERS)
def test_predict_before_fit(make, data3) -> None:
    X, _ = data3
    with pytest.raises(NotFittedError, match="not fitted"):
        make(_two()).predict(X)


@pytest.mark.parametrize("make", COMBINERS)
def test_empty_member_list(make, data3) -> None:
    X, y = data3
    with pytest.raises(ValidationError, match="non-empty list"):
        make([]).fit(X, y)


@pytest.mark.parametrize("make", COMBINERS)
def test_member_without_predict_proba(make, data3) -> None:
    X, y = data3
    for member in (LinearSVC(), NoProba()):
        with pytest.raises(ValidationError, match="has no predict_proba"):
            make([("lr", LogisticRegression()), ("svm", member)]).fit(X, y)


@pytest.mark.parametrize("make", COMBINERS)
def test_bad_member_names(make, data3) -> None:
    X, y = data3
    with pytest.raises(ValidationError, match="unique"):
        make([("a", LogisticRegression()), ("a", GaussianNB())]).fit(X, y)
    with pytest.raises(ValidationError, match="'__'"):
        make([("a__b", LogisticRegression()), ("c", GaussianNB())]).fit(X, y)
    with pytest.raises(ValidationError, match="pair"):
        make([LogisticRegression(), GaussianNB()]).fit(X, y)


@pytest.mark.parametrize("make", COMBINERS)
def test_single_class_y(make, data3) -> None:
    X, _ = data3
    with pytest.raises(ValidationError, match="at least 2 classes"):
        make(_two()).fit(X, np.zeros(len(X)))


@pytest.mark.parametrize(
    ("costs", "match"),
    [([1.0], "one number per member"), ([1.0, 2.0, 3.0], "one number per member"), ([1.0, -2.0], ">= 0"),
     ([1.0, np.nan], ">= 0"), (["cheap", "dear"], "list of numbers")],
)
def test_cascade_bad_costs(data3, costs, match: str) -> None:
    X, y = data3
    with pytest.raises(ValidationError, match=match):
        Cascade(_two(), costs=costs).fit(X, y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"rule": "confidence"}, "rule must be one of"),
        ({"target_accuracy": 0.9, "budget": 3.0}, "at most one goal"),
        ({"target_accuracy": 1.5}, "target_accuracy"),
        ({"budget": -1.0}, "budget"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_cascade_bad_params(data3, params: dict, match: str) -> None:
    X, y = data3
    with pytest.raises(ValidationError, match=match):
        Cascade(_two(), costs=[1.0, 2.0], **params).fit(X, y)


def test_cascade_refuses_estimated_costs_that_are_not_finite(monkeypatch, data3) -> None:
    monkeypatch.setattr("crossfeed.combine._cascade.flops_per_sample", lambda est, X: float("nan"))
    X, y = data3
    with pytest.raises(ValidationError, match="pass costs="):
        Cascade(_two()).fit(X, y)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: WeightedEnsemble(_two(), method="nelder-mead"), "method must be one of"),
        (lambda: WeightedEnsemble(_two(), n_iter=0), "n_iter"),
        (lambda: WeightedEnsemble(_two(), validation_fraction=0), "validation_fraction"),
        (lambda: StackingEnsemble(_two(), cv=1), "at least 2 folds"),
        (lambda: StackingEnsemble(_two(), cv="five"), "cv must be"),
        (lambda: StackingEnsemble(_two(), final_estimator=object()), "final_estimator"),
    ],
)
def test_bad_params(make, match: str, data3) -> None:
    X, y = data3
    with pytest.raises(ValidationError, match=match):
        make().fit(X, y)


def test_bad_X_and_y(data3) -> None:
    X, y = data3
    ens = MeanEnsemble(_two())
    with pytest.raises(ValidationError, match="Reshape your data"):
        ens.fit(X[:, 0], y)
    with pytest.raises(ValidationError, match="same length"):
        ens.fit(X, y[:-1])
    with pytest.raises(ValidationError, match="y is None"):
        ens.fit(X, None)
    with pytest.raises(ValidationError, match="Unknown label type"):
        ens.fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValidationError, match="0 samples"):
        ens.fit(X[:0], y[:0])
    with pytest.raises(TypeError, match="must hold numbers"):  # also a ValidationError
        ens.fit(np.array([["a", 1.0]] * 10, dtype=object), [0, 1] * 5)


def test_too_little_data_to_hold_out(data3) -> None:
    X, _ = data3
    with pytest.raises(ValidationError, match="single sample"):
        WeightedEnsemble(_two()).fit(X[:3], [0, 1, 2])


@pytest.mark.parametrize("make", COMBINERS)
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_member_probabilities_are_refused(make, poison: float, data3) -> None:
    """Refused before any probability comes back (in fit where fit reads them, MeanEnsemble at predict)."""
    X, y = data3
    members = [("bad", PoisonedProba(poison).fit(X, y)), ("lr", LogisticRegression().fit(X, y))]
    with pytest.raises(ValidationError, match="member 'bad' returned NaN or infinite probabilities for 1 of"):
        make(members, prefit=True).fit(X, y).predict_proba(X)


@pytest.mark.parametrize("make", COMBINERS)
def test_nan_member_probabilities_are_refused_at_predict(make, data3) -> None:
    """A member that turns NaN after fit: the combiner refuses, never averages NaN in (or escalates past it)."""
    X, y = data3
    bad = PoisonedProba().fit(X, y)
    est = make([("bad", bad), ("lr", LogisticRegression().fit(X, y))], prefit=True).fit(X, y)
    bad.poison = np.nan  # prefit members are used as they are, so this reaches the combiner
    with pytest.raises(ValidationError, match="member 'bad' returned NaN or infinite") as info:
        est.predict_proba(X[:5])
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValidationError, match="NaN or infinite"):
        est.predict(X[:5])


@pytest.mark.parametrize("make", COMBINERS)
def test_member_probabilities_outside_0_1_are_refused(make, data3) -> None:
    X, y = data3
    members = [("logits", PoisonedProba(7.5).fit(X, y)), ("lr", LogisticRegression().fit(X, y))]
    with pytest.raises(ValidationError, match=r"member 'logits' returned predict_proba values in .*expected "
                                              r"probabilities in \[0, 1\]"):
        make(members, prefit=True).fit(X, y).predict_proba(X)


def test_stacking_refuses_a_member_whose_out_of_fold_probabilities_are_nan(data3) -> None:
    X, y = data3
    with pytest.raises(ValidationError, match="member 'bad' returned NaN"):
        StackingEnsemble([("bad", PoisonedProba(np.nan)), ("lr", LogisticRegression())], cv=3).fit(X, y)


@pytest.mark.parametrize("make", COMBINERS)
def test_inputs_with_more_than_two_dimensions_are_refused_in_fit_and_predict(make, data3) -> None:
    """One rule for every combiner: X is 2-D; 3-D input is refused (with the reshape to use), never flattened."""
    X, y = data3
    X3 = X.reshape(len(X), 2, 4)
    with pytest.raises(ValidationError, match=r"got 3-D input of shape \(600, 2, 4\).*X.reshape\(len\(X\), -1\)"):
        make(_two()).fit(X3, y)
    est = make(_two()).fit(X, y)
    with pytest.raises(ValidationError, match=r"got 3-D input of shape \(600, 2, 4\)"):
        est.predict_proba(X3)
    with pytest.raises(ValidationError, match="got 4-D input"):
        est.predict(X.reshape(len(X), 2, 2, 2))


def test_stacking_with_a_single_class_in_y(data3) -> None:
    X, y = data3
    fitted = [(n, m.fit(X, y)) for n, m in _two()]
    with pytest.raises(ValidationError, match=r"meta-model \(final_estimator\) on y, which needs at least 2 classes; "
                                              r"got 1 class \(\[0\]\)"):
        StackingEnsemble(fitted, prefit=True).fit(X, np.zeros(len(X), dtype=int))


def test_stacking_with_a_class_of_a_single_sample(data3) -> None:
    X, _ = data3
    y = np.r_[np.zeros(len(X) - 1, dtype=int), 1]
    with pytest.raises(ValidationError, match=r"at least 2 samples of every class .* classes \[1\] have a single"):
        StackingEnsemble(_two(), cv=3).fit(X, y)
