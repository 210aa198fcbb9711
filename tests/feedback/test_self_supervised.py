"""Self-supervised pretraining (issue 11, #17): NT-Xent, the augmentations, pretrain_trunk and the strategy."""

from __future__ import annotations

import dataclasses
import doctest
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from crossfeed.data import DomainSuite, load_suite
from crossfeed.exceptions import ValidationError
from crossfeed.feedback import STRATEGIES, absorb
from crossfeed.feedback import _contrastive as contrastive
from crossfeed.feedback._contrastive import (
    AUGMENTATIONS,
    augmentation_for,
    mask_features,
    nt_xent,
    pretrain_trunk,
    suite_kind,
)
from crossfeed.feedback.self_supervised import unlabelled_pool
from crossfeed.models import CNN1D, MLP, TorchClassifier


@pytest.fixture(scope="module")
def small_suite() -> DomainSuite:
    """mnist1d, 600 per domain: 1,500 training rows and 375 field rows pooled over the five domains."""
    return load_suite("mnist1d", seed=0, n_per_domain=600)


def test_docstring_examples_run():
    for module in (contrastive, __import__("crossfeed.feedback.self_supervised", fromlist=["x"])):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_nt_xent_matches_the_hand_computed_value():
    # view 0 = [1, 0]: its partner scores e^1, the two other views e^0 -> -log(e / (2 + e))
    eye = torch.eye(2)
    assert float(nt_xent(eye, eye, temperature=1.0)) == pytest.approx(math.log(2 + math.e) - 1, abs=1e-6)
    per_view = nt_xent(eye, eye, temperature=1.0, reduction="none")
    assert per_view.shape == (4,) and torch.allclose(per_view, per_view[0].expand(4))


def test_nt_xent_is_low_for_matching_views_and_high_for_random_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 16, generator=g)
    matching = nt_xent(z, z + 0.01 * torch.randn(64, 16, generator=g), temperature=0.1)
    unrelated = nt_xent(z, torch.randn(64, 16, generator=g), temperature=0.1)
    assert float(matching) < 0.2 and float(unrelated) > math.log(127)  # log(2N - 1): a uniform guess


@pytest.mark.parametrize("z1, z2, kwargs, message", [
    (torch.zeros(1, 4), torch.zeros(1, 4), {}, "N >= 2"),
    (torch.zeros(3, 4), torch.zeros(2, 4), {}, "same shape"),
    (torch.zeros(3, 4), torch.zeros(3, 4), {"temperature": 0.0}, "temperature must be > 0"),
])
def test_nt_xent_rejects_bad_input(z1, z2, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        nt_xent(z1, z2, **kwargs)


@pytest.mark.parametrize("kind", sorted(AUGMENTATIONS))
def test_augmentations_are_seeded_and_keep_the_shape(kind):
    x = torch.randint(0, 30, (6, 784)).float()  # whole numbers: valid word ids and table values too
    augment = augmentation_for(kind)
    a = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, augment(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(2)))
    assert not torch.equal(a, x)


def test_discrete_augmentations_keep_valid_values():
    x = torch.randint(2, 30, (6, 20)).float()
    x[:, -5:] = 0  # padding
    tokens = augmentation_for("tokens")(x, torch.Generator().manual_seed(0))
    assert torch.equal(tokens[:, -5:], x[:, -5:]) and set(tokens.unique().tolist()) <= set(x.unique().tolist()) | {1.0}
    table = augmentation_for("tabular")(x, torch.Generator().manual_seed(0))
    assert all(set(table[:, j].tolist()) <= set(x[:, j].tolist()) for j in range(x.shape[1]))


def test_mask_features_masks_the_requested_share():
    out, mask = mask_features(torch.ones(100, 100), torch.Generator().manual_seed(0), 0.3)
    assert 0.27 < float(mask.float().mean()) < 0.33 and bool((out[mask] == 0).all() and (out[~mask] == 1).all())


def test_augmentation_for_suites_and_own_functions(small_suite):
    assert suite_kind(small_suite) == "signal" and augmentation_for(small_suite) is AUGMENTATIONS["signal"]
    images = dataclasses.replace(small_suite, name="pictures", meta={"image_shape": [1, 8, 5]})
    augment = augmentation_for(images)
    assert augment(torch.rand(3, 40), torch.Generator().manual_seed(0)).shape == (3, 40)

    def mine(x, generator):
        return x

    assert augmentation_for(mine) is mine
    unknown = dataclasses.replace(small_suite, name="custom", meta={})
    with pytest.raises(ValidationError, match="cannot tell what kind of data suite 'custom'.*image, signal, tabular, tokens"):
        augmentation_for(unknown)


def test_unknown_augmentation_kind_lists_the_known_ones():
    with pytest.raises(ValidationError, match="unknown augmentation kind 'audio'; known kinds: image, signal, tabular, tokens"):
        augmentation_for("audio")
    with pytest.raises(ValidationError, match="augment.*'audio'"):
        STRATEGIES.get("self_supervised").check_params({"augment": "audio"})


