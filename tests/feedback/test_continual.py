"""Continual learning (setting (c)): EWC, LwF and replay forget less than unprotected sequential KD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.feedback import (
    EWC,
    STRATEGIES,
    Replay,
    SequentialKD,
    absorb,
    absorb_sequence,
    diagonal_fisher,
    ewc_penalty,
)
from crossfeed.feedback._continual import FrozenNormStatsHook, KDTermHook, balanced_quotas
from crossfeed.models import TorchClassifier
from crossfeed.spawn import kd_loss
from crossfeed.training import Batch
from tests.feedback.conftest import context

ORDER = ["noisy", "sheared", "shifted", "scaled"]
SEQUENCE = {"order": ORDER, "epochs": 10, "lr": 1e-3, "random_state": 0}


def _summary(report):
    absorbed = float(np.mean([report.accuracy(d) for d in ORDER]))
    return report.mean_forgetting(), report.forgetting(report.general_domain), absorbed


@pytest.fixture(scope="module")
def plain(v0, experts, suite):
    """The same sequence without protection: each step learns the current domain only."""
    return _summary(absorb_sequence(v0, experts, suite, "sequential_kd", **SEQUENCE)[1])


# measured (order noisy, sheared, shifted, scaled; 10 epochs per step; seeds 0 / 1 / 2):
#   mean forgetting of the absorbed domains, forgetting of the general domain, mean final accuracy
#   on the absorbed domains (v0: 0.466)
#   sequential_kd  0.180 / 0.183 / 0.190   0.464 / 0.458 / 0.460   0.532 / 0.531 / 0.524
#   ewc            0.006 / 0.003 / 0.015   0.028 / 0.024 / 0.028   0.510 / 0.508 / 0.509
#   lwf           -0.003 / -0.002 / 0.012  0.042 / 0.038 / 0.040   0.545 / 0.537 / 0.546
#   replay        -0.001 / 0.012 / 0.004   0.076 / 0.076 / 0.070   0.632 / 0.621 / 0.626
@pytest.mark.parametrize("name", ["ewc", "lwf", "replay"])
def test_forgets_less_than_plain_sequential_kd_and_still_absorbs(name, v0, experts, suite, plain):
    _, report = absorb_sequence(v0, experts, suite, name, **SEQUENCE)
    mean_forgetting, general_forgetting, absorbed = _summary(report)
    plain_mean, plain_general, _ = plain
    assert mean_forgetting < plain_mean - 0.10
    assert general_forgetting < plain_general - 0.25
    assert absorbed > np.mean([report.initial(d) for d in ORDER]) + 0.03
    assert report.strategy == name and [s.strategy for s in report.steps] == [name] * len(ORDER)


def test_norm_statistics_are_frozen_unless_asked_not_to(v0, experts, suite):
    def running(model):
        return {k: v for k, v in model.module_.state_dict().items() if "running" in k}

    frozen, _ = absorb(v0, {"noisy": experts["noisy"]}, suite, SequentialKD(), epochs=1)
    moving, _ = absorb(v0, {"noisy": experts["noisy"]}, suite, SequentialKD(freeze_norm_stats=False), epochs=1)
    assert all(torch.equal(v, running(v0)[k]) for k, v in running(frozen).items())
    assert any(not torch.equal(v, running(v0)[k]) for k, v in running(moving).items())
    assert any(not torch.equal(v, v0.module_.state_dict()[k]) for k, v in frozen.module_.state_dict().items())


def test_frozen_norm_hook_releases_the_layers():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    hook = FrozenNormStatsHook()
    hook.setup(net, torch.device("cpu"))
    net.train()(torch.randn(8, 3))
    assert torch.equal(net[1].running_mean, torch.zeros(4))
    hook.teardown(net)
    net.train()(torch.randn(8, 3))
    assert not torch.equal(net[1].running_mean, torch.zeros(4))


def test_diagonal_fisher_matches_a_per_sample_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    net.train()(torch.randn(16, 4))  # non-trivial running statistics
    net.train()
    X = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    fisher = diagonal_fisher(net, X, batch_size=3)
    assert net.training  # mode restored

    net.eval()
    expected = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for x in torch.as_tensor(X):
        log_p = torch.log_softmax(net(x[None]), dim=1)[0]
        for c in range(3):
            grads = torch.autograd.grad(log_p[c], list(net.parameters()), retain_graph=True)
            for (n, _), g in zip(net.named_parameters(), grads, strict=True):
                expected[n] += log_p[c].exp().detach() * g**2 / len(X)
    assert set(fisher) == set(expected)
    for n, value in expected.items():
        assert torch.allclose(fisher[n], value, atol=1e-6), n
    with pytest.raises(ValidationError, match="at least one sample"):
        diagonal_fisher(net, X[:0])


def test_ewc_penalty_and_quotas_maths():
    params = {"a": torch.tensor([1.0, 2.0], requires_grad=True), "b": torch.tensor([3.0])}
    anchor = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([1.0])}
    fisher = {"a": torch.tensor([1.0, 0.5]), "b": torch.tensor([2.0])}
    penalty = ewc_penalty(params, anchor, fisher)
    assert float(penalty.detach()) == pytest.approx(1.0 + 2.0 + 8.0)
    penalty.backward()
    assert torch.allclose(params["a"].grad, torch.tensor([2.0, 2.0]))  # 2 F (theta - theta*)
    with pytest.raises(ValidationError, match="names must match"):
        ewc_penalty(params, anchor, {"c": torch.ones(1)})
    assert balanced_quotas(10, 3) == [4, 3, 3] and balanced_quotas(2, 4) == [1, 1, 0, 0]
    with pytest.raises(ValidationError):
        balanced_quotas(10, 0)


def test_kd_term_hook_adds_the_weighted_distillation_loss():
    teacher = torch.randn(6, 3)
    hook = KDTermHook(teacher.numpy(), weight=2.5, temperature=2.0)
    hook.setup(nn.Linear(1, 1), torch.device("cpu"))
    student = torch.randn(2, 3)
    batch = Batch(x=torch.zeros(2, 1), y=torch.zeros(2, dtype=torch.long), index=torch.tensor([4, 1]))
    expected = 2.5 * kd_loss(student, teacher[[4, 1]], 2.0)
    assert torch.allclose(hook.extra_loss(batch, student, nn.Linear(1, 1)), expected)


def test_ewc_accumulates_online_fisher_through_remember(v0, experts, suite):
    strategy = EWC(gamma=0.5)
    general = suite[suite.meta["general_domain"]]
    new, _ = absorb(v0, {"noisy": experts["noisy"]}, suite, strategy, epochs=1)
    first = diagonal_fisher(v0.module_, general.X_train)
    step = diagonal_fisher(new.module_, suite["noisy"].X_field)
    assert set(strategy.fisher_) == set(first)
    for n, value in strategy.fisher_.items():
        assert torch.allclose(value, 0.5 * first[n] + step[n], rtol=1e-4, atol=1e-9), n


def test_replay_memory_is_fixed_size_balanced_and_seeded(v0, experts, suite):
    strategy = Replay(memory_size=90, seed=3)
    model, first = absorb(v0, {"noisy": experts["noisy"]}, suite, strategy, epochs=1, keep_weaker_experts=True)
    assert {k: v for k, v in first.info.items() if k != "replaced_experts"} == {
        "field_samples": {"noisy": len(suite["noisy"].X_field)}, "replayed": 90}
    after_first = {k: x.copy() for k, (x, _) in strategy.memory_.items()}
    _, second = absorb(model, {"sheared": experts["sheared"]}, suite, strategy, epochs=1, keep_weaker_experts=True)
    assert second.info["replayed"] == 90  # 45 general + 45 noisy
    assert list(strategy.memory_) == ["default", "noisy", "sheared"]
    assert [len(x) for x, _ in strategy.memory_.values()] == balanced_quotas(90, 3)
    assert np.array_equal(strategy.memory_["noisy"][0], after_first["noisy"][:30])  # shrinking keeps a prefix
    general = suite["default"].X_train.reshape(len(suite["default"].X_train), -1)
    X_mem, t_mem = strategy.memory_["default"]
    assert all((general == row).all(axis=1).any() for row in X_mem)  # real general samples...
    assert np.allclose(t_mem.sum(axis=1), 1.0) and set(np.unique(t_mem)) == {0.0, 1.0}  # ...with one-hot targets
    X_noisy, t_noisy = strategy.memory_["noisy"]
    expected = torch.softmax(torch.as_tensor(experts["noisy"].predict_logits(X_noisy)), dim=1).numpy()
    assert np.allclose(t_noisy, expected, atol=1e-5)  # the expert's probabilities

    again, other = Replay(memory_size=90, seed=3), Replay(memory_size=90, seed=4)
    for s in (again, other):
        absorb(v0, {"noisy": experts["noisy"]}, suite, s, epochs=1, keep_weaker_experts=True)
    assert all(np.array_equal(again.memory_[k][0], x) for k, x in after_first.items())
    assert not np.array_equal(other.memory_["default"][0], after_first["default"])


@pytest.mark.parametrize("name", ["sequential_kd", "ewc", "lwf"])
def test_a_step_trains_on_the_current_field_data_only(name, v0, experts, suite):
    data = STRATEGIES.get(name)().prepare(context(v0, {"noisy": experts["noisy"]}, suite))
    X_field = suite["noisy"].X_field
    assert np.array_equal(data.X, X_field.reshape(len(X_field), -1)) and not data.labelled.any()
    expected = torch.softmax(torch.as_tensor(experts["noisy"].predict_logits(X_field)), dim=1).numpy()
    assert np.allclose(data.soft_targets, expected, atol=1e-5)


def test_a_step_must_show_every_class(v0, suite):
    class Stubborn:
        """An "expert" that always answers class 0."""

        classes_ = v0.classes_

        def predict_proba(self, X):
            proba = np.zeros((len(X), len(self.classes_)))
            proba[:, 0] = 1.0
            return proba

        def predict(self, X):
            return np.full(len(X), self.classes_[0])

    with pytest.raises(LabelMismatchError, match="never favour"):
        absorb(v0, {"noisy": Stubborn()}, suite, "lwf", epochs=1, keep_weaker_experts=True)
    absorb(v0, {"noisy": Stubborn()}, suite, "replay", epochs=1, keep_weaker_experts=True)  # the memory holds every class


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("ewc", {"ewc_lambda": -1.0}, "ewc_lambda"),
        ("ewc", {"gamma": 1.5}, "gamma"),
        ("lwf", {"lwf_weight": float("nan")}, "lwf_weight"),
        ("lwf", {"temperature": 0.0}, "temperature"),
        ("replay", {"memory_size": 0}, "memory_size"),
        ("replay", {"memory_size": 2.5}, "memory_size"),
        ("replay", {"seed": "a"}, "seed"),
        ("sequential_kd", {"freeze_norm_stats": "yes"}, "freeze_norm_stats"),
        ("ewc", {"method": "ewc"}, "no parameter"),
    ],
)
def test_bad_settings_raise(name, kwargs, match, v0, experts, suite):
    with pytest.raises(ValidationError, match=match):
        absorb(v0, {"noisy": experts["noisy"]}, suite, name, epochs=1, params=kwargs)


def test_ewc_needs_one_architecture_along_the_sequence(v0, experts, suite):
    strategy = EWC()
    absorb(v0, {"noisy": experts["noisy"]}, suite, strategy, epochs=1)
    general = suite["default"]
    other = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=1, random_state=0).fit(
        general.X_train, general.y_train
    )
    with pytest.raises(ValidationError, match="same architecture"):
        absorb(other, {"sheared": experts["sheared"]}, suite, strategy, epochs=1)
