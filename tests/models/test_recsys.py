"""Recommendation models: the ``mf`` architecture, the MF rating regressor, feature naive Bayes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.naive_bayes import BernoulliNB, CategoricalNB
from sklearn.utils.estimator_checks import parametrize_with_checks

from crossfeed.exceptions import UnknownNameError, ValidationError
from crossfeed.models import ARCHITECTURES, TorchClassifier, load_model, save_model
from crossfeed.models._recsys import (
    FeatureNaiveBayes,
    MatrixFactorization,
    MatrixFactorizationNet,
    RatingLoss,
    bernoulli_log_likelihood,
    categorical_log_likelihood,
    rmse,
)
from crossfeed.spawn import Distiller

N_USERS, N_ITEMS = 80, 60


@pytest.fixture(scope="module")
def ratings() -> dict[str, np.ndarray]:
    """Ratings from a rank-2 model with biases, plus a side feature and flags; rows like movielens'."""
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(N_USERS, 2)), rng.normal(size=(N_ITEMS, 2))
    bu, bi = rng.normal(scale=0.4, size=N_USERS), rng.normal(scale=0.4, size=N_ITEMS)
    pairs = np.array([(u, i) for u in range(N_USERS) for i in range(N_ITEMS) if rng.random() < 0.6])
    u, i = pairs[:, 0], pairs[:, 1]
    r = np.clip(np.round(3.4 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) + rng.normal(scale=0.3, size=len(u))), 1, 5)
    side = np.stack([u % 3, (i % 4 == 0), (i % 5 == 0)], 1)
    X = np.concatenate([pairs, side], axis=1).astype(np.float32)
    order = rng.permutation(len(X))
    X, r = X[order], r[order].astype(np.float32)
    n = len(X)
    cut = {"train": slice(0, n // 2), "val": slice(n // 2, 5 * n // 8), "test": slice(5 * n // 8, n)}
    return {f"{k}_{s}": v[c] for s, c in cut.items() for k, v in (("X", X), ("r", r))}


def test_mf_architecture_is_registered_and_scores_as_two_logits():
    net = ARCHITECTURES.get("mf")(5, 2, n_users=4, n_items=3, dim=2)
    x = torch.tensor([[1.0, 2.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0]])
    logits = net(x)
    assert logits.shape == (2, 2) and torch.all(logits[:, 0] == 0)
    torch.testing.assert_close(logits[:, 1], net.score(x))
    assert net.embed(x).shape == (2, 4)


def test_mf_rejects_ids_outside_its_tables_and_multiclass_targets():
    net = MatrixFactorizationNet(2, 2, n_users=4, n_items=3)
    with pytest.raises(ValidationError, match=r"user ids must lie in \[0, 4\)"):
        net(torch.tensor([[4.0, 0.0]]))
    with pytest.raises(ValidationError, match="two classes"):
        MatrixFactorizationNet(2, 5, n_users=4, n_items=3)
    with pytest.raises(ValidationError, match="item_column"):
        MatrixFactorizationNet(2, 2, n_users=4, n_items=3, item_column=7)


def test_mf_regressor_learns_the_low_rank_structure(ratings):
    mean_rmse = rmse(ratings["r_test"], np.full_like(ratings["r_test"], ratings["r_train"].mean()))
    mf = MatrixFactorization(dim=4, reg=0.05, epochs=60, lr=0.02, patience=5, random_state=0)
    mf.fit(ratings["X_train"], ratings["r_train"], X_val=ratings["X_val"], y_val=ratings["r_val"])
    pred = mf.predict(ratings["X_test"])
    assert rmse(ratings["r_test"], pred) < 0.75 * mean_rmse
    assert pred.min() >= 1 and pred.max() <= 5  # clipped to the training ratings' range
    val = [h["val_rmse"] for h in mf.history_]
    assert mf.best_epoch_ == int(np.argmin(val)) + 1  # early stopping kept the best epoch
    with torch.no_grad():  # the logged validation RMSE is the kept network's (unclipped) one
        scores = mf.module_.score(torch.as_tensor(ratings["X_val"])).numpy()
    assert val[mf.best_epoch_ - 1] == pytest.approx(rmse(ratings["r_val"], scores), rel=1e-5)


def test_mf_regressor_is_the_one_loop_with_a_rating_loss(ratings, monkeypatch):
    """fit goes through crossfeed.training.train with a RatingLoss hook, and trains the same model as a plain
    Adam loop on squared error + L2 (the private loop it replaced) up to float rounding."""
    import crossfeed.models._recsys as recsys

    hooks, real_train = [], recsys.train
    monkeypatch.setattr(recsys, "train", lambda *a, **kw: hooks.append(kw["hooks"]) or real_train(*a, **kw))
    X, r = ratings["X_train"], ratings["r_train"]
    mf = MatrixFactorization(dim=3, reg=0.05, epochs=3, batch_size=64, lr=0.02, random_state=4).fit(X, r)
    assert len(hooks) == 1 and [type(h) for h in hooks[0]] == [RatingLoss]
    assert [sorted(h) for h in mf.history_] == [["epoch", "epochs", "train_loss", "train_rmse"]] * 3

    torch.manual_seed(4)
    net = MatrixFactorizationNet(X.shape[1], 2, n_users=mf.module_.n_users, n_items=mf.module_.n_items, dim=3)
    with torch.no_grad():
        net.global_bias.fill_(float(r.mean()))
    optimizer, generator = torch.optim.Adam(net.parameters(), lr=0.02), torch.Generator().manual_seed(4)
    Xt, rt = torch.tensor(X), torch.tensor(r)
    for _ in range(3):
        for idx in torch.randperm(len(X), generator=generator).split(64):
            loss = (net.score(Xt[idx]) - rt[idx]).square().mean() + 0.05 * net.penalty(Xt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        expected = np.clip(net.score(torch.tensor(ratings["X_test"])).numpy(), 1, 5)
    np.testing.assert_allclose(mf.predict(ratings["X_test"]), expected, rtol=1e-5)


def test_mf_regressor_is_seeded(ratings):
    a, b = (MatrixFactorization(dim=2, epochs=2, random_state=1).fit(ratings["X_train"], ratings["r_train"])
            for _ in range(2))
    np.testing.assert_array_equal(a.predict(ratings["X_test"]), b.predict(ratings["X_test"]))


def test_mf_classifier_through_torch_classifier_and_saved_without_pickle(ratings, tmp_path):
    y_train, y_test = ratings["r_train"] >= 4, ratings["r_test"] >= 4
    clf = TorchClassifier("mf", module_kwargs={"n_users": N_USERS, "n_items": N_ITEMS, "dim": 4}, epochs=30,
                          lr=0.02, optimizer="adam", weight_decay=1e-4, random_state=0)
    clf.fit(ratings["X_train"], y_train)
    proba = clf.predict_proba(ratings["X_test"])[:, 1]
    assert roc_auc_score(y_test, proba) > 0.8
    loaded = load_model(save_model(clf, tmp_path / "mf"))
    np.testing.assert_allclose(loaded.predict_proba(ratings["X_test"])[:, 1], proba, rtol=1e-6)


def test_naive_bayes_maths_match_scikit_learn():
    rng = np.random.default_rng(1)
    codes, flags, y = rng.integers(0, 4, size=200), rng.integers(0, 2, size=(200, 3)), rng.integers(0, 2, size=200)
    table = categorical_log_likelihood(codes, y, np.ones(200), 2, 4, 0.5)
    ref = CategoricalNB(alpha=0.5).fit(codes[:, None], y)
    np.testing.assert_allclose(table[:, :4], ref.feature_log_prob_[0])
    log_p1, log_p0 = bernoulli_log_likelihood(flags, y, np.ones(200), 2, 0.5)
    np.testing.assert_allclose(log_p1, BernoulliNB(alpha=0.5).fit(flags, y).feature_log_prob_)
    np.testing.assert_allclose(np.exp(log_p1) + np.exp(log_p0), 1.0)


def test_feature_naive_bayes_is_categorical_plus_bernoulli_nb():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.integers(0, 50, (300, 2)), rng.integers(0, 5, (300, 2)), rng.integers(0, 2, (300, 4))], 1)
    y = (X[:, 2] + X[:, 4] + rng.integers(0, 3, 300) > 3).astype(int)
    nb = FeatureNaiveBayes(categorical=[2, 3], binary=[4, 5, 6, 7]).fit(X, y)
    cat, ber = CategoricalNB().fit(X[:, 2:4], y), BernoulliNB().fit(X[:, 4:], y)
    jll = cat.predict_joint_log_proba(X[:, 2:4]) + ber.predict_joint_log_proba(X[:, 4:]) - cat.class_log_prior_
    np.testing.assert_allclose(nb.joint_log_likelihood(X), jll, rtol=1e-10)
    # columns not selected (the ids) are ignored
    shuffled = X.copy()
    shuffled[:, :2] = rng.integers(0, 50, (300, 2))
    np.testing.assert_array_equal(nb.predict_proba(shuffled), nb.predict_proba(X))


def test_feature_naive_bayes_weights_unseen_values_and_errors():
    X = np.array([[0, 1], [1, 0], [2, 1], [2, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 1])
    weighted = FeatureNaiveBayes(categorical=[0], binary=[1]).fit(X, y, sample_weight=[2, 1, 1, 1, 1])
    repeated = FeatureNaiveBayes(categorical=[0], binary=[1]).fit(np.vstack([X, X[:1]]), np.append(y, 0))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X))
    unseen = weighted.predict_proba(np.array([[9, 1]], dtype=np.float32))
    assert np.all(np.isfinite(unseen)) and unseen.sum() == pytest.approx(1.0)
    with pytest.raises(ValidationError, match="both categorical and binary"):
        FeatureNaiveBayes(categorical=[0, 1], binary=[1]).fit(X, y)
    with pytest.raises(ValidationError, match="outside the 2 columns"):
        FeatureNaiveBayes(categorical=[5]).fit(X, y)
    with pytest.raises(ValidationError, match="non-negative integer codes"):
        FeatureNaiveBayes(categorical=[0]).fit(-X, y)


def test_naive_bayes_student_distilled_from_an_mf_teacher(ratings):
    y_train = (ratings["r_train"] >= 4).astype(int)
    teacher = TorchClassifier("mf", module_kwargs={"n_users": N_USERS, "n_items": N_ITEMS, "dim": 4}, epochs=20,
                              lr=0.02, random_state=0).fit(ratings["X_train"], y_train)
    student = Distiller(teacher, FeatureNaiveBayes(categorical=[2], binary=[3, 4]), alpha=0.5)
    student.fit(ratings["X_train"][:200], y_train[:200], X_transfer=ratings["X_val"])
    assert student.student_.classes_.tolist() == [0, 1]
    assert student.predict_proba(ratings["X_test"]).shape == (len(ratings["X_test"]), 2)


def test_unknown_architecture_names_still_list_mf():
    with pytest.raises(UnknownNameError, match="mf"):
        ARCHITECTURES.get("mff")


@parametrize_with_checks([FeatureNaiveBayes(), MatrixFactorization(dim=2, epochs=1, random_state=0)])
def test_sklearn_compatible(estimator: Any, check: Any) -> None:
    check(estimator)
