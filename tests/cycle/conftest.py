"""Fixtures of the cycle tests."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.feedback import STRATEGIES, FeedbackStrategy, TrainingData


class _Sabotage(FeedbackStrategy):
    """Trains the large model on shuffled labels: a feedback step that destroys it (the gate must refuse it)."""

    def prepare(self, ctx):
        general = ctx.suite[ctx.suite.meta["general_domain"]]
        y = np.random.default_rng(0).permutation(general.y_train)
        return TrainingData(general.X_train.reshape(len(y), -1), y)


@pytest.fixture
def sabotage():
    """The registry name of a harmful feedback strategy, registered for one test."""
    STRATEGIES.add("_test_sabotage", _Sabotage)
    yield "_test_sabotage"
    STRATEGIES.remove("_test_sabotage")
