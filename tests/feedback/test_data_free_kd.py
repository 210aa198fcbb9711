"""Data-free multi-teacher KD: inputs inverted from each expert's BatchNorm statistics teach the large model."""

from __future__ import annotations

import copy
import doctest

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from crossfeed.config import config_from_dict, config_to_dict
from crossfeed.exceptions import ValidationError
from crossfeed.feedback import DataFreeKD, absorb, batchnorm_layers, data_free_kd, deep_inversion
from crossfeed.models import TorchClassifier

from .conftest import ABSORB, context, run_tiny_cycle
from .test_multi_teacher_kd import pooled_absorption, scarce


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inverted(v0, experts, suite):
    """The step with and without the statistics term (the class loss alone), same seed and budget."""
    return {bn: absorb(v0, experts, suite, "data_free_kd", params={"bn_weight": bn, "steps": 200}, **ABSORB)[1]
            for bn in (1.0, 0.0)}


# -- the strategy does something ------------------------------------------------------------------
def test_inversion_absorbs_the_experts_beyond_continued_training_and_the_class_loss_alone(inverted, control):
    report, class_only = inverted[1.0], inverted[0.0]
    # measured (seed 0): pooled absorption 0.033 (control), -0.158 (class loss only), 0.227; mean
    # shifted accuracy 0.477, 0.419, 0.535; forgetting -0.012, 0.058, 0.040 (the inverted rows cost
    # some of the general domain; the class loss alone costs more and teaches nothing)
    assert pooled_absorption(report) > pooled_absorption(control) + 0.12
    assert pooled_absorption(report) > pooled_absorption(class_only) + 0.2
    assert report.mean("acc_v1") > control.mean("acc_v1") + 0.03
    assert report.forgetting < 0.06


def test_the_statistics_term_pulls_the_inputs_to_the_domain(inverted):
    info = inverted[1.0].info
    for name, after in info["bn_gap_after"].items():
        assert after < 0.25 * info["bn_gap_before"][name], name  # measured: 5.6 to 38 times smaller
        assert inverted[0.0].info["bn_gap_after"][name] > 2 * after, name
        assert info["expert_agreement"][name] > 0.9  # the expert puts them in their target class
    # 1,000 general rows, 4 shifted domains, share 0.5: 250 rows per domain, multi_teacher_kd's top-up budget
    assert info["synthetic_rows"] == {name: 250 for name in info["bn_gap_after"]}
    assert info["inversion_seconds"] > 0


def test_no_field_row_is_read(v0, experts, suite):
    """The strategy needs no field data: with every domain's field rows gone it prepares the same rows."""
    ctx = context(v0, experts, suite, seed=3)
    params = {"steps": 5}
    data = DataFreeKD(**params).prepare(ctx)
    without = DataFreeKD(**params).prepare(context(v0, experts, scarce(suite, 0), seed=3))
    assert np.array_equal(data.X, without.X) and np.array_equal(data.teacher_logits, without.teacher_logits)
    n_gen = len(suite[suite.general_domain].X_train)
    assert not data.labelled[n_gen:].any() and data.labelled[:n_gen].all()
    fields = np.concatenate([suite[n].X_field.reshape(len(suite[n].X_field), -1) for n in experts])
    assert not (data.X[n_gen:, None, :] == fields[None]).all(axis=2).any()  # no inverted row is a field row
    other = DataFreeKD(**params).prepare(context(v0, experts, suite, seed=4))
    assert not np.array_equal(data.X, other.X)  # the step's seed picks the starts and the targets


