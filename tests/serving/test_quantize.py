"""quantize_onnx: an int8 model that agrees with the float one, a sidecar marked int8, nothing on failure."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crossfeed.exceptions import EmptyDataError, ValidationError
from crossfeed.serving import OnnxModel, QuantizeReport, quantize_onnx

pytest.importorskip("onnx")
quantization = pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def quantized(onnx_models, data, tmp_path_factory) -> QuantizeReport:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("int8")
    return quantize_onnx(onnx_models["small"].path_, folder / "small.int8.onnx", calibration_X=data["X"])


def test_int8_model_agrees_with_the_float_one(quantized, onnx_models, data) -> None:  # type: ignore[no-untyped-def]
    assert quantized.path.is_file() and quantized.file_size_bytes == quantized.path.stat().st_size
    assert quantized.agreement >= 0.9 and 0 < quantized.max_abs_diff < 0.5  # a few samples move, most agree
    int8, float_model = OnnxModel.load(quantized.path), onnx_models["small"]
    assert int8.dtype_ == "int8" and int8.flops_per_sample_ == float_model.flops_per_sample_
    np.testing.assert_array_equal(int8.classes_, float_model.classes_)
    X = data["X_test"]
    proba = int8.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(int8.predict(X) == float_model.predict(X)) >= 0.9
    assert len(np.unique(proba)) > 256  # the softmax stays float: no 1/255 steps
    np.testing.assert_allclose(int8.predict_proba(X[:1]), proba[:1], atol=1e-6)  # bound batch-1 path
    assert _leftovers(quantized.path.parent) == ["small.int8.onnx", "small.int8.onnx.json"]  # no temporary files


def test_sidecar_is_copied_and_marked_int8(quantized, onnx_models) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((quantized.path.parent / "small.int8.onnx.json").read_text())
    source = onnx_models["small"].metadata_
    assert meta["dtype"] == "int8" and source["dtype"] == "float32"
    assert meta["classes"] == source["classes"] and meta["source"] == source["source"]
    assert meta["quantization"]["format"] == "qdq" and meta["quantization"]["per_channel"] is True
    assert meta["quantization"]["activation_type"] == "uint8"
    assert meta["quantization"]["float_sha256"] == source["onnx_sha256"] != meta["onnx_sha256"]


def test_a_model_without_sidecar_and_the_qoperator_format(onnx_folder, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx_folder / "mlp.onnx", bare)
    source = OnnxModel(bare, classes=np.array(["a", "b", "c"]))
    report = quantize_onnx(source, tmp_path / "q.onnx", calibration_X=data["X"], per_channel=False, format="qoperator")
    assert "session_" not in vars(source)  # the caller's model is not loaded behind its back
    loaded = OnnxModel.load(report.path)
    assert loaded.classes_.tolist() == ["a", "b", "c"] and loaded.dtype_ == "int8"
    assert report.agreement >= 0.8


def _activation_zero_point_types(path):  # type: ignore[no-untyped-def]
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(path)).graph
    inits = {t.name: t.data_type for t in graph.initializer}
    return {inits[node.input[2]] for node in graph.node if node.op_type == "QuantizeLinear" and len(node.input) > 2
            and node.input[0] not in inits}  # activations only: weights are quantized ahead of time


def test_activations_are_unsigned_by_default_and_signed_on_request(onnx_folder, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    onnx = pytest.importorskip("onnx")
    unsigned = quantize_onnx(onnx_folder / "tiny.onnx", tmp_path / "u8.onnx", calibration_X=data["X"])
    signed = quantize_onnx(onnx_folder / "tiny.onnx", tmp_path / "s8.onnx", calibration_X=data["X"], activations="int8")
    assert _activation_zero_point_types(unsigned.path) == {onnx.TensorProto.UINT8}
    assert _activation_zero_point_types(signed.path) == {onnx.TensorProto.INT8}
    meta = json.loads((tmp_path / "s8.onnx.json").read_text())["quantization"]
    assert meta["activation_type"] == "int8"
    assert unsigned.agreement >= 0.8 and signed.agreement >= 0.8


def _leftovers(folder):  # type: ignore[no-untyped-def]
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("calibration_X", "error", "match"),
    [
        (np.zeros((20, 39), np.float32), ValidationError, r"expected calibration_X of shape \(n_samples, 40\)"),
        (np.zeros((0, 40), np.float32), EmptyDataError, "0 samples"),
        (np.full((4, 40), np.nan, np.float32), ValidationError, "NaN or infinite"),
    ],
)
def test_bad_calibration_data_writes_nothing(onnx_folder, tmp_path, calibration_X, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        quantize_onnx(onnx_folder / "tiny.onnx", tmp_path / "q.onnx", calibration_X=calibration_X)
    assert _leftovers(tmp_path) == []


def test_a_failing_quantizer_leaves_the_old_file_alone(onnx_folder, data, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "q.onnx"
    dst.write_bytes(b"previous")

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("calibration exploded")

    monkeypatch.setattr(quantization, "quantize_static", broken)
    with pytest.raises(RuntimeError, match="calibration exploded"):
        quantize_onnx(onnx_folder / "tiny.onnx", dst, calibration_X=data["X"])
    assert _leftovers(tmp_path) == ["q.onnx"] and dst.read_bytes() == b"previous"


def test_bad_arguments(onnx_folder, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = onnx_folder / "tiny.onnx"
    with pytest.raises(ValidationError, match="format must be one of"):
        quantize_onnx(src, tmp_path / "q.onnx", calibration_X=data["X"], format="int4")
    with pytest.raises(ValidationError, match="activations must be one of"):
        quantize_onnx(src, tmp_path / "q.onnx", calibration_X=data["X"], activations="int4")
    with pytest.raises(ValidationError, match="dst must differ from src"):
        quantize_onnx(src, src, calibration_X=data["X"])
    with pytest.raises(ValidationError, match="does not exist"):
        quantize_onnx(src, tmp_path / "no" / "q.onnx", calibration_X=data["X"])
    assert _leftovers(tmp_path) == []
