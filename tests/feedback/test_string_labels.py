"""Unlabelled rows are marked by a mask, not a label value: string labels work in every strategy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crossfeed.data import DomainSuite
from crossfeed.feedback import STRATEGIES, TrainingData, absorb
from crossfeed.feedback._base import with_unlabelled
from crossfeed.models import TorchClassifier

NAMES = np.array([f"digit-{i}" for i in range(10)])


@pytest.fixture(scope="module")
def named(small_suite):
    """The small mnist1d suite with string labels, a small v0 and a tiny expert for one domain."""
    domains = [dataclasses.replace(d, y_train=NAMES[d.y_train], y_val=NAMES[d.y_val], y_test=NAMES[d.y_test],
                                   y_field=NAMES[d.y_field]) for d in small_suite]
    suite = DomainSuite.from_domains("named", domains, meta=small_suite.meta)
    general = suite["default"]
    v0 = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=3, random_state=0).fit(general.X_train, general.y_train)
    noisy = suite["noisy"]
    expert = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=3, random_state=1).fit(noisy.X_train, noisy.y_train)
    return suite, v0, {"noisy": expert}


@pytest.mark.parametrize("name", ["multi_teacher_kd", "ensemble_distill", "multitask", "replay", "data_feedback"])
def test_string_labels(name, named):
    suite, v0, experts = named
    new, report = absorb(v0, experts, suite, name, epochs=1, keep_weaker_experts=True)
    assert new.classes_.tolist() == NAMES.tolist() and set(new.predict(suite["noisy"].X_test)) <= set(NAMES)
    assert name in STRATEGIES.names() and report.strategy == name


def test_with_unlabelled_marks_rows_by_mask_even_for_label_minus_one():
    y, mask = with_unlabelled(np.array([-1, 3]), 2, -1)  # -1 is a real class here
    assert y.tolist() == [-1, 3, -1, -1] and mask.tolist() == [True, True, False, False]
    data = TrainingData(np.zeros((4, 2)), y, labelled_mask=mask)
    assert data.labelled.tolist() == [True, True, False, False]
