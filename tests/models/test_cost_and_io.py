import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from crossfeed.exceptions import ModelFileError, ValidationError
from crossfeed.models import TorchClassifier, count_params, flops_per_sample, load_model, measure_cost, save_model


@pytest.fixture(scope="module")
def fitted_cnn(small_suite):
    d = small_suite["default"]
    return TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=2, random_state=0).fit(d.X_train, d.y_train)


def test_torch_cost_counts_convolutions_and_linears(fitted_cnn, small_suite):
    X = small_suite["default"].X_test
    n_params = sum(p.numel() for p in fitted_cnn.module_.parameters())
    assert count_params(fitted_cnn) == n_params
    # conv1: 40 positions * 8 out * 1 in * 5 taps * 2; conv2 after pooling: 20 * 8 * 8 * 5 * 2;
    # classifier: 16 -> 32 -> 10 linear layers, 2 FLOPs per multiply-add.
    expected = 40 * 8 * 5 * 2 + 20 * 8 * 8 * 5 * 2 + 2 * (16 * 32 + 32 * 10)
    assert flops_per_sample(fitted_cnn, X) == expected
    bigger = TorchClassifier("cnn1d", module_kwargs={"size": "large"}, epochs=1, random_state=0).fit(X, small_suite["default"].y_test)
    assert flops_per_sample(bigger, X) > 50 * expected


def test_sklearn_costs(blobs):
    X, y = blobs
    lr = LogisticRegression().fit(X, y)
    assert count_params(lr) == 3 * 6 + 3 and flops_per_sample(lr, X) == 2 * 18 + 12
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    assert flops_per_sample(pipe, X) == 12 + 48 and count_params(pipe) == 12 + 21
    assert count_params(GaussianNB().fit(X, y)) > 0 and flops_per_sample(GaussianNB().fit(X, y), X) == 4 * 18
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    assert flops_per_sample(tree, X) == tree.tree_.max_depth + 1


def test_unknown_model_cost_asks_for_explicit_costs(blobs):
    class Opaque:
        def predict_proba(self, X):
            return np.full((len(X), 2), 0.5)

    with pytest.raises(ValidationError, match="costs explicitly"):
        flops_per_sample(Opaque(), blobs[0])


def test_measure_cost_measures_latency(fitted_cnn, small_suite):
    cost = measure_cost(fitted_cnn, small_suite["default"].X_test, batch_size=50, repeats=2)
    assert cost.latency_batch1_s > 0 and cost.latency_batched_s > 0
    assert cost.latency_batched_s < cost.latency_batch1_s  # batching amortises per-call overhead
    assert cost.to_dict()["batch_size"] == 50


def test_save_load_roundtrip_is_exact_and_pickle_free(fitted_cnn, small_suite, tmp_path):
    X = small_suite["default"].X_test
    path = save_model(fitted_cnn, tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert b"pickle" not in (path / "config.json").read_bytes()
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted_cnn.predict_proba(X))
    assert loaded.get_params()["module_kwargs"] == {"size": "tiny"}
    # overwriting keeps a complete model at the path
    save_model(fitted_cnn, path)
    np.testing.assert_array_equal(load_model(path).predict(X), fitted_cnn.predict(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m"], "no temporary or backup folders left behind"


def test_bad_model_files_are_clear(fitted_cnn, tmp_path):
    with pytest.raises(ModelFileError, match="config.json and model.safetensors"):
        load_model(tmp_path / "nothing")
    path = save_model(fitted_cnn, tmp_path / "m")
    (path / "config.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(path)
    path = save_model(fitted_cnn, tmp_path / "m2")
    cfg = json.loads((path / "config.json").read_text())
    cfg["module_kwargs"] = {"size": "large"}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(path)
    with pytest.raises(ValidationError, match="fitted TorchClassifier"):
        save_model(LogisticRegression(), tmp_path / "x")


def test_failed_save_leaves_nothing_behind(fitted_cnn, tmp_path, monkeypatch):
    import crossfeed.models._io as io

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", boom)
    with pytest.raises(OSError):
        save_model(fitted_cnn, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []
