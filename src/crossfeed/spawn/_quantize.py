"""Post-training int8 quantization of a fitted TorchClassifier (CPU inference).

Which route, and why
--------------------
In torch 2.13 the eager and FX quantization APIs of ``torch.ao.quantization`` still ship and
work on CPU, but are deprecated: their warning points to torchao (``torchao.quantization.
quantize_`` for eager modules, ``prepare_pt2e`` / ``convert_pt2e`` for graphs). torchao is not a
dependency of crossfeed and is not installed on the machines this was built on, and its int8 CPU
kernels for small convolutional models are not what torchao targets (it targets large linear
layers on GPU), so crossfeed uses the ``torch.ao.quantization`` routes that work here:

- :func:`quantize_dynamic`: ``torch.ao.quantization.quantize_dynamic``. Weights of ``nn.Linear``
  (and ``nn.LSTM`` / ``nn.GRU``) are stored in int8; activations are quantized on the fly per
  batch. Convolutions stay in float. Needs no calibration data.
- :func:`quantize_static`: FX graph mode post-training static quantization
  (``prepare_fx`` -> calibrate -> ``convert_fx``) with the ``x86`` (fbgemm) or ``qnnpack``
  backend. Convolutions, BatchNorm (folded) and linear layers run as int8 kernels; scales of the
  activations come from the calibration data. The module must be traceable by ``torch.fx``
  (crossfeed's ``cnn1d`` and ``mlp`` are); otherwise a ``ValidationError`` says so.

Both emit torch's deprecation warning once per process (silenced here, since this docstring says
it). When torch drops ``torch.ao.quantization`` these functions raise ``MissingDependencyError``
naming torchao; porting them to torchao's ``quantize_`` / pt2e is the follow-up.

Quantized modules run on CPU only, cannot be trained further, are not saved by
:func:`crossfeed.models.save_model` (safetensors has no quantized dtypes; see
:func:`weights_file_size` for their int8 size) and are not exported to ONNX (export the float
model and quantize it with ``onnxruntime.quantization`` instead).
"""

from __future__ import annotations

import copy
import logging
import warnings
from contextlib import contextmanager
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from crossfeed._validation import check_features
from crossfeed.exceptions import MissingDependencyError, ValidationError
from crossfeed.models import TorchClassifier, check_torch_model, fitted_copy

__all__ = ["is_quantized", "quantize", "quantize_dynamic", "quantize_static", "quantized_state", "weights_file_size"]

logger = logging.getLogger(__name__)

_DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU)


@contextmanager
def _quiet_deprecation():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
        yield


def _ao() -> Any:
    try:
        with _quiet_deprecation():
            import torch.ao.quantization as ao
            import torch.ao.quantization.quantize_fx  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "this torch has no torch.ao.quantization; its successor is torchao "
            "(pip install torchao), which crossfeed does not support yet"
        ) from None
    return ao


def is_quantized(model: Any) -> bool:
    """True if a fitted model's module holds quantized (int8) layers."""
    module = getattr(model, "module_", model)
    if not isinstance(module, nn.Module):
        return False
    for m in module.modules():
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")):
            return True
    return False


def _check_float(model: TorchClassifier, owner: str) -> None:
    if is_quantized(model):
        raise ValidationError(f"{owner}: the model is already quantized; quantize its float original")


def quantize_dynamic(model: TorchClassifier, *, dtype: str = "qint8") -> TorchClassifier:
    """Dynamic int8 quantization of the Linear (and LSTM/GRU) layers of a fitted model.

    Parameters
    ----------
    model : fitted TorchClassifier; not modified.
    dtype : "qint8" (int8 weights) or "float16" (fp16 weights).

    Returns
    -------
    TorchClassifier, a new fitted model whose ``module_`` holds ``DynamicQuantizedLinear`` layers;
    its ``device`` is "cpu" (quantized kernels are CPU-only).

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).normal(size=(64, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> m = TorchClassifier("mlp", module_kwargs={"hidden": (16,)}, epochs=2, random_state=0).fit(X, y)
    >>> q = quantize_dynamic(m)
    >>> is_quantized(q), q.predict_proba(X).shape
    (True, (64, 2))
    """
    model = check_torch_model(model, owner="quantize_dynamic")
    _check_float(model, "quantize_dynamic")
    dtypes = {"qint8": torch.qint8, "float16": torch.float16}
    if dtype not in dtypes:
        raise ValidationError(f"dtype must be one of {sorted(dtypes)}; got {dtype!r}")
    module = copy.deepcopy(model.module_).cpu().eval()
    if not any(isinstance(m, _DYNAMIC_TYPES) for m in module.modules()):
        raise ValidationError(
            "dynamic quantization converts Linear, LSTM and GRU layers and this module has none; "
            "use quantize_static for convolutional models"
        )
    ao = _ao()
    with _quiet_deprecation():
        quantized = ao.quantize_dynamic(module, set(_DYNAMIC_TYPES), dtype=dtypes[dtype])
    return fitted_copy(model, quantized, device="cpu")


