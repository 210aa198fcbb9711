"""MetaForest: leaves refitted in k shots, fresh trees mixed in, (m, w) meta-learnt across domains."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier

from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.models import MetaForest, sample_shots


def domains(n_domains: int = 4, n: int = 300, seed: int = 0):
    """Domains that share one rule on feature 0 and flip a domain-specific rule on feature 1:
    the sources teach the shared part, only the target's own samples teach its twist."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_domains):
        X = rng.normal(size=(n, 5))
        twist = 1 if d % 2 else -1
        y = ((X[:, 0] + twist * 1.5 * X[:, 1]) > 0).astype(int) + 2 * (X[:, 2] > 0.8)
        out.append((X, y))
    return out


@pytest.fixture(scope="module")
def fitted():
    data = domains()
    sources, target = data[:3], data[3]
    X = np.concatenate([x for x, _ in sources])
    y = np.concatenate([t for _, t in sources])
    d = np.repeat(np.arange(3), [len(t) for _, t in sources])
    forest = MetaForest(n_estimators=40, n_fresh=20, meta_shots=(2, 10), random_state=0).fit(X, y, domains=d)
    return forest, target


def test_adapting_beats_the_unadapted_forest_and_scratch(fitted):
    forest, (X, y) = fitted
    shots = sample_shots(y[:150], 3, np.random.default_rng(0))  # few shots: scratch has little to grow on
    test = np.arange(150, 300)
    adapted = forest.adapt(X[shots], y[shots])
    source = forest.score(X[test], y[test])
    scratch = ExtraTreesClassifier(20, random_state=0).fit(X[shots], y[shots]).score(X[test], y[test])
    assert adapted.score(X[test], y[test]) > source + 0.05  # a no-op adaptation would equal the source forest
    assert adapted.score(X[test], y[test]) > scratch


def test_leaf_refit_moves_leaves_toward_the_new_samples(fitted):
    forest, (X, y) = fitted
    shots = sample_shots(y, 5, np.random.default_rng(1))
    before = forest.predict_proba(X[shots])
    forest.prior_strength, forest.mixture = 0.0, 0.0
    table = forest.adaptation_table_
    forest.adaptation_table_ = {}
    try:
        adapted = forest.adapt(X[shots], y[shots])
    finally:
        forest.prior_strength, forest.mixture, forest.adaptation_table_ = 1.0, 0.0, table
    after = adapted.predict_proba(X[shots])
    # with m = 0 every leaf a shot reaches holds only the shots: the shots are (nearly) always right
    assert (after.argmax(1) == y[shots]).mean() == 1.0
    assert not np.allclose(before, after)


def test_the_source_forest_is_left_as_it_is(fitted):
    forest, (X, y) = fitted
    before = forest.predict_proba(X[:20])
    forest.adapt(X[:40], y[:40])
    np.testing.assert_array_equal(forest.predict_proba(X[:20]), before)
    assert not hasattr(forest, "leaf_proba_")


def test_meta_learnt_table_per_shot_count(fitted):
    forest, (X, y) = fitted
    assert sorted(forest.adaptation_table_) == [2, 10]
    for row in forest.adaptation_table_.values():
        assert row["prior_strength"] in forest.prior_strengths and row["mixture"] in forest.mixtures
    shots = sample_shots(y, 9, np.random.default_rng(2))
    chosen = forest.adapt(X[shots], y[shots]).adapted_with_
    assert chosen["shots_per_class"] == 9
    assert (chosen["prior_strength"], chosen["mixture"]) == tuple(forest.adaptation_table_[10][k] for k in ("prior_strength", "mixture"))


def test_probabilities_are_distributions_and_deterministic(fitted):
    forest, (X, y) = fitted
    a = forest.adapt(X[:60], y[:60]).predict_proba(X[100:])
    b = forest.adapt(X[:60], y[:60]).predict_proba(X[100:])
    np.testing.assert_allclose(a.sum(1), 1.0)
    np.testing.assert_array_equal(a, b)


def test_without_domain_labels_nothing_is_meta_learnt():
    X, y = domains(1)[0]
    forest = MetaForest(n_estimators=10, n_fresh=5, prior_strength=3.0, mixture=0.5).fit(X, y)
    assert forest.adaptation_table_ == {}
    assert forest.adapt(X[:30], y[:30]).adapted_with_["prior_strength"] == 3.0


def test_bad_input():
    X, y = domains(1)[0]
    forest = MetaForest(n_estimators=10, n_fresh=5).fit(X, y)
    with pytest.raises(LabelMismatchError, match=r"classes \[7\] the sources never showed"):
        forest.adapt(X[:3], np.array([7, 0, 1]))
    with pytest.raises(ValidationError, match="features"):
        forest.adapt(X[:3, :2], y[:3])
    with pytest.raises(ValidationError, match="k=500 shots per class"):
        sample_shots(y, 500, np.random.default_rng(0))
    with pytest.raises(ValidationError, match="domains has 3 labels for 300 rows"):
        MetaForest(n_estimators=5).fit(X, y, domains=[0, 1, 2])
    with pytest.raises(ValidationError, match="at least 2 classes"):
        MetaForest(n_estimators=5).fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(ValidationError, match="mixtures must lie in"):
        MetaForest(mixtures=(1.5,)).fit(X, y)
    with pytest.raises(ValidationError, match="prior strengths must be >= 0"):
        MetaForest(prior_strengths=(-1.0,)).fit(X, y)


def test_a_saved_forest_predicts_and_adapts_exactly_as_the_fitted_one_and_a_tampered_file_is_refused(fitted, tmp_path):
    import json

    from crossfeed.exceptions import ModelFileError
    from crossfeed.models import load_model, save_model

    forest, (Xt, yt) = fitted
    shots = sample_shots(yt, 5, np.random.default_rng(0))
    adapted = forest.adapt(Xt[shots], yt[shots])
    for model, name in ((forest, "source"), (adapted, "adapted")):
        back = load_model(save_model(model, tmp_path / name))
        assert isinstance(back, MetaForest)
        assert np.array_equal(back.predict_proba(Xt), model.predict_proba(Xt))
    # the reloaded source forest adapts as the original does (same leaves, same fresh trees)
    again = load_model(tmp_path / "source").adapt(Xt[shots], yt[shots])
    assert np.array_equal(again.predict_proba(Xt), adapted.predict_proba(Xt))
    config = json.loads((tmp_path / "adapted" / "config.json").read_text())
    assert config["format"] == "crossfeed.meta_forest"
    config["classes"] = config["classes"][::-1]  # reorders the answers: refused
    (tmp_path / "adapted" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="changed after saving"):
        load_model(tmp_path / "adapted")
    weights = tmp_path / "source" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(tmp_path / "source")
