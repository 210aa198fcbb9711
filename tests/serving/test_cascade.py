"""ServedCascade: the routing and answers of the torch Cascade it was built from."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from crossfeed.combine import CONFIDENCE_RULES, Cascade
from crossfeed.exceptions import LabelMismatchError, NotFittedError, ValidationError
from crossfeed.serving import OnnxModel, ServedCascade
from crossfeed.serving._cascade import ROW_RULES, temperature_scale, temperature_scale_row

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

LADDERS = {2: ["tiny", "small"], 3: ["tiny", "mlp", "small"]}


def _assert_same_answers(served: ServedCascade, cascade: Cascade, X: np.ndarray) -> None:
    """Same stage for every sample except at a threshold tie, same probabilities to 1e-4."""
    proba, stage = served.predict_with_stages(X)
    ref_proba, ref_stage = cascade.predict_with_stages(X)
    assert len(np.unique(ref_stage)) >= 2, "the test data should exercise more than one stage"
    differ = np.flatnonzero(stage != ref_stage)
    for i in differ:  # only a score within float32 noise of the threshold may route differently
        k = min(stage[i], ref_stage[i])
        member = cascade.members_[cascade.order_[k]][1]
        p = np.asarray(member.predict_proba(X[i : i + 1]), dtype=float)
        if served.temperatures_ is not None:
            p = temperature_scale(p, served.temperatures_[k])
        score = CONFIDENCE_RULES[cascade.rule](p)[0]
        assert abs(score - cascade.thresholds_[k]) < 1e-4, f"sample {i} routed differently away from a tie"
    assert differ.size <= 2
    same = stage == ref_stage
    np.testing.assert_allclose(proba[same], ref_proba[same], atol=1e-4)
    np.testing.assert_array_equal(served.predict(X)[same], cascade.predict(X)[same])
    for i in range(10):  # the one-sample path answers as the batch path does
        row_proba, row_stage = served.predict_with_stages(X[i : i + 1])
        assert row_stage[0] == stage[i]
        np.testing.assert_allclose(row_proba[0], proba[i], atol=1e-6)


def _cascade(models, names, calibrate, data):  # type: ignore[no-untyped-def]
    return Cascade([(n, models[n]) for n in names], prefit=True, calibrate=calibrate).fit(data["X_val"], data["y_val"])


@pytest.mark.parametrize("calibrate", [False, True])
@pytest.mark.parametrize("n_stages", [2, 3])
def test_routing_equals_the_torch_cascade(n_stages, calibrate, torch_models, onnx_models, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cascade = _cascade(torch_models, LADDERS[n_stages], calibrate, data)
    # the same fitted cascade with the members exported once by the fixtures (an export takes a second)
    twin = copy.copy(cascade)
    twin.members_ = [(name, onnx_models[name]) for name, _ in cascade.members_]
    served = ServedCascade.from_cascade(twin, tmp_path, example_X=data["X_val"])
    assert list(tmp_path.iterdir()) == []  # OnnxModel stages are kept, not re-exported
    assert [name for name, _ in served.stages_] == [cascade.members_[i][0] for i in cascade.order_]
    assert (served.temperatures_ is None) == (not calibrate)
    np.testing.assert_array_equal(served.thresholds_, cascade.thresholds_)
    _assert_same_answers(served, cascade, data["X_test"])
    assert served.expected_cost(data["X_test"]) == pytest.approx(cascade.expected_cost(data["X_test"]))


def test_single_samples_take_the_lean_path_with_the_same_answers(torch_models, onnx_models, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cascade = _cascade(onnx_models, LADDERS[3], True, data)
    served = ServedCascade.from_cascade(cascade, tmp_path, example_X=data["X_val"])
    X = data["X_test"][:40]
    proba, stage = served.predict_with_stages(X)
    singles = [served.predict_with_stages(X[i : i + 1]) for i in range(len(X))]
    np.testing.assert_array_equal(np.concatenate([s for _, s in singles]), stage)
    np.testing.assert_allclose(np.concatenate([p for p, _ in singles]), proba, atol=1e-6)
    assert proba.dtype == np.float64 and stage.dtype == np.intp
    np.testing.assert_allclose(served.predict_proba(X.astype(np.float64)), proba, atol=1e-6)


def test_from_cascade_exports_torch_stages_and_runs_other_members(torch_models, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    logistic = LogisticRegression(max_iter=300).fit(data["X"], data["y"])
    members = [("tiny", torch_models["tiny"]), ("logistic", logistic), ("small", torch_models["small"])]
    cascade = Cascade(members, prefit=True, calibrate=True).fit(data["X_val"], data["y_val"])
    served = ServedCascade.from_cascade(cascade, tmp_path / "served", example_X=data["X_val"])
    stage_of = {name: k for k, (name, _) in enumerate(served.stages_)}
    assert served.stages_[stage_of["logistic"]][1] is logistic
    for name in ("tiny", "small"):
        k = stage_of[name]
        assert isinstance(served.stages_[k][1], OnnxModel)
        assert json.loads((tmp_path / "served" / f"stage{k}.onnx.json").read_text())["dtype"] == "float32"
    _assert_same_answers(served, cascade, data["X_test"])
    again = pickle.loads(pickle.dumps(served))
    np.testing.assert_array_equal(again.predict_proba(data["X_test"]), served.predict_proba(data["X_test"]))


def test_int8_stages(torch_models, onnx_models, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    members = [("tiny", onnx_models["tiny"]), ("small", torch_models["small"])]
    cascade = Cascade(members, prefit=True).fit(data["X_val"], data["y_val"])
    with pytest.raises(ValidationError, match="calibration_X"):
        ServedCascade.from_cascade(cascade, tmp_path, example_X=data["X_val"], int8=True)
    served = ServedCascade.from_cascade(cascade, tmp_path, example_X=data["X_val"], int8=True, calibration_X=data["X"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stage1.float.onnx",
        "stage1.float.onnx.json",
        "stage1.onnx",
        "stage1.onnx.json",
    ]
    assert served.stages_[0][1] is onnx_models["tiny"] and served.stages_[1][1].dtype_ == "int8"
    assert np.mean(served.predict(data["X_test"]) == cascade.predict(data["X_test"])) >= 0.9


def test_bad_input_and_arguments(onnx_models, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cascade = _cascade(onnx_models, LADDERS[2], False, data)
    served = ServedCascade.from_cascade(cascade, tmp_path, example_X=data["X_val"])
    with pytest.raises(ValidationError, match=r"expected X of shape \(n_samples, 40\); got shape \(2, 41\)"):
        served.predict_proba(np.zeros((2, 41), np.float32))
    X = data["X_test"][:3].copy()
    X[1, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN or infinite"):
        served.predict(X)
    with pytest.raises(ValidationError, match="needs a crossfeed.combine.Cascade"):
        ServedCascade.from_cascade(onnx_models["tiny"], tmp_path, example_X=data["X_val"])  # type: ignore[arg-type]
    unfitted = Cascade([(n, onnx_models[n]) for n in LADDERS[2]], prefit=True)
    with pytest.raises(NotFittedError):
        ServedCascade.from_cascade(unfitted, tmp_path, example_X=data["X_val"])
    stages = [("a", onnx_models["tiny"]), ("b", onnx_models["small"])]
    with pytest.raises(ValidationError, match="one number per stage"):
        ServedCascade(stages, thresholds=[0.5]).fit()
    with pytest.raises(ValidationError, match="rule must be one of"):
        ServedCascade(stages, thresholds=[0.5, 0.0], rule="maxprob").fit()
    with pytest.raises(ValidationError, match="temperatures must be finite and > 0"):
        ServedCascade(stages, thresholds=[0.5, 0.0], temperatures=[1.0, 0.0]).fit()
    shifted = LogisticRegression(max_iter=50).fit(data["X"], data["y"] + 10)
    with pytest.raises(LabelMismatchError, match="share one label set"):
        ServedCascade([("a", shifted), ("b", onnx_models["small"])], thresholds=[0.5, 0.0]).fit()
    with pytest.raises(NotFittedError):
        ServedCascade(stages, thresholds=[0.5, 0.0]).predict(data["X_test"])


def test_one_row_maths_equals_the_array_maths() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=50)
    proba[0] = [1.0, 0.0, 0.0, 0.0, 0.0]  # a zero probability: clipped, and skipped by the entropy
    for rule, row_rule in ROW_RULES.items():
        expected = CONFIDENCE_RULES[rule](proba)
        np.testing.assert_allclose([row_rule(p.tolist()) for p in proba], expected, rtol=1e-12, atol=1e-15)
    for t in (0.3, 1.0, 2.5):
        rows = [temperature_scale_row(p.tolist(), t) for p in proba]
        np.testing.assert_allclose(rows, temperature_scale(proba, t), rtol=1e-12, atol=1e-15)
    assert sorted(ROW_RULES) == sorted(CONFIDENCE_RULES)
