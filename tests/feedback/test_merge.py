"""Weight merging of experts fine-tuned from v0: without training, and fine-tuned afterwards."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from crossfeed.exceptions import ValidationError
from crossfeed.feedback import absorb
from crossfeed.feedback.merge import FOREIGN_DISTANCE, Merge, recompute_batchnorm
from crossfeed.models import TorchClassifier
from tests.feedback.conftest import context

from .conftest import ABSORB

# measured (seed 0), mean over the shifted domains, with same_arch_experts (fine-tuned copies of v0,
# 0.811 on their own domains); v0 0.466, control (continued training) 0.477:
#   merged, no training (epochs=0):     average 0.576 (forgetting +0.014), task_arithmetic (lam 0.4) 0.579
#                                        (+0.102), ties (lam 1, density 0.2) 0.571 (+0.100);
#                                        average with averaged BatchNorm statistics 0.612 (+0.076);
#                                        BatchNorm statistics recomputed alone (lam 0) 0.503 (-0.014)
#   multi_teacher_kd (20 epochs, same experts): 0.657 (forgetting -0.002): merging alone loses to
#                                        distillation by 8 points and forgets more;
#   merged then fine-tuned (20 epochs): average 0.692, ties 0.699, task_arithmetic 0.701 (forgetting
#                                        -0.020 to -0.030); the same fine-tuning from v0 (lam 0) 0.662.


@pytest.mark.parametrize("method", ["average", "task_arithmetic", "ties"])
def test_merging_alone_absorbs_the_experts(method, v0, same_arch_experts, suite, control):
    _, report = absorb(v0, same_arch_experts, suite, "merge", params={"method": method}, epochs=0)
    _, bn_only = absorb(v0, same_arch_experts, suite, "merge", params={"method": method, "lam": 0.0}, epochs=0)
    assert report.mean("acc_v1") > control.mean("acc_v1") + 0.05
    assert report.mean("acc_v1") > bn_only.mean("acc_v1") + 0.05  # the weights do it, not the statistics
    assert report.info["merge"]["method"] == method and report.info["merge"]["experts"] == list(same_arch_experts)


def test_fine_tuning_the_merge_recovers_more(v0, same_arch_experts, suite):
    _, merged = absorb(v0, same_arch_experts, suite, "merge", params={"method": "average"}, epochs=0)
    _, tuned = absorb(v0, same_arch_experts, suite, "merge", params={"method": "average"}, **ABSORB)
    assert tuned.mean("acc_v1") > merged.mean("acc_v1") + 0.05
    assert tuned.forgetting < 0.03


def test_merged_weights_are_the_experts_average(v0, same_arch_experts, suite):
    states = [e.module_.state_dict() for e in same_arch_experts.values()]
    merged = Merge(method="average", bn_stats="average").initial_module(context(v0, same_arch_experts, suite)).state_dict()
    for key, value in merged.items():
        if value.is_floating_point():
            assert torch.allclose(value, torch.stack([s[key] for s in states]).mean(0), atol=1e-6), key
    lam0 = Merge(method="ties", lam=0.0, bn_stats="average").initial_module(context(v0, same_arch_experts, suite))
    for name, p in lam0.named_parameters():
        assert torch.equal(p, v0.module_.state_dict()[name]), name


def test_batchnorm_statistics_are_recomputed_on_unlabelled_data(v0, same_arch_experts, suite):
    module = Merge(method="average").initial_module(context(v0, same_arch_experts, suite))
    unlabelled = np.concatenate([suite["default"].X_train] + [suite[n].X_field for n in same_arch_experts])
    batches = torch.split(torch.as_tensor(unlabelled, dtype=torch.float32), 256)
    with torch.no_grad():  # the first BatchNorm's input, batch by batch
        first = [module.features[0](x.reshape(len(x), 1, -1)) for x in batches]
    # the statistics are the average over batches of each batch's statistics
    mean = torch.stack([h.mean(dim=(0, 2)) for h in first]).mean(0)
    var = torch.stack([h.var(dim=(0, 2)) for h in first]).mean(0)
    assert torch.allclose(module.features[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(module.features[1].running_var, var, atol=1e-5)
    assert not torch.allclose(module.features[1].running_mean, v0.module_.features[1].running_mean, atol=1e-2)
    averaged = Merge(method="average", bn_stats="average").initial_module(context(v0, same_arch_experts, suite))
    for name, p in module.named_parameters():  # only the statistics differ
        assert torch.equal(p, averaged.state_dict()[name]), name


def test_recompute_batchnorm_leaves_networks_without_it_alone():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    recompute_batchnorm(net, np.ones((4, 3), dtype=np.float32))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_experts_of_another_architecture_are_refused(v0, experts, same_arch_experts, suite):
    with pytest.raises(ValidationError, match="architecture") as caught:
        absorb(v0, experts, suite, "merge", epochs=0)  # cnn1d tiny experts, v0 is cnn1d small
    assert "'noisy'" in str(caught.value) and "fine-tuned copies of the large model" in str(caught.value)
    d = suite["noisy"]
    sklearn_expert = LogisticRegression(max_iter=200).fit(d.X_train, d.y_train)
    with pytest.raises(ValidationError, match="TorchClassifier"):
        absorb(v0, {**same_arch_experts, "noisy": sklearn_expert}, suite, "merge", epochs=0)


def test_experts_not_fine_tuned_from_the_large_model_are_flagged(v0, same_arch_experts, suite, caplog):
    d = suite["noisy"]
    foreign = TorchClassifier("cnn1d", module_kwargs={"size": "small"}, epochs=1, random_state=7).fit(
        d.X_train[:300], d.y_train[:300])
    with caplog.at_level(logging.WARNING, logger="crossfeed.feedback.merge"):
        _, report = absorb(v0, {**same_arch_experts, "noisy": foreign}, suite, "merge", epochs=0,
                           keep_weaker_experts=True)
    distance = report.info["merge"]["relative_distance"]
    # measured: 0.12-0.15 for the fine-tuned copies, 1.06-1.13 for cnn1d small trained from scratch
    assert distance["noisy"] > FOREIGN_DISTANCE > max(distance[n] for n in same_arch_experts if n != "noisy")
    assert "not fine-tuned from it" in caplog.text and "'noisy'" in caplog.text


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "soup"}, "method"),
    ({"lam": float("inf")}, "lam"),
    ({"lam": "auto"}, "lam"),
    ({"density": 0.0}, "density"),
    ({"density": 2}, "density"),
    ({"bn_stats": "keep"}, "bn_stats"),
])
def test_bad_settings_raise(kwargs, match, v0, same_arch_experts, suite):
    with pytest.raises(ValidationError, match=match):
        absorb(v0, same_arch_experts, suite, Merge(**kwargs), epochs=0)
