"""ONNX export: probabilities match PyTorch, onnxruntime alone runs the file, failures leave nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from crossfeed.exceptions import MissingDependencyError, ValidationError
from crossfeed.models import TorchClassifier
from crossfeed.spawn import ExportReport, export_onnx, quantize_dynamic

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(small_model, pooled, tmp_path_factory) -> ExportReport:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    return export_onnx(small_model, path, example_X=pooled["X_test"])


def test_parity_on_the_test_split(exported, small_model) -> None:  # type: ignore[no-untyped-def]
    assert exported.max_abs_diff <= 1e-4
    assert exported.path.is_file() and exported.file_size_bytes == exported.path.stat().st_size
    assert exported.opset >= 17
    graph = onnx.load(str(exported.path)).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}  # no custom ops
    assert [o.name for o in graph.output] == ["probabilities"]
    assert not list(exported.path.parent.glob("*.tmp"))


def test_onnxruntime_alone_runs_the_file(exported, small_model, pooled) -> None:  # type: ignore[no-untyped-def]
    X = pooled["X_test"][:7]
    code = (
        "import json, sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(exported.path)!r}, providers=['CPUExecutionProvider'])\n"
        "x = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)\n"
        "print(json.dumps(s.run(None, {'input': x})[0].tolist()))\n"
        "assert not any(m.startswith(('torch', 'crossfeed')) for m in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(X.tolist()), capture_output=True,
                         text=True, check=True, timeout=60)
    proba = np.asarray(json.loads(out.stdout))
    np.testing.assert_allclose(proba, small_model.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_missing_folder_raises_and_writes_nothing(small_model, pooled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="does not exist"):
        export_onnx(small_model, tmp_path / "no" / "such" / "m.onnx", example_X=pooled["X_test"])
    assert list(tmp_path.iterdir()) == []


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        if out.sum() > 0:  # torch.export cannot capture Python control flow on values
            return out
        return -out


def test_failed_export_leaves_no_partial_file(pooled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = TorchClassifier(_DataDependent(), epochs=1, random_state=0).fit(pooled["X"][:200], pooled["y"][:200])
    target = tmp_path / "bad.onnx"
    target.write_bytes(b"previous model")
    with pytest.raises(ValidationError, match="could not export"):
        export_onnx(model, target, example_X=pooled["X_test"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]
    assert target.read_bytes() == b"previous model"  # an existing file is replaced only on success


def test_parity_failure_leaves_no_file(small_model, pooled, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime

    class Broken:
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            pass

        def run(self, outputs, feeds):  # type: ignore[no-untyped-def]
            return [np.zeros((len(feeds["input"]), 10), dtype=np.float32)]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Broken)
    with pytest.raises(ValidationError, match="disagree"):
        export_onnx(small_model, tmp_path / "m.onnx", example_X=pooled["X_test"][:50])
    assert list(tmp_path.iterdir()) == []


def test_refusals(small_model, mlp_model, pooled, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="quantized"):
        export_onnx(quantize_dynamic(mlp_model), tmp_path / "q.onnx", example_X=pooled["X_test"])
    with pytest.raises(ValidationError, match="folder"):
        export_onnx(small_model, tmp_path, example_X=pooled["X_test"])
    with pytest.raises(ValidationError, match="features"):
        export_onnx(small_model, tmp_path / "m.onnx", example_X=pooled["X_test"][:, :5])
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[onnx\]'"):
        export_onnx(small_model, tmp_path / "m.onnx", example_X=pooled["X_test"])
    assert list(tmp_path.iterdir()) == []
