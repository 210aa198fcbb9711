"""Meta-learning over domains: the functional maths of ``_meta``, the ``maml`` strategy, and a
regression test that fails if meta-training were a no-op."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.data import DomainSuite
from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.feedback import RoundState, TrainSettings, absorb
from crossfeed.feedback._meta import (
    adapt_k_shot,
    fomaml_gradient,
    inner_adapt,
    maml_gradient,
    support_query,
    task_loss,
)
from crossfeed.feedback.maml import MAML, MAMLHook
from crossfeed.models import TorchClassifier, sample_shots
from crossfeed.training import TrainConfig, train
from tests.feedback.conftest import context


def tiny_net(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)


def tiny_task(n: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def params_of(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters()}


# -- the pure functions --------------------------------------------------------------------------------
def test_inner_adapt_with_zero_steps_returns_the_params():
    net, (x, y) = tiny_net(), tiny_task(6)
    start = params_of(net)
    out = inner_adapt(net, start, x, y, steps=0, lr=0.1)
    assert set(out) == set(start) and all(torch.equal(out[n], start[n]) for n in start)


def test_one_step_is_a_manual_sgd_step_and_leaves_the_module_alone():
    net, (x, y) = tiny_net(), tiny_task(6)
    before = params_of(net)
    out = inner_adapt(net, dict(net.named_parameters()), x, y, steps=1, lr=0.3)
    manual = copy.deepcopy(net)
    F.cross_entropy(manual(x), y).backward()
    for name, p in manual.named_parameters():
        assert torch.allclose(out[name], p.detach() - 0.3 * p.grad, atol=1e-6), name
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())


def test_fomaml_gradient_is_the_query_gradient_at_the_adapted_point():
    net, support, query = tiny_net(), tiny_task(6, seed=1), tiny_task(9, seed=2)
    adapted = inner_adapt(net, params_of(net), *support, steps=3, lr=0.2)
    at_adapted = copy.deepcopy(net)
    at_adapted.load_state_dict(adapted)
    F.cross_entropy(at_adapted(query[0]), query[1]).backward()
    grads, loss = fomaml_gradient(net, params_of(net), support, query, steps=3, lr=0.2)
    for name, p in at_adapted.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-6), name
    assert loss.item() == pytest.approx(task_loss(net, adapted, *query).item(), abs=1e-6)


def _gap(lr: float, steps: int = 2) -> float:
    net, support, query = tiny_net(torch.float64), tiny_task(6, torch.float64, 1), tiny_task(9, torch.float64, 2)
    first, _ = fomaml_gradient(net, params_of(net), support, query, steps, lr)
    second, _ = maml_gradient(net, params_of(net), support, query, steps, lr)
    return float(sum(((first[n] - second[n]) ** 2).sum() for n in first) ** 0.5)


def test_first_and_second_order_agree_to_first_order_in_the_inner_lr():
    assert _gap(0.1, steps=0) == 0.0  # no inner step: both are the query gradient
    # (I - lr H) g: the gap grows linearly in lr for small lr, and is real for a large one
    assert _gap(2e-3) / _gap(1e-3) == pytest.approx(2.0, rel=0.05)
    assert _gap(1e-3) < 1e-3 < _gap(0.5)


def test_second_order_gradient_matches_finite_differences():
    net, support, query = tiny_net(torch.float64), tiny_task(6, torch.float64, 1), tiny_task(9, torch.float64, 2)
    theta, steps, lr = params_of(net), 2, 0.5
    direction = {n: torch.randn(t.shape, generator=torch.Generator().manual_seed(3), dtype=t.dtype)
                 for n, t in theta.items()}

    def meta_loss(eps: float) -> float:
        moved = {n: t + eps * direction[n] for n, t in theta.items()}
        return task_loss(net, inner_adapt(net, moved, *support, steps, lr), *query).item()

    numeric = (meta_loss(1e-6) - meta_loss(-1e-6)) / 2e-6
    second, _ = maml_gradient(net, theta, support, query, steps, lr)
    first, _ = fomaml_gradient(net, theta, support, query, steps, lr)
    along = {name: sum(float((g[n] * direction[n]).sum()) for n in g) for name, g in (("2nd", second), ("1st", first))}
    assert along["2nd"] == pytest.approx(numeric, rel=1e-5)
    assert abs(along["1st"] - numeric) > 1e-3  # the first-order approximation drops a real term here


def test_inner_adapt_leaves_batchnorm_statistics_unless_asked():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).train()
    x, y = tiny_task(8)
    before = net[1].running_mean.clone()
    inner_adapt(net, params_of(net), x, y, steps=2, lr=0.1)
    assert torch.equal(net[1].running_mean, before)  # meta-training: a task's few rows do not leak
    inner_adapt(net, params_of(net), x, y, steps=2, lr=0.1, update_buffers=True)
    assert not torch.equal(net[1].running_mean, before)  # fine-tuning: as a forward pass does


@pytest.mark.parametrize("first_order", [True, False])
def test_one_task_through_the_training_loop_is_one_meta_sgd_step(first_order):
    net, support, query = tiny_net(), tiny_task(6, seed=1), tiny_task(9, seed=2)
    gradient = fomaml_gradient if first_order else maml_gradient
    grads, _ = gradient(net, params_of(net), support, query, steps=2, lr=0.2)
    X, y = torch.cat([support[0], query[0]]).numpy(), torch.cat([support[1], query[1]]).numpy()
    stepped = copy.deepcopy(net)
    train(stepped, X, y, config=TrainConfig(epochs=1, batch_size=len(X), lr=0.05, optimizer="sgd", seed=0),
          hooks=[MAMLHook(n_support=6, inner_steps=2, inner_lr=0.2, first_order=first_order)])
    for name, p in stepped.named_parameters():
        assert torch.allclose(p.detach(), dict(net.named_parameters())[name].detach() - 0.05 * grads[name],
                              atol=1e-6), name


def test_support_query_rows_are_disjoint_and_class_balanced():
    y = np.repeat([3, 7, 9], 20)
    support, query = support_query(y, 2, 5, np.random.default_rng(0))
    assert not set(support) & set(query)
    assert np.bincount(y[support])[[3, 7, 9]].tolist() == [2, 2, 2]
    assert np.bincount(y[query])[[3, 7, 9]].tolist() == [5, 5, 5]


def test_each_round_samples_meta_batch_domains_with_their_support_and_query_rows(weak, suite):
    ctx = context(weak, {d: weak for d in ("noisy", "sheared", "scaled")}, suite, epochs=1, lr=0.05)
    strategy = MAML(meta_batch=2, support_shots=2, query_shots=3)
    tasks = strategy.local_tasks(1, RoundState(ctx, weak.module_))
    assert len({t.client for t in tasks}) == len(tasks) == 2
    for task in tasks:
        (hook,) = task.hooks
        assert hook.n_support == 20 and len(task.y) == 50  # 2 + 3 rows of each of the 10 classes
        assert np.bincount(task.y[:20]).tolist() == [2] * 10 and np.bincount(task.y[20:]).tolist() == [3] * 10
        assert task.settings.batch_size == 50 and task.settings.optimizer == "sgd"  # one batch: one meta-step
    again = strategy.local_tasks(1, RoundState(ctx, weak.module_))
    assert [np.array_equal(a.X, b.X) for a, b in zip(tasks, again, strict=True)] == [True, True]  # seeded


# -- bad input ----------------------------------------------------------------------------------------
def test_more_shots_than_a_class_holds_is_a_clear_error(suite):
    target = suite["shifted"]
    n_min = int(np.bincount(target.y_train).min())
    with pytest.raises(ValidationError, match=f"choose k <= {n_min}"):
        sample_shots(target.y_train, n_min + 1, np.random.default_rng(0))  # the k-shot benchmark's draw
    with pytest.raises(ValidationError, match=r"support_shots \+ query_shots = 20 rows.*choose support_shots"):
        support_query(np.repeat([0, 1], [30, 12]), 10, 10, np.random.default_rng(0))


def test_maml_rejects_a_task_larger_than_its_domains_and_bad_parameters(weak, suite):
    too_big = MAML(rounds=1, support_shots=500, query_shots=600)
    with pytest.raises(ValidationError, match=r"support_shots \+ query_shots = 1100"):
        absorb(weak, {"noisy": weak}, suite, too_big, TrainSettings(epochs=1), keep_weaker_experts=True)
    with pytest.raises(ValidationError, match="inner_lr"):
        absorb(weak, {"noisy": weak}, suite, "maml", params={"inner_lr": 0.0}, epochs=1)


def test_adapt_k_shot_checks_its_input_and_leaves_the_model_alone(weak, suite):
    target = suite["shifted"]
    shots = sample_shots(target.y_train, 2, np.random.default_rng(0))
    X, y = target.X_train[shots], target.y_train[shots]
    before = {k: v.clone() for k, v in weak.module_.state_dict().items()}
    assert np.array_equal(adapt_k_shot(weak, X, y, steps=0, lr=0.1).predict(target.X_test), weak.predict(target.X_test))
    adapted = adapt_k_shot(weak, X, y, steps=3, lr=0.1)
    assert not np.array_equal(adapted.predict_logits(target.X_test), weak.predict_logits(target.X_test))
    assert all(torch.equal(v, before[k]) for k, v in weak.module_.state_dict().items())
    with pytest.raises(LabelMismatchError, match="not among"):
        adapt_k_shot(weak, X, np.full(len(y), 42), steps=1, lr=0.1)
    with pytest.raises(ValidationError, match="lr must be a finite number > 0"):
        adapt_k_shot(weak, X, y, steps=1, lr=0.0)
    with pytest.raises(ValidationError, match="steps must be an integer >= 0"):
        adapt_k_shot(weak, X, y, steps=-1, lr=0.1)


# -- the technique is not a no-op ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weak(suite) -> TorchClassifier:
    """cnn1d small after one epoch on the general domain: an initialisation with much left to learn."""
    general = suite[suite.general_domain]
    return TorchClassifier("cnn1d", module_kwargs={"size": "small"}, epochs=1, lr=3e-3, random_state=0).fit(
        general.X_train, general.y_train)


def test_maml_init_adapts_to_a_held_out_domain_better_than_the_same_run_without_meta_training(weak, suite):
    """Meta-train over every domain but 'shifted' (30 FOMAML rounds); the control is the same absorb
    with epochs=0 (no meta-step: the initialisation itself). Both adapt to 5 shots per class of
    'shifted' with the same 10 SGD steps; three shot draws. Measured: ~0.51 against ~0.34."""
    sources = [d for d in suite if d.name != "shifted"]
    sub = DomainSuite.from_domains("sources", sources, meta={"general_domain": suite.general_domain})
    experts = {d.name: weak for d in sources if d.name != suite.general_domain}

    def init(epochs: int) -> TorchClassifier:
        return absorb(weak, experts, sub, MAML(rounds=30), TrainSettings(epochs=epochs, lr=0.05),
                      keep_weaker_experts=True)[0]

    meta, control = init(1), init(0)
    target = suite["shifted"]
    accuracies = []
    for draw in range(3):
        shots = sample_shots(target.y_train, 5, np.random.default_rng(draw))
        accuracies.append([adapt_k_shot(m, target.X_train[shots], target.y_train[shots], steps=10, lr=0.05)
                           .score(target.X_test, target.y_test) for m in (meta, control)])
    accuracies = np.array(accuracies)
    assert (accuracies[:, 0] > accuracies[:, 1]).all(), accuracies
    assert accuracies[:, 0].mean() > accuracies[:, 1].mean() + 0.08, accuracies
