"""Distillation: it must beat the same student trained without it, and fail loudly on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from crossfeed.exceptions import LabelMismatchError, NotFittedError, UnknownNameError, ValidationError
from crossfeed.models import TorchClassifier
from crossfeed.spawn import DistillationHook, Distiller, teacher_logits


def _acc(model, X, y) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean(model.predict(X) == y))


@pytest.fixture(scope="module")
def few_labels(pooled: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """15 labelled samples per class; the rest of the train split and the field data unlabelled."""
    X, y = pooled["X"], pooled["y"]
    rng = np.random.default_rng(0)
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), 15, replace=False) for c in np.unique(y)])
    rest = np.setdiff1d(np.arange(len(X)), lab)
    return {"X": X[lab], "y": y[lab], "X_transfer": np.concatenate([X[rest], pooled["X_field"]])}


def _tiny(seed: int) -> TorchClassifier:
    return TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=30, lr=3e-3, random_state=seed)


def test_distillation_beats_training_from_scratch(teacher, few_labels, pooled) -> None:  # type: ignore[no-untyped-def]
    X_te, y_te = pooled["X_test"], pooled["y_test"]
    scratch = [_acc(_tiny(s).fit(few_labels["X"], few_labels["y"]), X_te, y_te) for s in (0, 1, 2)]
    distilled = [
        _acc(Distiller(teacher, _tiny(s)).fit(few_labels["X"], few_labels["y"], X_transfer=few_labels["X_transfer"]),
             X_te, y_te)
        for s in (0, 1, 2)
    ]
    spread = max(max(scratch) - min(scratch), max(distilled) - min(distilled))
    gap = float(np.median(distilled) - np.median(scratch))
    assert min(distilled) > max(scratch), (scratch, distilled)
    assert gap > 2 * spread, (scratch, distilled)
    assert gap > 0.15  # about 0.3 -> 0.65 here; the teacher is at about 0.8


def test_mixup_rows_beat_the_same_distillation_without_them(teacher, few_labels, pooled) -> None:  # type: ignore[no-untyped-def]
    """150 labels and 100 transfer rows: mixup rows labelled by the teacher more than double what the student learns."""
    X_te, y_te = pooled["X_test"], pooled["y_test"]
    X, y, X_tr = few_labels["X"], few_labels["y"], few_labels["X_transfer"][:100]
    plain = [_acc(Distiller(teacher, _tiny(s)).fit(X, y, X_transfer=X_tr), X_te, y_te) for s in (0, 1, 2)]
    mixed = [_acc(Distiller(teacher, _tiny(s), mixup=1500).fit(X, y, X_transfer=X_tr), X_te, y_te) for s in (0, 1, 2)]
    assert min(mixed) > max(plain), (plain, mixed)
    assert float(np.median(mixed) - np.median(plain)) > 0.2, (plain, mixed)  # about 0.3 -> 0.65 here


class _Recording(ClassifierMixin, BaseEstimator):
    """A fitted teacher that remembers every input it was asked to label."""

    def __init__(self, teacher) -> None:  # type: ignore[no-untyped-def]
        self.teacher, self.classes_, self.seen = teacher, teacher.classes_, []

    def fit(self, X, y):  # type: ignore[no-untyped-def]  # never called: makes it an estimator to sklearn's checks
        raise AssertionError("the Distiller must not refit its teacher")

    def predict_proba(self, X):  # type: ignore[no-untyped-def]
        self.seen.append(np.array(X))
        return self.teacher.predict_proba(X)


def test_mixup_pool_is_seeded_and_reaches_sklearn_students(teacher, few_labels) -> None:  # type: ignore[no-untyped-def]
    X, y = few_labels["X"], few_labels["y"]

    def pool(student, **kwargs):  # type: ignore[no-untyped-def]
        recording = _Recording(teacher)
        Distiller(recording, student, mixup=200, **kwargs).fit(X, y)
        (labelled,) = recording.seen  # the teacher labels the training and mixup rows once
        assert labelled.shape == (len(X) + 200, X.shape[1])
        np.testing.assert_array_equal(labelled[: len(X)], X)
        return labelled[len(X):]

    tree = DecisionTreeClassifier(random_state=0)
    np.testing.assert_array_equal(pool(tree, random_state=5), pool(tree, random_state=5))
    assert np.abs(pool(tree, random_state=5) - pool(tree, random_state=6)).max() > 0.1
    # without its own seed the Distiller draws the pool from the student's
    assert np.abs(pool(DecisionTreeClassifier(random_state=5)) - pool(DecisionTreeClassifier(random_state=6))).max() > 0.1
    np.testing.assert_array_equal(pool(DecisionTreeClassifier(random_state=5)), pool(tree, random_state=5))
    # a student without gradients learns the teacher's labels on the mixup rows too
    plain = Distiller(teacher, tree).fit(X, y)
    mixed = Distiller(teacher, tree, mixup=2000, random_state=0).fit(X, y)
    assert mixed.student_.tree_.node_count > plain.student_.tree_.node_count


def test_mixup_refuses_inputs_with_nothing_to_interpolate(teacher) -> None:  # type: ignore[no-untyped-def]
    ids = np.random.default_rng(0).integers(0, 50, size=(60, 40)).astype(np.float32)  # word ids, say
    labels = np.arange(60) % 10
    with pytest.raises(ValidationError, match="every column of the training and transfer rows holds whole numbers"):
        Distiller(teacher, DecisionTreeClassifier(), mixup=100).fit(ids, labels)
    Distiller(teacher, DecisionTreeClassifier(), mixup=0).fit(ids, labels)  # without mixup: fine
    Distiller(teacher, DecisionTreeClassifier(), mixup=100, mixup_alpha=np.float32(0.5)).fit(ids + 0.5, labels)


def test_alpha_zero_is_plain_training(teacher, few_labels, pooled) -> None:  # type: ignore[no-untyped-def]
    student = _tiny(3).set_params(epochs=5)
    plain = clone(student).fit(few_labels["X"], few_labels["y"])
    d = Distiller(teacher, student, alpha=0.0).fit(few_labels["X"], few_labels["y"])
    np.testing.assert_allclose(d.predict_proba(pooled["X_test"]), plain.predict_proba(pooled["X_test"]), atol=1e-6)
    # ...while the default alpha changes the result
    kd = Distiller(teacher, student).fit(few_labels["X"], few_labels["y"])
    assert np.abs(kd.predict_proba(pooled["X_test"]) - plain.predict_proba(pooled["X_test"])).max() > 1e-2


def test_teacher_is_used_as_is(teacher, few_labels) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in teacher.module_.state_dict().items()}
    d = Distiller(teacher, _tiny(0).set_params(epochs=1)).fit(few_labels["X"], few_labels["y"])
    assert d.teacher_ is teacher
    for k, v in teacher.module_.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert d.classes_.tolist() == teacher.classes_.tolist()
    assert d.student_ is not d.student and not hasattr(d.student, "module_")  # the template is cloned


def test_validation_fraction_keeps_teacher_rows_aligned(teacher, few_labels) -> None:  # type: ignore[no-untyped-def]
    student = _tiny(0).set_params(epochs=3, validation_fraction=0.2, patience=2)
    d = Distiller(teacher, student).fit(few_labels["X"], few_labels["y"], X_transfer=few_labels["X_transfer"][:300])
    assert "val_loss" in d.student_.history_[0]
    assert d.predict_logits(few_labels["X"][:4]).shape == (4, 10)


@pytest.mark.parametrize("student", [DecisionTreeClassifier(random_state=0), KNeighborsClassifier(5)],
                         ids=["sample_weight", "no_sample_weight"])
def test_sklearn_student_learns_from_teacher_labels(teacher, few_labels, pooled, student) -> None:  # type: ignore[no-untyped-def]
    X_te, y_te = pooled["X_test"], pooled["y_test"]
    alone = _acc(clone(student).fit(few_labels["X"], few_labels["y"]), X_te, y_te)
    d = Distiller(teacher, student).fit(few_labels["X"], few_labels["y"], X_transfer=few_labels["X_transfer"])
    assert _acc(d, X_te, y_te) > alone + 0.08
    assert not hasattr(d, "predict_logits")  # the student has none; available_if says so
    assert d.predict_proba(X_te[:3]).shape == (3, 10)


class _Wide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(40, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_label_mismatch_raises(teacher, few_labels) -> None:  # type: ignore[no-untyped-def]
    X, y = few_labels["X"], few_labels["y"]
    with pytest.raises(LabelMismatchError, match="does not know"):
        Distiller(teacher, _tiny(0)).fit(X, np.where(y == 0, 10, y))
    # a student whose module cannot output the teacher's classes
    with pytest.raises(LabelMismatchError, match="share one label set"):
        Distiller(teacher, TorchClassifier(_Wide(), epochs=1)).fit(X, y)
    # a teacher that knows fewer classes than the labels hold
    half = y < 5
    small_teacher = LogisticRegression(max_iter=50).fit(X[half], y[half])
    with pytest.raises(LabelMismatchError):
        Distiller(small_teacher, _tiny(0)).fit(X, y)


@pytest.mark.parametrize(("param", "value", "match"), [
    ("temperature", 0.0, "temperature"), ("temperature", -2.0, "temperature"),
    ("alpha", 1.5, "alpha"), ("alpha", -0.1, "alpha"), ("hint_weight", -1.0, "hint_weight"),
    ("hints", "features.0", "pairs"), ("hints", [("a", "b", "c")], "pair"),
    ("mixup", -1, "mixup"), ("mixup", 2.5, "mixup"), ("mixup", True, "mixup"),
    ("mixup_alpha", 0.0, "mixup alpha"), ("mixup_alpha", float("nan"), "mixup alpha"),
])
def test_bad_parameters_raise(teacher, few_labels, param, value, match) -> None:  # type: ignore[no-untyped-def]
    d = Distiller(teacher, _tiny(0).set_params(epochs=1), **{param: value})
    with pytest.raises(ValidationError, match=match):
        d.fit(few_labels["X"], few_labels["y"])


def test_unfitted_teacher_and_unfitted_distiller_raise(few_labels) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFittedError, match="not fitted"):
        Distiller(_tiny(0), _tiny(1)).fit(few_labels["X"], few_labels["y"])
    with pytest.raises(NotFittedError):
        Distiller(_tiny(0), _tiny(1)).predict(few_labels["X"])


def test_params_roundtrip_and_clone(teacher) -> None:  # type: ignore[no-untyped-def]
    d = Distiller(teacher, _tiny(0), temperature=2.0, alpha=0.5, hints=[("features.8", "features.4")])
    params = d.get_params(deep=False)
    assert params["temperature"] == 2.0 and params["hints"] == [("features.8", "features.4")]
    assert clone(d).get_params(deep=False)["alpha"] == 0.5


# -- FitNets hints -----------------------------------------------------------------------------
def test_hint_projection_is_trained(teacher, few_labels) -> None:  # type: ignore[no-untyped-def]
    X, y = few_labels["X"], few_labels["y"]
    hints = [("features.10", "features.6"), ("classifier.1", "classifier.1")]
    hook = DistillationHook(
        teacher_logits(teacher, X), teacher_module=teacher.module_, hints=hints, example_x=X, alpha=0.5,
    )
    _tiny(0).set_params(epochs=3).fit(X, y, hooks=[hook])
    # medium teacher: 32 channels, 128 hidden; tiny student: 8 channels, 32 hidden
    assert isinstance(hook.projections[0], nn.Conv1d) and hook.projections[0].out_channels == 32
    assert isinstance(hook.projections[1], nn.Linear) and hook.projections[1].out_features == 128
    final = hook.projections.state_dict()
    for key, initial in hook.initial_projection_state.items():
        assert not torch.allclose(final[key], initial), f"projection weight {key} did not change"


def test_hint_distiller_runs_and_differs_from_no_hints(teacher, few_labels, pooled) -> None:  # type: ignore[no-untyped-def]
    X, y = few_labels["X"], few_labels["y"]
    student = _tiny(0).set_params(epochs=3)
    with_hints = Distiller(teacher, student, hints=[("features.10", "features.6")], hint_weight=5.0).fit(X, y)
    without = Distiller(teacher, student).fit(X, y)
    assert isinstance(with_hints.hint_projections_[0], nn.Conv1d)
    assert without.hint_projections_ is None
    assert not np.allclose(with_hints.predict_proba(pooled["X_test"]), without.predict_proba(pooled["X_test"]))


def test_unknown_hint_layers_list_the_names(teacher, few_labels) -> None:  # type: ignore[no-untyped-def]
    X, y = few_labels["X"], few_labels["y"]
    with pytest.raises(UnknownNameError, match=r"teacher has no layer 'features\.99'.*features\.8"):
        Distiller(teacher, _tiny(0), hints=[("features.99", "features.4")]).fit(X, y)
    with pytest.raises(UnknownNameError, match=r"student has no layer 'featurs\.4'.*did you mean 'features\.4'"):
        Distiller(teacher, _tiny(0), hints=[("features.8", "featurs.4")]).fit(X, y)
    with pytest.raises(ValidationError, match="PyTorch teacher"):
        lr = LogisticRegression(max_iter=50).fit(X, y)
        Distiller(lr, _tiny(0), hints=[("a", "b")]).fit(X, y)
