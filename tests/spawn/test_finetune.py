"""Fine-tuning respects freezing and never mutates its input; spawned experts gain on their domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossfeed.exceptions import LabelMismatchError, UnknownNameError, ValidationError
from crossfeed.models import TorchClassifier
from crossfeed.spawn import finetune, frozen_parameters, make_student, spawn_experts


def _acc(model, X, y) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean(model.predict(X) == y))


def _state(model: TorchClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module_.named_parameters()}


@pytest.mark.parametrize("freeze", ["head", "partial", ["features.0", "features.1"]])
def test_frozen_parameters_do_not_change(small_model, suite, freeze) -> None:  # type: ignore[no-untyped-def]
    before = _state(small_model)
    tuned = finetune(small_model, suite["noisy"], freeze=freeze, epochs=2, patience=None, random_state=0)
    frozen = set(frozen_parameters(small_model.module_, freeze))
    assert frozen
    after = _state(tuned)
    for name, value in after.items():
        if name in frozen:
            assert torch.equal(value, before[name]), f"{name} is frozen but changed"
        else:
            assert not torch.equal(value, before[name]), f"{name} is trainable but did not change"
    # the input is not mutated, and every parameter of the result is trainable again
    for name, value in _state(small_model).items():
        assert torch.equal(value, before[name])
    assert all(p.requires_grad for p in tuned.module_.parameters())
    assert all(p.requires_grad for p in small_model.module_.parameters())
    assert tuned is not small_model and tuned.module_ is not small_model.module_


def test_freeze_modes_select_the_expected_layers(small_model) -> None:  # type: ignore[no-untyped-def]
    names = [n for n, _ in small_model.module_.named_parameters()]
    head = frozen_parameters(small_model.module_, "head")
    assert set(names) - set(head) == {"classifier.3.weight", "classifier.3.bias"}
    partial = frozen_parameters(small_model.module_, "partial")
    assert partial == [n for n in names if n.startswith(("features.0.", "features.1.", "features.4.", "features.5."))]
    assert frozen_parameters(small_model.module_, "none") == []


def test_head_epochs_then_full_unfreezing(small_model, suite) -> None:  # type: ignore[no-untyped-def]
    tuned = finetune(small_model, suite["scaled"], freeze="none", head_epochs=1, epochs=1, random_state=0)
    assert tuned.classes_.tolist() == small_model.classes_.tolist()
    assert tuned.get_params()["epochs"] == small_model.epochs  # parameters still describe the model


def test_early_stopping_uses_the_domain_validation_split(small_model, suite) -> None:  # type: ignore[no-untyped-def]
    tuned = finetune(small_model, suite["default"], epochs=4, patience=1, random_state=0)
    assert all("val_loss" in h for h in tuned.history_)
    assert 1 <= tuned.best_epoch_ <= len(tuned.history_) <= 4


def test_bad_input(small_model, suite) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownNameError, match=r"no layer or parameter named 'featurs'.*features\.0"):
        finetune(small_model, suite["noisy"], freeze=["featurs"])
    with pytest.raises(ValidationError, match="freeze"):
        finetune(small_model, suite["noisy"], freeze="most")
    with pytest.raises(ValidationError, match="Domain"):
        finetune(small_model, suite.pooled("train"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no trainable parameters"):
        finetune(small_model, suite["noisy"], freeze=[""], epochs=1)
    with pytest.raises(ValidationError, match="TorchClassifier"):
        finetune("cnn1d", suite["noisy"])  # type: ignore[arg-type]
    d = suite["noisy"]
    shifted = type(d)(name="other", X_train=d.X_train, y_train=d.y_train + 1, X_val=d.X_val, y_val=d.y_val + 1,
                      X_test=d.X_test, y_test=d.y_test + 1)
    with pytest.raises(LabelMismatchError):
        finetune(small_model, shifted, epochs=1)


def test_make_student_specs() -> None:
    assert make_student("cnn1d:tiny").module_kwargs == {"size": "tiny"}
    assert make_student("mlp").module == "mlp"
    with pytest.raises(UnknownNameError, match="known architectures"):
        make_student("resnet:tiny")


def test_spawn_experts_gain_on_their_domains(teacher, suite) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"epochs": 8, "random_state": 0}
    distilled = spawn_experts(teacher, suite, finetune_epochs=0, **kwargs)
    experts = spawn_experts(teacher, suite, finetune_epochs=10, **kwargs)
    assert sorted(experts) == sorted(suite.names) and sorted(distilled) == sorted(suite.names)
    gains = {}
    for d in suite:
        assert experts[d.name].module_kwargs == {"size": "tiny"}
        gains[d.name] = _acc(experts[d.name], d.X_test, d.y_test) - _acc(distilled[d.name], d.X_test, d.y_test)
    # fine-tuning starts from the very same distilled model (same seeds), so the gain is its doing
    assert all(g > 0 for g in gains.values()), gains
    assert np.mean(list(gains.values())) > 0.05, gains


def test_spawn_experts_bad_input(teacher, suite) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownNameError, match="no domain"):
        spawn_experts(teacher, suite, domains=["mars"])
    with pytest.raises(ValidationError, match="DomainSuite"):
        spawn_experts(teacher, suite.domains)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="finetune_epochs"):
        spawn_experts(teacher, suite, finetune_epochs=-1)
