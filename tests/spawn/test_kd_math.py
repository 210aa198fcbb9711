"""The maths of distillation as pure functions: exact identities, limits and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crossfeed.exceptions import ValidationError
from crossfeed.spawn import hint_loss, kd_loss, soft_targets


def _logits(n: int = 6, k: int = 5, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    t = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    return s, t


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 4.0, 20.0])
def test_gradient_is_T_times_difference_of_softened_probabilities(T: float) -> None:
    # d/ds [T^2 KL(p_t^T || p_s^T)] = T (softmax(s/T) - softmax(t/T)), divided by N for the mean.
    s, t = _logits()
    s.requires_grad_(True)
    kd_loss(s, t, T).backward()
    expected = T * (torch.softmax(s / T, 1) - torch.softmax(t / T, 1)) / len(s)
    torch.testing.assert_close(s.grad, expected.detach(), rtol=1e-10, atol=1e-12)


def test_high_temperature_limit_is_logit_matching() -> None:
    # Hinton et al. 2015, sec. 2.1: for T >> logits and zero-mean logits the gradient tends to
    # (s - t) / (N K): the T^2 factor keeps it independent of T.
    s, t = _logits(scale=1.0)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    n, k = s.shape
    target = (s - t) / (n * k)
    errors = []
    for T in (10.0, 100.0, 1000.0):
        ss = s.clone().requires_grad_(True)
        kd_loss(ss, t, T).backward()
        errors.append(float((ss.grad - target).abs().max() / target.abs().max()))
    assert errors[-1] < 5e-3
    assert errors[1] / errors[2] == pytest.approx(10, rel=0.2)  # the error shrinks like 1/T
    # without the T^2 factor the gradient would vanish like 1/T^2
    ss = s.clone().requires_grad_(True)
    (kd_loss(ss, t, 1000.0) / 1000.0**2).backward()
    assert float(ss.grad.abs().max()) < 1e-5 * float(target.abs().max())


def test_at_T1_kd_is_soft_cross_entropy_minus_teacher_entropy() -> None:
    s, t = _logits()
    p_t = torch.softmax(t, 1)
    ce = -(p_t * F.log_softmax(s, 1)).sum(1)
    entropy = -(p_t * torch.log(p_t)).sum(1)
    torch.testing.assert_close(kd_loss(s, t, 1.0, reduction="none"), ce - entropy)
    torch.testing.assert_close(kd_loss(s, t, 1.0), (ce - entropy).mean())


def test_matches_torch_kl_div_times_T_squared() -> None:
    s, t = _logits()
    T = 3.0
    ref = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True) * T**2
    torch.testing.assert_close(kd_loss(s, t, T), ref)


def test_zero_when_logits_equal_and_positive_otherwise() -> None:
    s, t = _logits()
    assert float(kd_loss(s, s.clone(), 4.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(kd_loss(s, s + 7.0, 4.0)) == pytest.approx(0.0, abs=1e-12)  # softmax ignores shifts
    assert float(kd_loss(s, t, 4.0)) > 0
    assert kd_loss(s, t, 4.0, reduction="sum") == pytest.approx(float(kd_loss(s, t, 4.0)) * len(s))


def test_teacher_logits_get_no_gradient() -> None:
    s, t = _logits()
    s.requires_grad_(True)
    t.requires_grad_(True)
    kd_loss(s, t, 2.0).backward()
    assert t.grad is None


@pytest.mark.parametrize("T", [0, -1.0, float("nan"), float("inf"), "hot", None])
def test_bad_temperature_raises(T: object) -> None:
    s, t = _logits()
    with pytest.raises(ValidationError, match="temperature"):
        kd_loss(s, t, T)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="temperature"):
        soft_targets(t, T)  # type: ignore[arg-type]


def test_shape_mismatch_and_bad_reduction_raise() -> None:
    s, t = _logits()
    with pytest.raises(ValidationError, match="same shape"):
        kd_loss(s, t[:, :3], 2.0)
    with pytest.raises(ValidationError, match="n_classes"):
        kd_loss(s[0], t[0], 2.0)
    with pytest.raises(ValidationError, match="reduction"):
        kd_loss(s, t, 2.0, reduction="batchmean")


def test_soft_targets_are_softened_probabilities() -> None:
    _, t = _logits()
    p1, p4, p_inf = soft_targets(t, 1.0), soft_targets(t, 4.0), soft_targets(t, 1e9)
    torch.testing.assert_close(p1, torch.softmax(t, 1))
    torch.testing.assert_close(p4.sum(1), torch.ones(len(t), dtype=t.dtype))
    # a higher temperature spreads probability: higher entropy, tends to uniform
    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.log()).sum(1)
    assert bool((entropy(p4) > entropy(p1)).all())
    torch.testing.assert_close(p_inf, torch.full_like(p_inf, 1 / t.shape[1]))


def test_hint_loss_is_mean_squared_error() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 7, generator=g), torch.randn(4, 3, 7, generator=g)
    assert float(hint_loss(a, a.clone())) == 0.0
    torch.testing.assert_close(hint_loss(a, b), F.mse_loss(a, b))
    torch.testing.assert_close(hint_loss(a, b, reduction="none"), ((a - b) ** 2).reshape(4, -1).mean(1))
    with pytest.raises(ValidationError, match="same shape"):
        hint_loss(a, b[:, :2])
    assert math.isclose(float(hint_loss(torch.ones(2, 3), torch.zeros(2, 3), reduction="sum")), 6.0)
