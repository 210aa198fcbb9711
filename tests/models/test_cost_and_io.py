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


# ----------------------------------------------------------------- hostile model files
def _edit_config(path, edit, *, resign=False):
    """Apply ``edit`` to the config dict of the model at ``path``; ``resign`` recomputes its checksum,
    as a config that really describes another model would have."""
    from crossfeed.models._io import _config_digest

    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    if resign:
        cfg["sha256"]["config"] = _config_digest(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.update(format="sklearn.pickle"), "has format 'sklearn.pickle' v2; this crossfeed reads"),
        (lambda c: c.update(format_version=3), "v3; this crossfeed reads 'crossfeed.torch_classifier' v1 to v2"),
        (lambda c: c.pop("classes"), r"required keys \['classes'\] are missing"),
        (lambda c: c.update(n_features_in="40"), "'n_features_in' must be a JSON integer, got str"),
        (lambda c: c.update(n_features_in=True), "'n_features_in' must be a JSON integer, got bool"),
        (lambda c: c.update(module_kwargs=["size", "tiny"]), "'module_kwargs' must be a JSON object"),
        (lambda c: c["params"].update(epoch=3), "unknown TorchClassifier parameter 'epoch' .*did you mean 'epochs'"),
        (lambda c: c.update(classes_dtype="int65"), "'classes_dtype' 'int65' is not a NumPy dtype"),
        (lambda c: c.update(classes_dtype="datetime64[s]"), "must be a bool, integer, float or string dtype"),
        (lambda c: c.update(classes=[0, 1, 1]), "must be distinct labels"),
        (lambda c: c.update(classes=[]), "non-empty list of labels"),
        (lambda c: c.update(architecture="cnn1e"), "unknown architecture 'cnn1e'.*did you mean 'cnn1d'"),
        (lambda c: c.update(input_shape=[4, 11]), "'input_shape' must be a list of positive integers whose product"),
        (lambda c: c.update(sha256={"weights": "abc"}), "'sha256' must hold 'weights': a sha256 hex digest"),
    ],
)
def test_config_json_schema_is_checked(fitted_cnn, tmp_path, edit, match):
    path = save_model(fitted_cnn, tmp_path / "m")
    _edit_config(path, edit, resign=True)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert isinstance(info.value, ValueError)


def test_config_json_that_is_not_an_object(fitted_cnn, tmp_path):
    path = save_model(fitted_cnn, tmp_path / "m")
    (path / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelFileError, match="expected a JSON object .* got a JSON list"):
        load_model(path)


@pytest.mark.parametrize(
    "edit",
    [lambda c: c.update(classes=c["classes"][::-1]),              # relabels every prediction, loads fine otherwise
     lambda c: c.update(n_features_in=c["n_features_in"] + 1, input_shape=[c["n_features_in"] + 1]),  # cnn1d accepts any length
     lambda c: c["module_kwargs"].update(dropout=0.5)],
    ids=["classes", "n_features_in", "module_kwargs"],
)
def test_an_edited_config_is_refused(fitted_cnn, tmp_path, edit):
    path = save_model(fitted_cnn, tmp_path / "m")
    _edit_config(path, edit)
    with pytest.raises(ModelFileError, match="config.json was changed after saving: its content does not match the sha256"):
        load_model(path)


def test_flipped_bytes_in_the_weights_are_refused(fitted_cnn, small_suite, tmp_path):
    path = save_model(fitted_cnn, tmp_path / "m")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x40  # inside the last tensor: the file still parses, the weights are different
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the sha256 checksum .*still parses as safetensors"):
        load_model(path)


def test_truncated_weights_are_told_apart_from_an_architecture_mismatch(fitted_cnn, tmp_path):
    path = save_model(fitted_cnn, tmp_path / "m")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="checksum .*not a readable safetensors file any more: truncated"):
        load_model(path)
    # a consistent config that describes another architecture than the weights
    path = save_model(fitted_cnn, tmp_path / "m2")
    _edit_config(path, lambda c: c["module_kwargs"].update(size="large"), resign=True)
    with pytest.raises(ModelFileError, match="is a valid safetensors file, but its tensors do not match architecture "
                                             "'cnn1d' with module_kwargs {'size': 'large'}") as info:
        load_model(path)
    assert "not a readable" not in str(info.value)


def _as_version_1(path):
    cfg = json.loads((path / "config.json").read_text())
    for key in ("sha256", "input_shape"):
        del cfg[key]
    cfg["format_version"] = 1
    (path / "config.json").write_text(json.dumps(cfg))


def test_version_1_files_without_checksums_load_with_a_warning(fitted_cnn, small_suite, tmp_path):
    X = small_suite["default"].X_test
    path = save_model(fitted_cnn, tmp_path / "old")
    _as_version_1(path)
    with pytest.warns(UserWarning, match="without checksums: its weights and config cannot be verified"):
        old = load_model(path)
    np.testing.assert_array_equal(old.predict_proba(X), fitted_cnn.predict_proba(X))
    assert not hasattr(old, "input_shape_")  # v1 never recorded it; the feature count is still checked
    with pytest.raises(ValidationError, match="is expecting 40 features"):
        old.predict(X[:, :39])
    # saving again upgrades the folder to checksums
    again = json.loads((save_model(old, path) / "config.json").read_text())
    assert again["format_version"] == 2 and set(again["sha256"]) == {"weights", "config"}
    # without a checksum, a damaged weights file is still told apart from a wrong architecture
    _as_version_1(path)
    (path / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.warns(UserWarning), pytest.raises(ModelFileError, match="is not a readable safetensors file"):
        load_model(path)


def test_a_version_2_file_without_checksums_is_refused(fitted_cnn, tmp_path):
    path = save_model(fitted_cnn, tmp_path / "m")
    _edit_config(path, lambda c: c.pop("sha256"))
    with pytest.raises(ModelFileError, match=r"required keys \['sha256'\] are missing"):
        load_model(path)


def test_save_load_round_trips_the_input_shape(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4, 10)).astype(np.float32), rng.integers(0, 3, 64)
    clf = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=1, random_state=0).fit(X, y)
    loaded = load_model(save_model(clf, tmp_path / "m"))
    assert loaded.input_shape_ == (4, 10)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValidationError, match=r"shape \(10, 4\).*fitted on samples of shape \(4, 10\)"):
        loaded.predict(X.transpose(0, 2, 1))


@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_saved_folders_follow_the_umask(fitted_cnn, tmp_path, umask, folder, file):
    import os
    import stat

    before = os.umask(umask)
    try:
        path = save_model(fitted_cnn, tmp_path / "m")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == folder  # tempfile.mkdtemp alone gives 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()} == {file}
