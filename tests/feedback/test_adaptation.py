"""Domain adaptation (DANN, Deep CORAL, MMD): the losses as pure functions, and each strategy
against the same run with its alignment weight 0 (source-only training on the same batches)."""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pytest
import torch

from crossfeed.data import Domain, DomainSuite
from crossfeed.exceptions import ValidationError
from crossfeed.feedback import TrainSettings, _adaptation, absorb
from crossfeed.feedback._adaptation import (
    AdaptationData,
    coral_loss,
    dann_lambda,
    domain_discriminator,
    embed_features,
    feature_layer,
    gradient_reversal,
    median_bandwidths,
    mmd_loss,
)
from crossfeed.feedback.coral import Coral
from crossfeed.feedback.dann import DANN
from crossfeed.models import TorchClassifier
from crossfeed.training import Batch

from .conftest import context

#: Short runs: each strategy once plus one shared weight-0 run.
RUN = {"epochs": 4, "lr": 1e-3, "random_state": 0}
STRATEGIES = {"dann": {"weight": 1.0}, "coral": {"weight": 100.0}, "mmd": {"weight": 1.0}}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- the maths ---------------------------------------------------------------------------------
def test_coral_is_zero_for_one_distribution_and_grows_with_the_covariance_shift():
    x = torch.randn(256, 4, generator=_gen())
    assert float(coral_loss(x, x)) == 0.0
    assert float(coral_loss(x, x + 5.0)) == pytest.approx(0.0, abs=1e-5)  # a mean shift is not CORAL's business
    losses = [float(coral_loss(x, s * torch.randn(256, 4, generator=_gen(1)))) for s in (1.0, 1.5, 3.0)]
    assert losses[0] < 0.01 < losses[1] < losses[2]
    # ||C_s - C_t||_F^2 / (4 d^2) by hand
    s, t = x[:64], 2 * x[64:128]
    expected = ((torch.cov(s.T) - torch.cov(t.T)) ** 2).sum() / (4 * 16)
    assert float(coral_loss(s, t)) == pytest.approx(float(expected), rel=1e-5)


def test_mmd_is_zero_for_equal_samples_positive_and_growing_for_shifted_ones():
    x = torch.randn(128, 3, generator=_gen())
    assert float(mmd_loss(x, x)) == 0.0
    shifts = [float(mmd_loss(x, x + d)) for d in (0.5, 1.0, 2.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    assert float(mmd_loss(x[:64], x[64:])) < shifts[0]  # two draws of one distribution: small
    # one kernel by hand: biased estimator, exp(-d^2 / (2 sigma^2))
    a, b = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])
    k = lambda u, v: torch.exp(-((u - v.T) ** 2) / 2).mean()  # noqa: E731
    assert float(mmd_loss(a, b, [1.0])) == pytest.approx(float(k(a, a) + k(b, b) - 2 * k(a, b)), rel=1e-6)


def test_docstring_examples_run():
    assert doctest.testmod(_adaptation).failed == 0


def test_median_bandwidths_scale_with_the_data():
    x = torch.randn(64, 2, generator=_gen())
    small, large = median_bandwidths(x, x + 1), median_bandwidths(10 * x, 10 * x + 10)
    assert len(small) == 5 and small == sorted(small)
    assert large == pytest.approx([10 * s for s in small], rel=1e-4)


def test_gradient_reversal_is_identity_forward_and_flips_the_gradient_scaled_by_lambda():
    w = torch.randn(5, generator=_gen())
    x = torch.randn(5, requires_grad=True)
    (w * x).sum().backward()
    plain = x.grad.clone()
    for lambd in (1.0, 0.25):
        x.grad = None
        y = gradient_reversal(x, lambd)
        assert torch.equal(y, x)
        (w * y).sum().backward()
        assert torch.allclose(x.grad, -lambd * plain)
    with pytest.raises(ValidationError, match="lambd"):
        gradient_reversal(x, -1.0)


