"""Multi-teacher KD moves the large model towards the experts, beyond continued training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossfeed.exceptions import ValidationError
from crossfeed.feedback import MultiTeacherKD, absorb, confidence_weighted_logits

from .conftest import ABSORB


@pytest.mark.parametrize("domain_known, margin", [(True, 0.10), (False, 0.05)])
def test_multi_teacher_kd_absorbs_the_experts(domain_known, margin, v0, experts, suite, control):
    _, report = absorb(v0, experts, suite, "multi_teacher_kd", params={"domain_known": domain_known}, **ABSORB)
    v0_acc, v1_acc = report.mean("acc_v0"), report.mean("acc_v1")
    # measured (seed 0): v0 0.466, control 0.477, v1 0.647 (known) / 0.589 (unknown), experts 0.767
    assert v1_acc > v0_acc + margin
    assert v1_acc > control.mean("acc_v1") + margin
    assert report.forgetting < 0.03
    assert report.info["field_samples"] == {name: len(suite[name].X_field) for name in experts}
    assert all(report.domains[n].absorption is not None and report.domains[n].absorption > 0 for n in experts)


def test_confidence_weighted_logits_maths():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 4)).astype(np.float32)
    out = confidence_weighted_logits(z, 2.0)
    assert out.shape == (5, 4)
    p = torch.softmax(torch.as_tensor(z), -1).numpy()
    w = p.max(-1) / p.max(-1).sum(0)
    expected = (w[..., None] * torch.softmax(torch.as_tensor(z) / 2.0, -1).numpy()).sum(0)
    assert np.allclose(torch.softmax(torch.as_tensor(out) / 2.0, -1).numpy(), expected, atol=1e-5)
    # one teacher: its own softened distribution
    single = confidence_weighted_logits(z[:1], 3.0)
    assert np.allclose(torch.softmax(torch.as_tensor(single) / 3.0, -1), torch.softmax(torch.as_tensor(z[0]) / 3.0, -1), atol=1e-5)
    with pytest.raises(ValidationError):
        confidence_weighted_logits(z[0], 2.0)
    with pytest.raises(ValidationError):
        confidence_weighted_logits(z, 0.0)


def test_bad_settings_raise(v0, experts, suite):
    with pytest.raises(ValidationError, match="temperature"):
        absorb(v0, experts, suite, MultiTeacherKD(temperature=-1.0), epochs=1)
    with pytest.raises(ValidationError, match="alpha"):
        absorb(v0, experts, suite, "multi_teacher_kd", params={"alpha": 2.0}, epochs=1)
