"""IRM, V-REx and the attribution mask: the pure maths, bad input, and no-op tests on small data.

The no-op tests use a small synthetic Colored-MNIST-like construction: a "shape" feature predicts
the label with probability 0.75 in every environment, a "colour" feature with probability 0.9 and
0.8 in the two training environments and 0.1 in the held-out one. ERM relies on the colour; IRM
and V-REx must rely on it less than the same run with penalty 0.
"""

from __future__ import annotations

import doctest
import importlib
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from crossfeed.data import Domain, DomainSuite
from crossfeed.data._domain import stratified_split
from crossfeed.exceptions import MissingDependencyError, ValidationError
from crossfeed.feedback import TrainSettings, absorb
from crossfeed.feedback._invariance import (
    EnvironmentPenaltyHook,
    agreement_mask,
    attribution_agreement,
    check_environments,
    input_gradient_penalty,
    integrated_gradients,
    irm_penalty,
    penalty_schedule,
    vrex_penalty,
)
from crossfeed.models import TorchClassifier

N_SHAPE, N_COLOUR = 4, 4
SPURIOUS = slice(N_SHAPE, N_SHAPE + N_COLOUR)


# -- the pure penalties --------------------------------------------------------------------------
def test_irm_penalty_is_zero_at_the_risk_minimum_for_the_scale_and_positive_elsewhere():
    y = torch.tensor([0, 1] * 50)
    correct = torch.where(y == 1, 1.0, -1.0)
    noisy = torch.where(torch.arange(100) % 8 < 2, -correct, correct)  # a quarter wrong, in both halves
    direction = torch.stack([-noisy, noisy], dim=1) / 2
    # for logits c · d, the risk's minimum over the scale w is where d/dw R(w c d) = 0: find c by bisection
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        s = torch.tensor(mid, requires_grad=True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(s * direction, y), [s])
        lo, hi = (mid, hi) if g < 0 else (lo, mid)
    at_min = irm_penalty(lo * direction, y)
    assert float(at_min.detach()) < 1e-8
    for c in (0.3 * lo, 3.0 * lo):
        assert float(irm_penalty(c * direction, y).detach()) > 1e-3
    assert float(irm_penalty(3.0 * lo * direction, y, unbiased=True).detach()) > 1e-3


def test_irm_penalty_keeps_the_graph_and_checks_shapes():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]], requires_grad=True)
    irm_penalty(logits, torch.tensor([1, 0])).backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    with pytest.raises(ValidationError, match="shape"):
        irm_penalty(torch.zeros(3), torch.tensor([0, 1, 0]))


def test_vrex_penalty_is_zero_for_equal_risks_and_the_variance_otherwise():
    assert float(vrex_penalty(torch.tensor([0.7, 0.7]))) == 0.0
    assert float(vrex_penalty(torch.tensor([0.0, 2.0, 4.0]))) == pytest.approx(8 / 3)
    with pytest.raises(ValidationError, match="at least 2 environments"):
        vrex_penalty(torch.tensor([1.0]))


def test_penalty_schedule_anneals_then_rescales():
    assert [penalty_schedule(s, 100.0, 2) for s in (0, 1, 2, 9)] == [(1.0, 1.0), (1.0, 1.0), (100.0, 100.0),
                                                                      (100.0, 100.0)]
    assert penalty_schedule(5, 0.5, 0) == (0.5, 1.0)


def test_an_environment_with_one_class_is_refused_with_a_clear_error():
    with pytest.raises(ValidationError, match="environment 'b' holds only class 1.*at least two classes"):
        check_environments(np.array([0, 1, 1, 1]), np.array(["a", "a", "b", "b"]))
    with pytest.raises(ValidationError, match="at least 2 environments"):
        check_environments(np.array([0, 1]), np.array(["a", "a"]))
    with pytest.raises(ValidationError, match="only class 0"):
        EnvironmentPenaltyHook(np.array([0, 1, 0, 0]), np.array([0, 0, 1, 1]), lambda g: torch.zeros(()), 1.0, 0)


