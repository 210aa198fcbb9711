"""Every registered feedback strategy honours the contract of :func:`absorb`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossfeed.feedback import (
    STRATEGIES,
    DomainFeedback,
    FeedbackReport,
    FeedbackStrategy,
    absorb,
)
from crossfeed.models import TorchClassifier


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_conforms(name, v0, experts, suite, request):
    if getattr(STRATEGIES.get(name), "needs_same_architecture", False):  # weight merging: copies of v0
        experts = request.getfixturevalue("same_arch_experts")
    before = {k: v.clone() for k, v in v0.module_.state_dict().items()}
    params = v0.get_params()

    new, report = absorb(v0, experts, suite, name, epochs=2, lr=1e-3, random_state=0)

    assert isinstance(new, TorchClassifier) and new is not v0 and new.module_ is not v0.module_
    assert np.array_equal(new.classes_, v0.classes_)
    assert new.get_params() == params  # parameters still describe how to fit it from scratch
    for key, value in v0.module_.state_dict().items():  # v0 untouched
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, new.module_.state_dict()[k]) for k, v in before.items())
    assert isinstance(report, FeedbackReport) and report.strategy == name
    assert set(report.domains) == set(suite.names) and report.general_domain == "default"
    for domain, row in report.domains.items():
        assert isinstance(row, DomainFeedback)
        assert 0.0 <= row.acc_v0 <= 1.0 and 0.0 <= row.acc_v1 <= 1.0
        assert (row.acc_expert is None) == (domain not in experts)
        if row.acc_expert is not None and row.acc_expert > row.acc_v0:
            expected = (row.acc_v1 - row.acc_v0) / (row.acc_expert - row.acc_v0)
            assert row.absorption == pytest.approx(expected)
        else:
            assert row.absorption is None
    general = report.domains["default"]
    assert report.forgetting == pytest.approx(general.acc_v0 - general.acc_v1)
    assert report.wall_seconds > 0
    assert isinstance(report.info, dict)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_is_a_small_class_with_default_hooks(name):
    strategy = STRATEGIES.get(name)()
    assert isinstance(strategy, FeedbackStrategy) and strategy.name == name
    assert isinstance(repr(strategy), str)


def test_absorb_is_reproducible(v0, experts, suite):
    a, _ = absorb(v0, experts, suite, "data_feedback", epochs=1, random_state=3)
    b, _ = absorb(v0, experts, suite, "data_feedback", epochs=1, random_state=3)
    X = suite["noisy"].X_test
    assert np.allclose(a.predict_logits(X), b.predict_logits(X), atol=1e-5)
