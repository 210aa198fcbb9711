"""Pruning: structured pruning really shrinks the model and its file; unstructured zeros are permanent."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from torch import nn
from torch.nn.utils import prune as torch_prune

from crossfeed.exceptions import MissingDependencyError, ValidationError
from crossfeed.models import TorchClassifier, count_params, load_model, save_model
from crossfeed.spawn import prune_structured, prune_unstructured, sparsity


def _acc(model, X, y) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean(model.predict(X) == y))


def test_structured_pruning_shrinks_params_and_file(small_model, pooled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pruned = prune_structured(small_model, 0.5, example_X=pooled["X"])
    assert pruned.module_kwargs["channels"] == [8, 8, 8] and pruned.module_kwargs["hidden"] == 32
    assert count_params(pruned) < 0.35 * count_params(small_model)
    convs = [m for m in pruned.module_.modules() if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [8, 8, 8]
    save_model(small_model, tmp_path / "full")
    save_model(pruned, tmp_path / "pruned")
    full_size = (tmp_path / "full" / "model.safetensors").stat().st_size
    pruned_size = (tmp_path / "pruned" / "model.safetensors").stat().st_size
    assert pruned_size < 0.4 * full_size
    reloaded = load_model(tmp_path / "pruned")
    np.testing.assert_allclose(reloaded.predict_proba(pooled["X_test"]), pruned.predict_proba(pooled["X_test"]),
                               atol=1e-6)
    # the input model is untouched
    assert count_params(small_model) == 5546 and "channels" not in (small_model.module_kwargs or {})


def test_structured_pruning_of_an_mlp_and_ratio_zero(mlp_model, pooled) -> None:  # type: ignore[no-untyped-def]
    pruned = prune_structured(mlp_model, 0.25, example_X=pooled["X"])
    assert pruned.module_kwargs["hidden"] == [48, 48]
    same = prune_structured(mlp_model, 0.0, example_X=pooled["X"])
    np.testing.assert_allclose(same.predict_proba(pooled["X_test"]), mlp_model.predict_proba(pooled["X_test"]),
                               atol=1e-6)


def test_recovery_by_distillation_helps(small_model, teacher, pooled) -> None:  # type: ignore[no-untyped-def]
    X, y, X_te, y_te = pooled["X"], pooled["y"], pooled["X_test"], pooled["y_test"]
    raw = prune_structured(small_model, 0.75, example_X=X)
    recovered = prune_structured(small_model, 0.75, example_X=X, teacher=teacher,
                                 fine_tune={"X": X, "y": y, "epochs": 5, "lr": 3e-3})
    assert count_params(recovered) == count_params(raw)
    assert _acc(recovered, X_te, y_te) > _acc(raw, X_te, y_te) + 0.05


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), "half"])
def test_ratio_outside_unit_interval_raises(small_model, pooled, ratio) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=r"\[0, 1\)"):
        prune_structured(small_model, ratio, example_X=pooled["X"])
    with pytest.raises(ValidationError, match=r"\[0, 1\)"):
        prune_unstructured(small_model, ratio)


def test_bad_models_and_fine_tune_raise(small_model, pooled) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="TorchClassifier"):
        prune_unstructured(object(), 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="fine_tune"):
        prune_unstructured(small_model, 0.5, fine_tune={"X": pooled["X"]})
    with pytest.raises(ValidationError, match="unknown fine_tune keys"):
        prune_unstructured(small_model, 0.5, fine_tune={"X": pooled["X"], "y": pooled["y"], "epoch": 3})
    with pytest.raises(ValidationError, match="pass a teacher"):
        prune_unstructured(small_model, 0.5, fine_tune={"X": pooled["X"], "y": pooled["y"], "X_transfer": pooled["X"]})
    with pytest.raises(ValidationError, match="scope"):
        prune_unstructured(small_model, 0.5, scope="everything")


def test_missing_torch_pruning_names_the_extra(small_model, pooled, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[prune\]'"):
        prune_structured(small_model, 0.5, example_X=pooled["X"])


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_unstructured_pruning_zeros_weights_permanently(small_model, pooled, scope) -> None:  # type: ignore[no-untyped-def]
    assert sparsity(small_model) == 0.0
    pruned = prune_unstructured(small_model, 0.6, scope=scope)
    assert sparsity(pruned) == pytest.approx(0.6, abs=0.01)
    names = [n for n, _ in pruned.module_.named_parameters()] + [n for n, _ in pruned.module_.named_buffers()]
    assert not any(n.endswith(("_orig", "_mask")) for n in names)
    assert not any(torch_prune.is_pruned(m) for m in pruned.module_.modules())
    assert sparsity(small_model) == 0.0  # input untouched
    if scope == "layer":
        for m in pruned.module_.modules():
            if isinstance(m, nn.Conv1d | nn.Linear):
                assert float((m.weight == 0).float().mean()) == pytest.approx(0.6, abs=0.02)


def test_unstructured_fine_tuning_keeps_zeros_and_saves(small_model, pooled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = pooled["X"], pooled["y"]
    pruned = prune_unstructured(small_model, 0.8, fine_tune={"X": X, "y": y, "epochs": 2})
    assert sparsity(pruned) == pytest.approx(0.8, abs=0.01)
    save_model(pruned, tmp_path / "sparse")
    assert sparsity(load_model(tmp_path / "sparse")) == pytest.approx(0.8, abs=0.01)
    assert pruned.get_params()["epochs"] == small_model.epochs  # parameters still describe the model


def test_pruned_custom_module_stays_usable(pooled) -> None:  # type: ignore[no-untyped-def]
    net = nn.Sequential(nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 10))
    model = TorchClassifier(net, epochs=2, random_state=0).fit(pooled["X"], pooled["y"])
    pruned = prune_structured(model, 0.5, example_X=pooled["X"])
    assert pruned.module_[0].out_features == 16
    assert isinstance(pruned.module, nn.Module)  # no architecture kwargs to describe it
    assert pruned.predict(pooled["X_test"]).shape == pooled["y_test"].shape