def test_irm_refuses_a_one_class_domain_in_absorb():
    suite = _suite(0, n=200)
    one_class = suite["train_0.8"]
    y = np.zeros_like(one_class.y_train)
    bad = DomainSuite(suite.name, (suite["train_0.9"], Domain("train_0.8", one_class.X_train, y, one_class.X_val,
                                                               one_class.y_val, one_class.X_test, one_class.y_test)),
                      suite.classes, suite.meta)
    v0, experts = _v0_and_experts(suite)
    with pytest.raises(ValidationError, match="environment 'train_0.8' holds only class 0"):
        absorb(v0, experts, bad, "irm", TrainSettings(epochs=1))


# -- attributions ------------------------------------------------------------------------------
def test_integrated_gradients_are_complete():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    X = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    attr = integrated_gradients(net, X, target=2, n_steps=64)
    with torch.no_grad():
        expected = (net(torch.as_tensor(X)) - net(torch.zeros(1, 6)))[:, 2].numpy()
    assert attr.shape == (5, 6)
    np.testing.assert_allclose(attr.sum(axis=1), expected, atol=1e-3)
    predicted = integrated_gradients(net, X, n_steps=8)  # target None: each row's predicted class
    assert predicted.shape == (5, 6)
    with pytest.raises(ValidationError, match="class indices in 0..2"):
        integrated_gradients(net, X, target=3)
    with pytest.raises(ValidationError, match="torch network"):
        integrated_gradients(LogisticRegression(), X)


def test_attribution_agreement_on_constructed_attributions():
    experts = [np.array([[5.0, 4.0, 0.0, 0.0, 1.0]]), np.array([[-5.0, 0.0, 4.0, 0.0, 1.0]]),
               np.array([[5.0, 0.1, 0.0, 4.0, 1.0]])]
    agreement = attribution_agreement(experts, top_fraction=0.4)  # top 2 features of 5
    np.testing.assert_allclose(agreement, [1.0, 1 / 3, 1 / 3, 1 / 3, 0.0])
    assert agreement_mask(agreement, 0.5).tolist() == [True, False, False, False, False]
    assert agreement_mask(agreement, 1 / 3).tolist() == [True, True, True, True, False]
    with pytest.raises(ValidationError, match="no feature reaches"):
        agreement_mask(np.zeros(3), 0.5)
    with pytest.raises(ValidationError, match="same number of features"):
        attribution_agreement([np.ones((2, 3)), np.ones((2, 4))])


def test_input_gradient_penalty_sees_only_the_weighted_features():
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 2.0]]))
    x = torch.ones(4, 3)
    assert float(input_gradient_penalty(net, x, torch.tensor([0.0, 1.0, 0.0])).detach()) == 0.0
    assert float(input_gradient_penalty(net, x, torch.tensor([1.0, 0.0, 0.0])).detach()) > 0.0


# -- no-op tests on a small synthetic environment construction ----------------------------------------
def _environment(rng: np.random.Generator, n: int, e: float) -> tuple[np.ndarray, np.ndarray]:
    """Shape predicts y with probability 0.75, colour with probability 1 - e (as in Colored MNIST)."""
    shape = rng.integers(0, 2, n)
    y = shape ^ (rng.random(n) < 0.25)
    colour = y ^ (rng.random(n) < e)
    signs = np.concatenate([np.repeat(2 * shape[:, None] - 1, N_SHAPE, 1), np.repeat(2 * colour[:, None] - 1, N_COLOUR, 1)],
                           axis=1)
    return (signs + rng.normal(scale=0.3, size=signs.shape)).astype(np.float32), y.astype(np.int64)


def _suite(seed: int, n: int = 1600) -> DomainSuite:
    rng = np.random.default_rng(seed)
    domains = []
    for name, e in (("train_0.9", 0.1), ("train_0.8", 0.2), ("test_0.1", 0.9)):
        X, y = _environment(rng, n, e)
        domains.append(Domain.from_indices(name, X, y, stratified_split(y, rng)))
    return DomainSuite.from_domains("toy_colored", domains, meta={"general_domain": "train_0.9"})


