"""Data feedback: the experts' confident pseudo-labels help the large model on their domains."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.exceptions import ValidationError
from crossfeed.feedback import absorb, confident_pseudo_labels

from .conftest import ABSORB


def test_data_feedback_absorbs_the_experts(v0, experts, suite, control):
    _, report = absorb(v0, experts, suite, "data_feedback", params={"threshold": 0.8}, **ABSORB)
    v0_acc, v1_acc = report.mean("acc_v0"), report.mean("acc_v1")
    # measured (seed 0): v0 0.466, control 0.477, v1 0.641, experts 0.767
    assert v1_acc > v0_acc + 0.10
    assert v1_acc > control.mean("acc_v1") + 0.10
    assert report.forgetting < 0.03
    kept, seen = report.info["kept"], report.info["field_samples"]
    assert set(kept) == set(experts) and all(0 < kept[n] <= seen[n] for n in experts)


def test_threshold_zero_keeps_every_field_sample_and_bad_threshold_raises(v0, experts, suite):
    _, loose = absorb(v0, experts, suite, "data_feedback", params={"threshold": 0.0}, epochs=1)
    assert loose.info["kept"] == loose.info["field_samples"]
    with pytest.raises(ValidationError, match="threshold"):
        absorb(v0, experts, suite, "data_feedback", params={"threshold": 1.5}, epochs=1)


def test_confident_pseudo_labels():
    labels, keep = confident_pseudo_labels(np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]), np.array([3, 7]), 0.6)
    assert labels.tolist() == [3, 7, 3] and keep.tolist() == [True, True, False]