def test_dann_lambda_follows_ganins_schedule():
    values = [dann_lambda(p) for p in np.linspace(0, 1, 11)]
    assert values[0] == 0.0 and all(a < b for a, b in zip(values, values[1:], strict=False)) and values[-1] < 1.0
    assert dann_lambda(0.1) == pytest.approx(2 / (1 + np.exp(-1.0)) - 1)
    with pytest.raises(ValidationError, match=r"progress must be a number in \[0, 1\]"):
        dann_lambda(1.5)


def test_the_losses_reject_bad_input_with_the_fix():
    x = torch.randn(8, 3)
    with pytest.raises(ValidationError, match="same number of features; got 3 and 2"):
        coral_loss(x, torch.randn(8, 2))
    with pytest.raises(ValidationError, match="at least 2; raise batch_size"):
        coral_loss(x, x[:1])
    with pytest.raises(ValidationError, match=r"shape \(n_samples, n_features\)"):
        mmd_loss(x.flatten(), x)
    with pytest.raises(ValidationError, match="bandwidths must be a non-empty list of numbers > 0"):
        mmd_loss(x, x, [0.0])
    with pytest.raises(ValidationError, match="n_domains must be an integer >= 2"):
        domain_discriminator(3, 1)


def test_features_are_read_before_the_head_and_a_linear_model_is_refused():
    mlp = TorchClassifier("mlp", module_kwargs={"hidden": [7]}, epochs=1).fit(np.random.rand(20, 4), np.arange(20) % 2)
    assert feature_layer(mlp.module_) is mlp.module_.head
    assert embed_features(mlp, np.random.rand(6, 4)).shape == (6, 7)
    linear = TorchClassifier("linear", epochs=1).fit(np.random.rand(20, 4), np.arange(20) % 2)
    with pytest.raises(ValidationError, match="no trainable layer before it.*cnn1d, cnn2d, mlp"):
        feature_layer(linear.module_)


# -- the data and the hook --------------------------------------------------------------------
def test_prepare_adds_every_domains_field_rows_unlabelled(v0, experts, suite):
    data = Coral().prepare(context(v0, experts, suite))
    n_general = len(suite["default"].X_train)
    assert isinstance(data, AdaptationData) and data.domains == tuple(experts)
    assert data.labelled.sum() == n_general and not data.labelled[n_general:].any()
    assert data.info["field_samples"] == {n: len(suite[n].X_field) for n in experts}
    for k, name in enumerate(data.domains, start=1):
        assert np.array_equal(data.X[data.groups == k], suite[name].X_field.reshape(len(suite[name].X_field), -1))


def test_unlabelled_rows_get_no_cross_entropy_and_dann_trains_a_discriminator(v0, experts, suite):
    ctx = context(v0, experts, suite, epochs=2)
    data = DANN().prepare(ctx)
    (hook,) = DANN().hooks(ctx, data)
    module = v0.module_
    extra = hook.setup(module, torch.device("cpu"))
    assert sum(p.numel() for p in extra) == sum(p.numel() for p in hook.discriminator.parameters()) > 0
    field_rows = torch.as_tensor(np.flatnonzero(~data.labelled)[:6])
    batch = Batch(x=torch.as_tensor(data.X[field_rows.numpy()]), y=torch.zeros(6, dtype=torch.long), index=field_rows)
    assert float(hook.base_loss(batch, module(batch.x), module).detach()) == 0.0
    hook.teardown(module)


# -- each strategy against the same run with weight 0 -----------------------------------------
def _feature_distance(model, suite, experts) -> float:
    general = torch.as_tensor(embed_features(model, suite["default"].X_test))
    return float(np.mean([float(coral_loss(general, torch.as_tensor(embed_features(model, suite[n].X_test))))
                          for n in experts]))