def _v0_and_experts(suite: DomainSuite) -> tuple[TorchClassifier, dict]:
    general, other = suite["train_0.9"], suite["train_0.8"]
    v0 = TorchClassifier("mlp", module_kwargs={"hidden": (32,)}, epochs=1, lr=1e-3, random_state=0,
                         threads=1).fit(general.X_train, general.y_train)
    expert = TorchClassifier("mlp", module_kwargs={"hidden": (32,)}, epochs=20, lr=3e-3, random_state=1,
                             threads=1).fit(other.X_train, other.y_train)
    return v0, {"train_0.8": expert}


@pytest.fixture(scope="module")
def toy():
    suite = _suite(0)
    return suite, *_v0_and_experts(suite)


FULL_BATCH = TrainSettings(epochs=300, lr=1e-2, batch_size=1600, optimizer="adam", seed=0, threads=1)


def _spurious_share(model: TorchClassifier, X: np.ndarray) -> float:
    """Share of the mean |Integrated Gradients| that falls on the colour features."""
    importance = np.abs(integrated_gradients(model, X, n_steps=16)).mean(axis=0)
    return float(importance[SPURIOUS].sum() / importance.sum())


@pytest.mark.parametrize("name, weight", [("irm", 1000.0), ("vrex", 1000.0)])
def test_invariance_relies_less_on_the_spurious_feature_than_without_the_penalty(toy, name, weight):
    suite, v0, experts = toy
    test = suite["test_0.1"]
    new_erm, erm = absorb(v0, experts, suite, name, FULL_BATCH, params={"penalty_weight": 0.0, "anneal_steps": 0})
    new, report = absorb(v0, experts, suite, name, FULL_BATCH, params={"penalty_weight": weight, "anneal_steps": 50})
    assert report.domains["test_0.1"].acc_v1 > erm.domains["test_0.1"].acc_v1 + 0.25
    assert _spurious_share(new, test.X_test) < _spurious_share(new_erm, test.X_test) - 0.1
    assert report.info["train_samples"] == {"train_0.9": 800, "train_0.8": 800}


def test_penalty_zero_is_erm(toy):
    suite, v0, experts = toy
    settings = FULL_BATCH.replace(epochs=30)
    erm, _ = absorb(v0, experts, suite, "joint_training", settings)
    for name in ("irm", "vrex"):
        zero, _ = absorb(v0, experts, suite, name, settings, params={"penalty_weight": 0.0, "anneal_steps": 0})
        np.testing.assert_allclose(zero.predict_proba(suite["test_0.1"].X_test),
                                   erm.predict_proba(suite["test_0.1"].X_test), atol=1e-4)


def test_attribution_mask_keeps_the_large_model_off_the_features_the_experts_do_not_agree_on(toy):
    suite, v0, experts = toy
    settings = TrainSettings(epochs=10, lr=3e-3, batch_size=128, seed=0, threads=1)
    params = {"top_fraction": 0.5, "min_agreement": 1.0, "ig_steps": 8}
    masked, report = absorb(v0, experts, suite, "attribution_mask", settings, params={**params, "mask_weight": 10.0})
    plain, _ = absorb(v0, experts, suite, "attribution_mask", settings, params={**params, "mask_weight": 0.0})
    assert report.info["agreed_features"] == 4
    weights = torch.as_tensor((report.info["agreement"] < 1.0).astype(np.float32))  # the penalised features
    X = torch.as_tensor(suite["test_0.1"].X_test)
    sensitivity = {k: float(input_gradient_penalty(m.module_, X, weights).detach()) for k, m in
                   (("masked", masked), ("plain", plain))}
    assert sensitivity["masked"] < 0.5 * sensitivity["plain"]


def test_integrated_gradients_without_captum_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # makes `import captum.attr` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[explain\]'"):
        integrated_gradients(nn.Linear(2, 2), np.ones((1, 2), dtype=np.float32))


@pytest.mark.parametrize("module", ["crossfeed.feedback._invariance", "crossfeed.data._colored"])
def test_docstring_examples_run(module):
    assert doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS).failed == 0
