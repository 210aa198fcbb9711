"""Transfer initialisation transplants matching layers of the experts, then distils on field data."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from crossfeed.exceptions import UnknownNameError, ValidationError
from crossfeed.feedback import absorb
from crossfeed.feedback.transfer_init import TransferInit, transplant, transplant_plan
from tests.feedback.conftest import context

from .conftest import ABSORB

FEATURES = ["features.0", "features.1", "features.4", "features.5", "features.8", "features.9"]


def test_transplant_copies_the_experts_layers(v0, same_arch_experts, suite):
    one = {"noisy": same_arch_experts["noisy"]}
    module = TransferInit(layers=["features"]).initial_module(context(v0, one, suite))
    got, expert, large = module.state_dict(), one["noisy"].module_.state_dict(), v0.module_.state_dict()
    for key in got:
        source = expert if key.startswith("features.") else large  # the head stays the large model's
        assert torch.equal(got[key], source[key]), key
    assert any(not torch.equal(expert[k], large[k]) for k in got if k.startswith("features."))

    everything = TransferInit().initial_module(context(v0, same_arch_experts, suite)).state_dict()
    for key, value in everything.items():
        if value.is_floating_point():  # every layer: the experts' average
            mean = torch.stack([e.module_.state_dict()[key] for e in same_arch_experts.values()]).mean(0)
            assert torch.allclose(value, mean, atol=1e-6), key


def test_transfer_init_absorbs_the_experts(v0, same_arch_experts, suite, control):
    _, report = absorb(v0, same_arch_experts, suite, "transfer_init", **ABSORB)
    # measured (seed 0), mean over the shifted domains: v0 0.466, control 0.477, v1 0.687,
    # experts (fine-tuned copies of v0) 0.811; forgetting -0.010. The transplant itself adds a little:
    # multi_teacher_kd with the same experts and training reaches 0.657 (seeds 1, 2: 0.674 / 0.671
    # against transfer_init 0.694 / 0.699); layers=["features"] 0.686, layers=["classifier"] 0.661.
    assert report.mean("acc_v1") > report.mean("acc_v0") + 0.15
    assert report.mean("acc_v1") > control.mean("acc_v1") + 0.15
    assert report.forgetting < 0.03
    assert list(report.info["transplanted"]) == FEATURES + ["classifier.0", "classifier.3"]
    assert all(donors == list(same_arch_experts) for donors in report.info["transplanted"].values())


def test_other_architectures_transplant_nothing_and_warn(v0, experts, suite, caplog):
    # cnn1d tiny vs small: the head's bias and BatchNorm's counter match in shape, but no whole layer does
    assert transplant_plan(v0.module_, experts) == {}
    with caplog.at_level(logging.WARNING, logger="crossfeed.feedback.transfer_init"):
        _, report = absorb(v0, experts, suite, "transfer_init", epochs=1, keep_weaker_experts=True)
    assert report.info["transplanted"] == {}
    assert "nothing is transplanted" in caplog.text
    assert TransferInit().initial_module(context(v0, experts, suite)) is None  # training starts from v0's weights


def test_mixed_experts_give_what_they_can(v0, experts, same_arch_experts):
    mixed = {"noisy": same_arch_experts["noisy"], "sheared": experts["sheared"], "scaled": same_arch_experts["scaled"]}
    plan = transplant_plan(v0.module_, mixed, layers="classifier")
    assert plan == {"classifier.0": ["noisy", "scaled"], "classifier.3": ["noisy", "scaled"]}


def test_plan_and_transplant_on_hand_made_modules():
    large = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    b = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    plan = transplant_plan(large, {"a": a, "b": b, "not a network": object()})
    assert plan == {"0": ["a", "b"], "2": ["b"]}
    out = transplant(large, {"a": a, "b": b}, plan)
    assert torch.allclose(out[0].weight, (a[0].weight + b[0].weight) / 2)
    assert torch.equal(out[2].bias, b[2].bias)
    assert out is not large and not torch.equal(large[2].bias, b[2].bias)  # large untouched


def test_bad_settings_raise(v0, same_arch_experts, suite):
    with pytest.raises(UnknownNameError, match="did you mean 'features'"):
        absorb(v0, same_arch_experts, suite, "transfer_init", params={"layers": ["feature"]}, epochs=1)
    with pytest.raises(ValidationError, match="layers"):
        absorb(v0, same_arch_experts, suite, TransferInit(layers=[0]), epochs=1)
    with pytest.raises(ValidationError, match="layers"):
        absorb(v0, same_arch_experts, suite, TransferInit(layers=[]), epochs=1)
    with pytest.raises(ValidationError, match="temperature"):
        absorb(v0, same_arch_experts, suite, TransferInit(temperature=-1.0), epochs=1)