def test_pretraining_needs_unlabelled_rows_and_a_trunk(small_suite):
    with pytest.raises(ValidationError, match="at least 2 unlabelled rows"):
        pretrain_trunk(CNN1D(40, 10, size="tiny"), np.zeros((0, 40)))
    with pytest.raises(ValidationError, match="at least 2 unlabelled rows"):
        pretrain_trunk(CNN1D(40, 10, size="tiny"), None)
    with pytest.raises(ValidationError, match="MLP has no embed"):
        pretrain_trunk(MLP(40, 10), np.zeros((8, 40)))
    with pytest.raises(ValidationError, match="objective must be one of"):
        pretrain_trunk(CNN1D(40, 10, size="tiny"), np.zeros((8, 40)), objective="rotation")
    no_field = dataclasses.replace(small_suite, domains=tuple(dataclasses.replace(d, X_field=None, y_field=None)
                                                              for d in small_suite))
    with pytest.raises(ValidationError, match="found no unlabelled rows.*general_rows"):
        unlabelled_pool(no_field, ["noisy"], general_rows=False)


def _embed(module: torch.nn.Module, X) -> np.ndarray:
    with torch.no_grad():
        return module.eval().embed(torch.as_tensor(X, dtype=torch.float32)).numpy()


def _probe_accuracy(module: torch.nn.Module, suite: DomainSuite, per_class: int) -> float:
    """Logistic regression on the frozen embedding, ``per_class`` labels per class, mean test accuracy over domains."""
    X, y = suite.pooled("train")
    rows = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])
    clf = LogisticRegression(max_iter=3000).fit(_embed(module, X[rows]), y[rows])
    return float(np.mean([clf.score(_embed(module, d.X_test), d.y_test) for d in suite]))


def _view_retrieval(module: torch.nn.Module, X: np.ndarray) -> float:
    """Share of rows whose view's nearest embedding (cosine) among the other view of 256 rows is its partner."""
    x, g = torch.as_tensor(X[:256]), torch.Generator().manual_seed(5)
    a, b = (_embed(module, augmentation_for("signal")(x, g)) for _ in range(2))
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.mean((a @ b.T).argmax(axis=1) == np.arange(len(a))))


@pytest.fixture(scope="module")
def pretrained(small_suite):
    """A random cnn1d small, and copies pretrained (NT-Xent and masked) on the pooled field and training rows."""
    torch.manual_seed(0)
    init = CNN1D(40, 10, size="small")
    X_pool = np.concatenate([d.X_field for d in small_suite] + [small_suite.pooled("train")[0]])
    runs = {obj: pretrain_trunk(init, X_pool, small_suite, objective=obj, epochs=epochs, batch_size=128, lr=3e-3,
                                temperature=0.2, seed=0, threads=1) for obj, epochs in (("ntxent", 10), ("masked", 5))}
    return init, runs


def test_ntxent_pretraining_makes_the_trunk_invariant_to_the_views(small_suite, pretrained):
    """The contrastive objective itself: two views of a row find each other far more often than before pretraining."""
    init, runs = pretrained
    net, log = runs["ntxent"]
    assert log.history[-1]["train_loss"] < log.history[0]["train_loss"]
    X = small_suite["default"].X_test
    before, after = _view_retrieval(init, X), _view_retrieval(net, X)
    assert after > before + 0.2, (before, after)


def test_ntxent_pretraining_beats_random_init_on_a_linear_probe(small_suite, pretrained):
    """50 labels per class: the probe on the NT-Xent trunk beats the probe on the same trunk before pretraining
    (0.268 -> 0.308 when written)."""
    init, runs = pretrained
    before, after = _probe_accuracy(init, small_suite, 50), _probe_accuracy(runs["ntxent"][0], small_suite, 50)
    assert after > before + 0.02, (before, after)


def test_masked_pretraining_learns_to_reconstruct(pretrained):
    """The masked objective's reconstruction error falls well below where it starts (the trunk learns the signals)."""
    init, runs = pretrained
    net, log = runs["masked"]
    losses = [h["train_loss"] for h in log.history]
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.equal(net.features[0].weight, init.features[0].weight)
    assert torch.equal(net.classifier[-1].weight, init.classifier[-1].weight)  # the head is left as it is


def test_pretrain_trunk_is_seeded_and_leaves_the_module_alone():
    torch.manual_seed(0)
    net = CNN1D(40, 10, size="tiny")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    X = np.random.default_rng(0).normal(size=(64, 40)).astype(np.float32)
    a, _ = pretrain_trunk(net, X, "signal", epochs=1, batch_size=16, seed=3)
    b, _ = pretrain_trunk(net, X, "signal", epochs=1, batch_size=16, seed=3)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_strategy_pretrains_then_fine_tunes_through_absorb(small_suite):
    general = small_suite[small_suite.general_domain]
    large = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=3, random_state=0, threads=1).fit(
        general.X_train, general.y_train)
    experts = {"noisy": large, "shifted": large}
    params = {"pretrain_epochs": 1, "pretrain_batch_size": 64}
    new, report = absorb(large, experts, small_suite, "self_supervised", params=params, epochs=1, keep_weaker_experts=True)
    field = {name: len(small_suite[name].X_field) for name in ("default", "noisy", "shifted")}
    assert report.info["pretrain_rows"] == {**field, "default:train": len(general.X_train)}
    assert set(report.domains) == set(small_suite.names)
    # epochs 0: the new model is the pretrained module itself; its trunk moved, its head did not
    untrained, _ = absorb(large, experts, small_suite, "self_supervised", params=params, epochs=0,
                          keep_weaker_experts=True)
    assert not torch.equal(untrained.module_.features[0].weight, large.module_.features[0].weight)
    assert torch.equal(untrained.module_.classifier[-1].weight, large.module_.classifier[-1].weight)
