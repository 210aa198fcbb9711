"""Export a fitted TorchClassifier to ONNX for edge devices, with a parity check.

The module is wrapped with a softmax so the ONNX graph maps ``input`` of shape
(batch, n_features) to ``probabilities`` of shape (batch, n_classes) with a dynamic batch axis.
It is exported with ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based
exporter, default since torch 2.9; it needs ``onnxscript``), checked against PyTorch with
ONNX Runtime, and written atomically: to a temporary file in the destination folder, then
``os.replace``. On any failure (export, parity, a folder that cannot be written) nothing is left
at ``path``. The file holds standard ONNX operators only, so ``onnxruntime`` alone runs it.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed._validation import check_features
from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.models import TorchClassifier, check_torch_model
from crossfeed.spawn._quantize import is_quantized

__all__ = ["ExportReport", "export_onnx"]

logger = logging.getLogger(__name__)

#: ONNX operator domains that any ONNX Runtime build implements.
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote.

    Attributes
    ----------
    path : the ONNX file.
    file_size_bytes : its size.
    max_abs_diff : the largest absolute difference between the probabilities of ONNX Runtime and
        PyTorch on ``example_X``.
    opset : the default-domain opset of the file.
    """

    path: Path
    file_size_bytes: int
    max_abs_diff: float
    opset: int


class _WithSoftmax(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.module(x), dim=-1)


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as exc:
        raise missing_dependency(exc.name or "onnx", "onnx") from None
    return onnx, onnxruntime


def export_onnx(
    model: TorchClassifier,
    path: str | os.PathLike[str],
    *,
    example_X: Any,
    opset: int | None = None,
    atol: float | None = 1e-4,
) -> ExportReport:
    """Write ``model`` to ``path`` as an ONNX graph that outputs class probabilities.

    Parameters
    ----------
    model : fitted float TorchClassifier (quantized modules are refused: export the float model
        and quantize the ONNX file with ``onnxruntime.quantization`` instead).
    path : destination file; its folder must exist. An existing file is replaced only on success.
    example_X : array of shape (n_samples, n_features); traces the graph and measures parity
        (use a test split).
    opset : ONNX opset version; default: the exporter's recommended one.
    atol : float or None; raise ``ValidationError`` (writing nothing) if the parity difference
        exceeds it. None only reports it.

    Returns
    -------
    ExportReport(path, file_size_bytes, max_abs_diff, opset).

    Raises ``MissingDependencyError`` without onnx, onnxruntime or onnxscript
    (``pip install 'crossfeed[onnx]'``).

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).normal(size=(64, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> m = TorchClassifier("mlp", module_kwargs={"hidden": (16,)}, epochs=2, random_state=0).fit(X, y)
    >>> report = export_onnx(m, os.path.join(tempfile.mkdtemp(), "m.onnx"), example_X=X)  # doctest: +SKIP
    >>> report.max_abs_diff < 1e-4                                                      # doctest: +SKIP
    True
    """
    model = check_torch_model(model, owner="export_onnx")
    if is_quantized(model):
        raise ValidationError(
            "export_onnx exports float models; this one is quantized by torch. Export the float model, "
            "then quantize the ONNX file with onnxruntime.quantization.quantize_dynamic"
        )
    onnx, ort = _import_onnx()
    X = check_features(example_X, name="example_X", n_features=model.n_features_in_)
    X = X.reshape(len(X), -1).astype(np.float32)
    target = Path(path)
    if not target.parent.is_dir():
        raise ValidationError(f"the folder of {str(target)!r} does not exist; create it first")
    if target.is_dir():
        raise ValidationError(f"{str(target)!r} is a folder; pass a file path such as {str(target / 'model.onnx')!r}")
    wrapper = _WithSoftmax(copy.deepcopy(model.module_).cpu().eval()).eval()
    trace_x = torch.as_tensor(X[:2] if len(X) >= 2 else np.repeat(X, 2, axis=0))
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ValidationError(f"cannot write to {str(target.parent)!r}: {exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        program = _export_program(wrapper, trace_x, opset)
        program.save(str(tmp), external_data=False)
        proto = onnx.load(str(tmp))
        foreign = sorted({node.domain for node in proto.graph.node} - STANDARD_DOMAINS)
        if foreign:
            raise ValidationError(f"the exported graph uses non-standard operator domains {foreign}")
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        onnx_proba = np.concatenate(
            [session.run(None, {"input": X[i : i + 1024]})[0] for i in range(0, len(X), 1024)]
        )
        with torch.no_grad():
            torch_proba = wrapper(torch.as_tensor(X)).numpy()
        diff = float(np.max(np.abs(onnx_proba - torch_proba)))
        if atol is not None and not diff <= atol:
            raise ValidationError(
                f"ONNX Runtime and PyTorch disagree by {diff:.2e} (> atol={atol:g}) on example_X; nothing written"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    opset_used = next((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), -1)
    logger.info("exported %s (%d bytes, parity %.1e)", target, target.stat().st_size, diff)
    return ExportReport(path=target, file_size_bytes=target.stat().st_size, max_abs_diff=diff, opset=opset_used)


def _export_program(wrapper: nn.Module, trace_x: torch.Tensor, opset: int | None) -> Any:
    batch = torch.export.Dim("batch", min=1)
    # torch's exporter logs one warning per torchvision operator when torchvision is absent
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")
            return torch.onnx.export(
                wrapper,
                (trace_x,),
                dynamo=True,
                input_names=["input"],
                output_names=["probabilities"],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
        raise ValidationError(
            f"torch.onnx.export could not export {type(wrapper.module).__name__} "
            f"({type(exc).__name__}: {first[0] if first else ''}); make its forward traceable by torch.export "
            "(no data-dependent Python control flow, no NumPy calls)"
        ) from exc
    finally:
        registration.setLevel(level)
