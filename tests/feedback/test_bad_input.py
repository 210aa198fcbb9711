"""absorb refuses bad input with messages that say what to fix."""

from __future__ import annotations

import dataclasses

import pytest

from crossfeed.data import DomainSuite
from crossfeed.exceptions import (
    EmptyDataError,
    LabelMismatchError,
    NotFittedError,
    UnknownNameError,
    ValidationError,
)
from crossfeed.feedback import FeedbackStrategy, absorb
from crossfeed.models import TorchClassifier


def test_expert_with_other_label_set(v0, experts, suite):
    d = suite["noisy"]
    keep = d.y_train < 9
    odd = TorchClassifier("linear", epochs=1, random_state=0).fit(d.X_train[keep], d.y_train[keep])
    with pytest.raises(LabelMismatchError, match="'noisy'"):
        absorb(v0, {**experts, "noisy": odd}, suite, "multi_teacher_kd", epochs=1)


def test_domain_without_field_data(v0, experts, suite):
    domains = [dataclasses.replace(d, X_field=None, y_field=None) if d.name == "sheared" else d for d in suite]
    no_field = DomainSuite.from_domains(suite.name, domains, meta=suite.meta)
    for name in ("multi_teacher_kd", "data_feedback"):
        with pytest.raises(EmptyDataError, match="'sheared'"):
            absorb(v0, experts, no_field, name, epochs=1)
    absorb(v0, experts, no_field, FeedbackStrategy(), epochs=1)  # the control needs no field data


def test_unknown_strategy_suggests_the_closest(v0, experts, suite):
    with pytest.raises(UnknownNameError, match="did you mean 'multi_teacher_kd'"):
        absorb(v0, experts, suite, "multi_teacher", epochs=1)


def test_other_bad_input(v0, experts, suite):
    with pytest.raises(UnknownNameError, match="no domain"):
        absorb(v0, {"nowhere": experts["noisy"]}, suite, "data_feedback", epochs=1)
    with pytest.raises(ValidationError, match="non-empty"):
        absorb(v0, {}, suite, "data_feedback", epochs=1)
    with pytest.raises(ValidationError, match="only used with a strategy name"):
        absorb(v0, experts, suite, FeedbackStrategy(), epochs=1, params={"threshold": 0.5})
    with pytest.raises(ValidationError, match="has no parameter 'nonsense'"):
        absorb(v0, experts, suite, "data_feedback", epochs=1, params={"nonsense": 1})
    with pytest.raises(ValidationError, match="did you mean 'threshold'"):
        absorb(v0, experts, suite, "data_feedback", epochs=1, params={"treshold": 0.5})
    with pytest.raises(NotFittedError):
        absorb(TorchClassifier("linear"), experts, suite, "data_feedback", epochs=1)