def test_deep_inversion_matches_the_running_statistics_and_leaves_the_network_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(200):  # inputs from N(2, 1), the class is the largest of the first three features
        X = torch.randn(256, 6) + 2.0
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(X), X[:, :3].argmax(1)).backward()
        optimizer.step()
    net.train()  # left in training mode: the inversion must not change that
    before = copy.deepcopy(net.state_dict())
    targets = np.resize([0, 1, 2], 60)
    x0 = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32)  # N(0, 1): far from the statistics
    x = deep_inversion(net, targets, x0, steps=300, lr=0.05)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())
    assert len(batchnorm_layers(net)) == 1
    plain = deep_inversion(net, targets, x0, steps=300, lr=0.05, bn_weight=0.0)
    gap = {label: data_free_kd._bn_gap(net, rows) for label, rows in {"start": x0, "bn": x, "plain": plain}.items()}
    assert gap["bn"] < 0.25 * gap["start"] and gap["bn"] < 0.5 * gap["plain"], gap
    net.eval()
    with torch.no_grad():
        assert (net(torch.as_tensor(x)).argmax(1).numpy() == targets).mean() > 0.9
    bounded = deep_inversion(net, targets, x0, steps=20, bounds=(-0.5, 0.5))
    assert bounded.min() >= -0.5 and bounded.max() <= 0.5


def test_noise_starts_have_the_general_datas_spread(v0, experts, suite):
    data = DataFreeKD(init="noise", steps=1, inversion_lr=1e-6).prepare(context(v0, experts, suite))
    n_gen = len(suite[suite.general_domain].X_train)
    general, start = data.X[:n_gen], data.X[n_gen:]
    assert abs(start.std() - general.std()) < 0.2 * general.std()
    assert not (start[:, None, :] == general[None]).all(axis=2).any()


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    ({"synthetic_share": 0.0}, "synthetic_share"),
    ({"init": "zeros"}, "init"),
    ({"steps": 0}, "steps"),
    ({"inversion_lr": 0.0}, "inversion_lr"),
    ({"bn_weight": -1.0}, "bn_weight"),
    ({"temperature": 0.0}, "temperature"),
    ({"alpha": 1.5}, "alpha"),
])
def test_bad_parameters_fail_before_any_training(params, match, v0, experts, suite):
    with pytest.raises(ValidationError, match=match):
        absorb(v0, experts, suite, "data_free_kd", params=params, epochs=1)


def test_an_expert_without_a_network_or_without_batchnorm_is_refused(v0, experts, suite):
    name = next(iter(experts))
    X, y = suite[name].X_train, suite[name].y_train
    sklearn_expert = LogisticRegression(max_iter=200).fit(X.reshape(len(X), -1), y)
    with pytest.raises(ValidationError, match=f"expert of domain {name!r} is a LogisticRegression"):
        absorb(v0, {**experts, name: sklearn_expert}, suite, "data_free_kd", params={"steps": 1}, epochs=1,
               keep_weaker_experts=True)
    mlp = TorchClassifier("mlp", module_kwargs={"hidden": [16]}, epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValidationError, match="no BatchNorm.*bn_weight=0"):
        absorb(v0, {**experts, name: mlp}, suite, "data_free_kd", params={"steps": 1}, epochs=1,
               keep_weaker_experts=True)
    _, report = absorb(v0, {**experts, name: mlp}, suite, "data_free_kd", params={"steps": 1, "bn_weight": 0.0},
                       epochs=1, keep_weaker_experts=True)
    assert report.info["bn_gap_after"][name] is None
    with pytest.raises(ValidationError, match="init must have shape"):
        deep_inversion(mlp.module_, [0, 1], np.zeros((3, 40), np.float32), bn_weight=0.0)


def test_usable_from_yaml_config():
    kwargs = {"init": "noise", "steps": 300, "bn_weight": 2.0}
    cfg = config_from_dict({"name": "d", "feedback": {"strategy": "data_free_kd", "kwargs": kwargs}})
    assert cfg.feedback.strategy == "data_free_kd" and cfg.feedback.kwargs == kwargs
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValidationError, match="steps"):
        config_from_dict({"name": "d", "feedback": {"strategy": "data_free_kd", "kwargs": {"steps": -1}}})


def test_the_cycle_runs_it_from_a_config(tmp_path):
    data = run_tiny_cycle("data_free_kd", {"steps": 10}, tmp_path)
    assert set(data["summary"]["large_accuracy"]["gen-1"]) == {"default", "noisy"}
    assert data["seeds"][0]["generations"][1]["feedback"]["info"]["synthetic_rows"] == {"noisy": 100}


def test_docstring_examples_run():
    assert doctest.testmod(data_free_kd, optionflags=doctest.ELLIPSIS).failed == 0
