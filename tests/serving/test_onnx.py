"""OnnxModel: the probabilities of the torch model, a sidecar that round-trips, clear input errors."""

from __future__ import annotations

import copy
import json
import pickle
import shutil
import sys

import numpy as np
import pytest
from sklearn.base import clone

from crossfeed.combine import Cascade
from crossfeed.exceptions import (
    EmptyDataError,
    LabelMismatchError,
    MissingDependencyError,
    ModelFileError,
    NonNumericInputError,
    NotFittedError,
    ValidationError,
)
from crossfeed.models import flops_per_sample, measure_latency
from crossfeed.serving import OnnxModel

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("name", ["mlp", "tiny", "small"])
def test_probabilities_match_the_torch_model(name, onnx_models, torch_models, data) -> None:  # type: ignore[no-untyped-def]
    onnx, torch_model = onnx_models[name], torch_models[name]
    X = data["X_test"]
    np.testing.assert_allclose(onnx.predict_proba(X), torch_model.predict_proba(X), atol=1e-5)
    for n in (1, 1, 3, 7, 3):  # bound batch sizes, reused
        np.testing.assert_allclose(onnx.predict_proba(X[:n]), torch_model.predict_proba(X[:n]), atol=1e-5)
    np.testing.assert_array_equal(onnx.predict(X), torch_model.predict(X))
    np.testing.assert_array_equal(onnx.classes_, torch_model.classes_)
    assert onnx.n_features_in_ == 40 and onnx.dtype_ == "float32"


def test_results_are_copies_not_the_bound_buffer(onnx_models, data) -> None:  # type: ignore[no-untyped-def]
    model = onnx_models["tiny"]
    first = model.predict_proba(data["X_test"][:1])
    second = model.predict_proba(data["X_test"][1:2])
    assert not np.array_equal(first, second)
    np.testing.assert_allclose(first, model.predict_proba(data["X_test"][:1]))


def test_other_input_types_are_converted(onnx_models, data) -> None:  # type: ignore[no-untyped-def]
    model, X = onnx_models["tiny"], data["X_test"][:5]
    expected = model.predict_proba(X)
    np.testing.assert_allclose(model.predict_proba(X.astype(np.float64)), expected, atol=1e-7)
    np.testing.assert_allclose(model.predict_proba(X.tolist()), expected, atol=1e-7)
    np.testing.assert_allclose(model.predict_proba(np.asfortranarray(X)), expected, atol=1e-7)
    strided = data["X_test"][:10:2]  # not C-contiguous
    np.testing.assert_allclose(model.predict_proba(strided), model.predict_proba(strided.copy()))


def test_sidecar_round_trip(onnx_models, torch_models, data, onnx_folder) -> None:  # type: ignore[no-untyped-def]
    path = onnx_folder / "small.onnx"
    meta = json.loads((onnx_folder / "small.onnx.json").read_text())
    assert meta["format"] == "crossfeed.serving.onnx/1" and meta["dtype"] == "float32"
    assert meta["classes"] == [0, 1, 2] and meta["n_features"] == 40 and meta["n_classes"] == 3
    assert meta["source"]["estimator"] == "TorchClassifier" and meta["source"]["architecture"] == "cnn1d"
    loaded = OnnxModel.load(path, threads=2)
    np.testing.assert_array_equal(loaded.classes_, torch_models["small"].classes_)
    assert loaded.classes_.dtype == torch_models["small"].classes_.dtype
    assert loaded.flops_per_sample_ == meta["flops_per_sample"] == flops_per_sample(torch_models["small"], data["X"])
    np.testing.assert_array_equal(
        loaded.predict_proba(data["X_test"]), onnx_models["small"].predict_proba(data["X_test"])
    )
    assert not list(onnx_folder.glob("*.tmp")) and not list(onnx_folder.glob(".*"))


def test_a_file_without_sidecar_needs_classes(onnx_folder, tmp_path, data) -> None:  # type: ignore[no-untyped-def]
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx_folder / "tiny.onnx", bare)
    with pytest.raises(ModelFileError, match="no sidecar"):
        OnnxModel.load(bare)
    model = OnnxModel(bare, classes=np.array(["a", "b", "c"])).fit()
    assert model.classes_.tolist() == ["a", "b", "c"] and model.flops_per_sample_ is None
    assert set(model.predict(data["X_test"])) <= {"a", "b", "c"}
    with pytest.raises(LabelMismatchError, match="outputs 3 probabilities"):
        OnnxModel(bare, classes=[0, 1]).fit()
    with pytest.raises(LabelMismatchError, match="disagrees with the sidecar"):
        OnnxModel(onnx_folder / "tiny.onnx", classes=[0, 1, 5]).fit()