def quantize_static(
    model: TorchClassifier,
    calibration_X: Any,
    *,
    backend: str | None = None,
) -> TorchClassifier:
    """Post-training static int8 quantization (FX graph mode) of a fitted model, convolutions included.

    Conv + BatchNorm (+ ReLU) are fused, observers record activation ranges on
    ``calibration_X``, and the graph is converted to int8 kernels.

    Parameters
    ----------
    model : fitted TorchClassifier; not modified. Its module must be traceable by ``torch.fx``.
    calibration_X : array of shape (n_samples, n_features); a few hundred representative samples.
    backend : "x86", "fbgemm" or "qnnpack"; default: the engine torch uses on this machine
        (``torch.backends.quantized.engine``). The model must run under that engine.

    Returns
    -------
    TorchClassifier, a new fitted model whose ``module_`` is a quantized ``GraphModule`` (CPU).

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).normal(size=(64, 40)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> m = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=1, random_state=0).fit(X, y)
    >>> q = quantize_static(m, X)
    >>> is_quantized(q), q.predict(X).shape
    (True, (64,))
    """
    model = check_torch_model(model, owner="quantize_static")
    _check_float(model, "quantize_static")
    engines = list(torch.backends.quantized.supported_engines)
    backend = backend or torch.backends.quantized.engine
    if backend not in engines or backend == "none":
        raise ValidationError(
            f"quantization backend {backend!r} is not supported by this torch build; supported: "
            f"{[e for e in engines if e != 'none']}"
        )
    X = check_features(calibration_X, name="calibration_X", n_features=model.n_features_in_)
    X = torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32)
    ao = _ao()
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    module = copy.deepcopy(model.module_).cpu().eval()
    previous = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = backend
        with _quiet_deprecation():
            try:
                prepared = prepare_fx(module, ao.get_default_qconfig_mapping(backend), (X[:2],))
            except Exception as exc:  # torch.fx cannot trace data-dependent Python control flow
                raise ValidationError(
                    f"torch.fx could not trace {type(module).__name__} for static quantization ({exc}); "
                    "use quantize_dynamic, or make the forward traceable"
                ) from exc
            with torch.no_grad():
                for start in range(0, len(X), 256):
                    prepared(X[start : start + 256])
            quantized = convert_fx(prepared)
    finally:
        torch.backends.quantized.engine = previous
    if backend != previous:
        logger.warning("model quantized for backend %r; set torch.backends.quantized.engine = %r to run it",
                       backend, backend)
    return fitted_copy(model, quantized, device="cpu")


def quantize(model: TorchClassifier, calibration_X: Any = None) -> TorchClassifier:
    """Int8 quantization by the best route for the model: static (FX) for convolutional models when
    ``calibration_X`` is given, dynamic for the rest.

    Parameters
    ----------
    model : fitted TorchClassifier; not modified.
    calibration_X : array of shape (n_samples, n_features), optional; needed for the static route.

    Returns
    -------
    TorchClassifier with a quantized ``module_`` (see :func:`quantize_static`, :func:`quantize_dynamic`).
    """
    model = check_torch_model(model, owner="quantize")
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.module_.modules())
    if has_conv and calibration_X is not None:
        return quantize_static(model, calibration_X)
    if has_conv:
        logger.warning("quantize: no calibration_X, so only the Linear layers are quantized (dynamic)")
    return quantize_dynamic(model)


def quantized_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors of a (possibly quantized) module's state: int8 values plus scales and zero points.

    What a safetensors file of the quantized weights would hold; used to measure their size.
    """
    out: dict[str, torch.Tensor] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_quantized:
                out[key] = value.int_repr().contiguous()
                if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                       torch.per_channel_affine_float_qparams):
                    out[key + ".scales"] = value.q_per_channel_scales().float().contiguous()
                    out[key + ".zero_points"] = value.q_per_channel_zero_points().contiguous()
                else:
                    out[key + ".scale"] = torch.tensor([value.q_scale()], dtype=torch.float32)
                    out[key + ".zero_point"] = torch.tensor([value.q_zero_point()], dtype=torch.int64)
            else:
                out[key] = value.detach().cpu().contiguous()
        elif isinstance(value, tuple | list):
            for i, item in enumerate(value):
                add(f"{key}.{i}", item)
        # dtypes, qschemes and other metadata carry no weights

    with _quiet_deprecation():
        for key, value in module.state_dict().items():
            add(key, value)
    return out


def weights_file_size(model: Any) -> int:
    """Bytes of a safetensors file holding a fitted model's weights (int8 ones for quantized models).

    For a float model this is the size of ``model.safetensors`` written by
    :func:`crossfeed.models.save_model`.
    """
    module = getattr(model, "module_", model)
    if not isinstance(module, nn.Module):
        raise ValidationError(f"weights_file_size needs a fitted torch model; got {type(model).__name__}")
    state = quantized_state(module)
    unique: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state.items():  # safetensors refuses shared storage; copy aliases
        ptr = tensor.data_ptr() if tensor.numel() else -len(unique) - 1
        unique[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return len(save(unique))