@pytest.fixture(scope="module")
def source_only(v0, experts, suite):
    """The adaptation run with the alignment weight 0: the same batches, no alignment term."""
    return absorb(v0, experts, suite, "coral", params={"weight": 0.0}, **RUN)[0]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_alignment_lowers_the_feature_discrepancy_against_weight_zero(name, v0, experts, suite, source_only):
    adapted, report = absorb(v0, experts, suite, name, params=STRATEGIES[name], **RUN)
    without, with_ = _feature_distance(source_only, suite, experts), _feature_distance(adapted, suite, experts)
    assert with_ < 0.7 * without, (name, with_, without)  # weight 0 itself gives exactly `without`
    assert report.forgetting < 0.1  # the general domain is still learnt


def test_teach_adds_the_experts_kd_on_field_rows(v0, experts, suite, source_only):
    """DA + KD: the same weight-0 run, plus the experts teaching their domains' field rows."""
    taught, report = absorb(v0, experts, suite, "coral", params={"weight": 0.0, "teach": True}, **RUN)
    shifted = list(experts)
    before = np.mean([np.mean(source_only.predict(suite[n].X_test) == suite[n].y_test) for n in shifted])
    assert report.mean("acc_v1", shifted) > before + 0.05


def _gaussian_domain(name: str, seed: int, shift: np.ndarray) -> Domain:
    """Two classes apart along feature 0 of 10 (train 400, val 100, test 400, field 200), moved by ``shift``."""
    rng = np.random.default_rng(seed)
    splits = []
    for n in (400, 100, 400, 200):
        y = rng.integers(0, 2, n)
        X = rng.normal(size=(n, 10)).astype(np.float32)
        X[:, 0] += 2.0 * (2 * y - 1)
        splits.append(((X + shift).astype(np.float32), y))
    (Xtr, ytr), (Xv, yv), (Xte, yte), (Xf, yf) = splits
    return Domain(name, Xtr, ytr, Xv, yv, Xte, yte, X_field=Xf, y_field=yf)


@pytest.fixture(scope="module")
def gaussian_shift():
    """A source domain and a target moved against the class direction and along every other feature,
    with a small MLP trained on the source: its target accuracy drops from 0.95 to about 0.62."""
    shift = np.full(10, 1.0, np.float32)
    shift[0] = -2.5
    suite = DomainSuite.from_domains("gaussian", [_gaussian_domain("source", 0, np.zeros(10, np.float32)),
                                                  _gaussian_domain("target", 1, shift)],
                                     meta={"general_domain": "source"})
    source = suite["source"]
    v0 = TorchClassifier("mlp", module_kwargs={"hidden": [32]}, epochs=20, lr=3e-3, random_state=0)
    return suite, v0.fit(source.X_train, source.y_train)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_alignment_raises_the_target_accuracy_against_weight_zero(name, gaussian_shift):
    suite, v0 = gaussian_shift
    run = {"epochs": 10, "lr": 1e-3, "random_state": 0, "keep_weaker_experts": True}
    _, without = absorb(v0, {"target": v0}, suite, name, params={"weight": 0.0}, **run)
    _, with_ = absorb(v0, {"target": v0}, suite, name, params=STRATEGIES[name], **run)
    assert with_.domains["target"].acc_v1 > without.domains["target"].acc_v1 + 0.05
    assert with_.domains["source"].acc_v1 > 0.9


# -- bad input ------------------------------------------------------------------------------------
def test_a_domain_without_field_data_is_named(v0, experts, suite):
    domains = [dataclasses.replace(d, X_field=None, y_field=None) if d.name == "sheared" else d for d in suite]
    broken = DomainSuite.from_domains(suite.name, domains, meta=suite.meta)
    with pytest.raises(ValidationError, match="domain 'sheared' has no field data"):
        absorb(v0, experts, broken, "dann", epochs=1)
    with pytest.raises(ValidationError, match="domain 'sheared' has no unlabelled field data.*'dann'"):
        DANN().prepare(context(v0, experts, broken))


def test_a_batch_too_small_for_every_domain_says_how_to_fix_it(v0, experts, suite):
    with pytest.raises(ValidationError, match="at least 2 rows of each of the 5 domains.*Raise batch_size to 10"):
        absorb(v0, experts, suite, "mmd", TrainSettings(epochs=1, batch_size=8))