def test_broken_files_raise_model_file_error(onnx_folder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelFileError, match="no ONNX file"):
        OnnxModel.load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match="cannot load"):
        OnnxModel(junk, classes=[0, 1, 2]).fit()
    # a sidecar that belongs to another file
    shutil.copy(onnx_folder / "tiny.onnx", tmp_path / "m.onnx")
    shutil.copy(onnx_folder / "small.onnx.json", tmp_path / "m.onnx.json")
    with pytest.raises(ModelFileError, match="SHA-256"):
        OnnxModel.load(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="not a crossfeed serving sidecar"):
        OnnxModel.load(tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        (np.zeros((3, 39), np.float32), ValidationError, r"expected X of shape \(n_samples, 40\); got shape \(3, 39\)"),
        (np.zeros(40, np.float32), ValidationError, r"got shape \(40,\); for a single sample pass X.reshape\(1, 40\)"),
        (np.zeros((2, 4, 10), np.float32), ValidationError, r"X.reshape\(len\(X\), 40\)"),
        (np.zeros((0, 40), np.float32), EmptyDataError, "0 samples"),
        (np.full((2, 40), "a"), NonNumericInputError, "must hold numbers"),
    ],
)
def test_wrong_shapes_say_what_was_expected(onnx_models, X, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        onnx_models["tiny"].predict_proba(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(onnx_models, data, dtype, value) -> None:  # type: ignore[no-untyped-def]
    X = data["X_test"][:4].astype(dtype)
    X[2, 5] = value
    with pytest.raises(ValidationError, match=r"NaN or infinite values .* in 1 of 4 samples \(first rows \[2\]\)"):
        onnx_models["tiny"].predict_proba(X)
    with pytest.raises(ValidationError, match="NaN or infinite"):
        onnx_models["tiny"].predict_proba(X[2:3])


def test_unloaded_model_and_bad_threads(onnx_folder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFittedError, match="OnnxModel.load"):
        OnnxModel(onnx_folder / "tiny.onnx").predict_proba(np.zeros((1, 40), np.float32))
    with pytest.raises(NotFittedError):
        OnnxModel(onnx_folder / "tiny.onnx").predict(np.zeros((1, 40), np.float32))
    with pytest.raises(ValidationError, match="threads must be an integer >= 1"):
        OnnxModel.load(onnx_folder / "tiny.onnx", threads=0)


def test_from_model_into_a_missing_folder_writes_nothing(torch_models, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="does not exist"):
        OnnxModel.from_model(torch_models["mlp"], tmp_path / "no" / "m.onnx", example_X=data["X_val"])
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_names_the_extra(onnx_folder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[onnx\]'"):
        OnnxModel.load(onnx_folder / "tiny.onnx")


def test_copies_clones_and_pickles_reload_the_session(onnx_models, data) -> None:  # type: ignore[no-untyped-def]
    model, X = onnx_models["tiny"], data["X_test"]
    expected = model.predict_proba(X)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model)), clone(model).fit(X, data["y_test"])):
        assert other.session_ is not model.session_
        np.testing.assert_array_equal(other.predict_proba(X), expected)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(LabelMismatchError, match=r"labels \[7\]"):
        clone(model).fit(X[:2], [0, 7])


def test_cost_functions_count_an_onnx_model(onnx_models, torch_models, data) -> None:  # type: ignore[no-untyped-def]
    for name, model in onnx_models.items():
        assert flops_per_sample(model, data["X"]) == flops_per_sample(torch_models[name], data["X"]) > 0
    assert measure_latency(onnx_models["tiny"], data["X_test"], repeats=1, max_samples=8) > 0
    assert measure_latency(onnx_models["tiny"], data["X_test"], batch_size=16, repeats=1, max_samples=32) > 0


def test_works_as_a_cascade_member(onnx_models, torch_models, data) -> None:  # type: ignore[no-untyped-def]
    names = ["tiny", "mlp", "small"]
    served = Cascade([(n, onnx_models[n]) for n in names], prefit=True, calibrate=True).fit(
        data["X_val"], data["y_val"]
    )
    reference = Cascade([(n, torch_models[n]) for n in names], prefit=True, calibrate=True).fit(
        data["X_val"], data["y_val"]
    )
    np.testing.assert_array_equal(served.costs_, reference.costs_)  # costs=None: FLOPs from the sidecars
    np.testing.assert_array_equal(served.order_, reference.order_)
    np.testing.assert_allclose(served.thresholds_, reference.thresholds_, atol=1e-5)
    proba, stage = served.predict_with_stages(data["X_test"])
    ref_proba, ref_stage = reference.predict_with_stages(data["X_test"])
    assert (stage == ref_stage).mean() >= 0.99
    same = stage == ref_stage
    np.testing.assert_allclose(proba[same], ref_proba[same], atol=1e-4)
