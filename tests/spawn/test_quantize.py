"""Quantization: int8 modules for real, accuracy close to float, latency measured (not asserted)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.models import TorchClassifier, measure_latency
from crossfeed.spawn import is_quantized, quantize, quantize_dynamic, quantize_static, weights_file_size


def _acc(model, X, y) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean(model.predict(X) == y))


def _module_types(model: TorchClassifier) -> set[str]:
    return {type(m).__name__ for m in model.module_.modules()}


def _dynamic_linears(model: TorchClassifier) -> int:
    return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.module_.modules())


def _float_linears(model: TorchClassifier) -> int:
    return sum(type(m) is nn.Linear for m in model.module_.modules())


def test_dynamic_quantization_of_linear_layers(mlp_model, pooled) -> None:  # type: ignore[no-untyped-def]
    X_te, y_te = pooled["X_test"], pooled["y_test"]
    q = quantize_dynamic(mlp_model)
    assert is_quantized(q) and not is_quantized(mlp_model)
    assert _dynamic_linears(q) == 3 and _float_linears(q) == 0
    assert abs(_acc(q, X_te, y_te) - _acc(mlp_model, X_te, y_te)) < 0.03
    assert weights_file_size(q) < 0.4 * weights_file_size(mlp_model)  # int8 weights
    for model in (mlp_model, q):  # measured, not assumed; no assertion on speed here
        assert measure_latency(model, X_te, batch_size=256, repeats=2) > 0


def test_static_quantization_of_a_cnn(small_model, pooled) -> None:  # type: ignore[no-untyped-def]
    X, X_te, y_te = pooled["X"], pooled["X_test"], pooled["y_test"]
    q = quantize_static(small_model, X[:512])
    types = _module_types(q)
    assert {"ConvReLU1d", "LinearReLU"} <= types  # conv + BN + ReLU fused into int8 kernels
    assert any(
        isinstance(m, torch.ao.nn.quantized.Conv1d) for m in q.module_.modules()
    )
    assert abs(_acc(q, X_te, y_te) - _acc(small_model, X_te, y_te)) < 0.03
    assert q.device == "cpu" and q.predict_proba(X_te[:5]).shape == (5, 10)
    assert weights_file_size(q) < weights_file_size(small_model)
    assert measure_latency(q, X_te, batch_size=1, repeats=2) > 0


def test_quantize_picks_the_route(small_model, mlp_model, pooled) -> None:  # type: ignore[no-untyped-def]
    assert "ConvReLU1d" in _module_types(quantize(small_model, pooled["X"][:256]))
    assert _dynamic_linears(quantize(mlp_model)) == 3
    assert _dynamic_linears(quantize(small_model)) == 2  # no calibration data: Linear layers only


def test_quantization_does_not_touch_the_input(mlp_model) -> None:  # type: ignore[no-untyped-def]
    quantize_dynamic(mlp_model)
    assert not is_quantized(mlp_model) and isinstance(mlp_model.module_.head, nn.Linear)


def test_bad_input_raises(mlp_model, small_model, pooled) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="already quantized"):
        quantize_dynamic(quantize_dynamic(mlp_model))
    with pytest.raises(ValidationError, match="dtype"):
        quantize_dynamic(mlp_model, dtype="int4")
    with pytest.raises(ValidationError, match="backend"):
        quantize_static(small_model, pooled["X"][:64], backend="tpu")
    with pytest.raises(ValidationError, match="features"):
        quantize_static(small_model, pooled["X"][:64, :10])
    conv_only = TorchClassifier(nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 10, 40), nn.Flatten()),
                                epochs=1, random_state=0).fit(pooled["X"][:200], pooled["y"][:200])
    with pytest.raises(ValidationError, match="quantize_static"):
        quantize_dynamic(conv_only)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.fc(x)
        return -self.fc(x)


def test_untraceable_module_gets_a_clear_error(pooled) -> None:  # type: ignore[no-untyped-def]
    model = TorchClassifier(_Untraceable(), epochs=1, random_state=0).fit(pooled["X"][:200], pooled["y"][:200])
    with pytest.raises(ValidationError, match="quantize_dynamic"):
        quantize_static(model, pooled["X"][:64])
