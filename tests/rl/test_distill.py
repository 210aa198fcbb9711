"""Policy distillation: the KL loss, and a fresh student that learns the teacher's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.rl import (  # noqa: E402
    DistillSettings,
    EnvVariant,
    Policy,
    distill_policies,
    initial_policy,
    make_env,
    mean_return,
    policy_kl,
)

SETTINGS = DistillSettings(iterations=3, steps_per_variant=1000, n_envs=4)
STUDENT_SEED = 2  # a fresh policy of this seed is poor on CartPole (mean return ~9)


# ----------------------------------------------------------------------------- policy_kl


def test_kl_is_zero_for_equal_logits():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 3.0]])
    assert float(policy_kl(logits, logits)) == pytest.approx(0.0, abs=1e-7)
    # softmax ignores a constant shift
    assert float(policy_kl(logits, logits + 5.0)) == pytest.approx(0.0, abs=1e-6)


def test_kl_matches_a_hand_computed_value():
    teacher = torch.tensor([[math.log(0.75), math.log(0.25)], [0.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [math.log(0.9), math.log(0.1)]])
    row1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    row2 = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert float(policy_kl(teacher, student)) == pytest.approx((row1 + row2) / 2, rel=1e-6)
    # KL(teacher || student), not the reverse
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert float(policy_kl(teacher[:1], student[:1])) == pytest.approx(row1, rel=1e-6)
    assert float(policy_kl(student[:1], teacher[:1])) == pytest.approx(reverse, rel=1e-6)


def test_kl_is_positive_for_different_logits():
    torch.manual_seed(0)
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    assert float(policy_kl(a, b)) > 0.01


def test_temperature_sharpens_the_teacher():
    teacher = torch.tensor([[2.0, 1.0, 0.0]])
    uniform = torch.zeros(1, 3)
    # the teacher at temperature tau is the student teacher / tau: no divergence left
    assert float(policy_kl(teacher, teacher / 0.5, temperature=0.5)) == pytest.approx(0.0, abs=1e-6)
    assert float(policy_kl(teacher, teacher, temperature=0.5)) > 0.01
    # a sharper teacher is further from uniform: KL(p || uniform) = log n - H(p)
    kl = [float(policy_kl(teacher, uniform, temperature=t)) for t in (2.0, 1.0, 0.5, 0.1)]
    assert kl == sorted(kl) and kl[0] < kl[-1]
    assert kl[-1] == pytest.approx(math.log(3), abs=1e-3)  # nearly one-hot


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValidationError, match=f"temperature must be > 0, got {temperature}"):
        policy_kl(torch.zeros(1, 2), torch.zeros(1, 2), temperature)


# ----------------------------------------------------------------------------- distill_policies


@pytest.fixture(scope="module")
def fresh_student(cartpole, ppo_settings):
    return initial_policy(cartpole, ppo_settings, seed=STUDENT_SEED)


@pytest.fixture(scope="module")
def distilled(teacher, fresh_student, cartpole):
    snapshot = fresh_student.clone()
    result = distill_policies({cartpole.name: teacher}, [cartpole], student=fresh_student, settings=SETTINGS, seed=0)
    return result, snapshot


def teacher_states(teacher: Policy, variant: EnvVariant, steps: int = 400) -> np.ndarray:
    """States the teacher visits acting greedily (episodes restarted as they end)."""
    env = make_env(variant)
    obs, _ = env.reset(seed=5)
    seen = []
    for _ in range(steps):
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(teacher.act(obs[None])[0]))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(seen)


def test_distilled_student_gets_the_teachers_return(distilled, teacher, fresh_student, cartpole):
    result, _ = distilled
    without = mean_return(fresh_student, cartpole, episodes=10)
    with_distillation = mean_return(result.policy, cartpole, episodes=10)
    teacher_return = mean_return(teacher, cartpole, episodes=10)
    assert without < 50 < teacher_return
    assert with_distillation > max(150.0, 5 * without), (without, with_distillation, teacher_return)


def test_distilled_student_agrees_with_the_teacher(distilled, teacher, fresh_student, cartpole):
    result, _ = distilled
    states = teacher_states(teacher, cartpole)
    agree = float(np.mean(result.policy.act(states) == teacher.act(states)))
    before = float(np.mean(fresh_student.act(states) == teacher.act(states)))
    assert agree > 0.8
    assert agree > before + 0.2, (before, agree)


def test_the_given_student_is_not_modified(distilled, fresh_student):
    result, snapshot = distilled
    assert result.policy is not fresh_student
    for key, value in snapshot.state_dict().items():
        assert torch.equal(fresh_student.state_dict()[key], value), key


def test_log_and_interactions(distilled):
    result, _ = distilled
    assert [row["iteration"] for row in result.log] == [0, 1, 2]
    assert [row["beta"] for row in result.log] == [1.0, 0.5, 0.25]
    assert [row["states"] for row in result.log] == [1000, 2000, 3000]  # DAgger: the dataset grows
    assert result.interactions == 3000
    assert all(np.isfinite(row["kl"]) and np.isfinite(row["value_mse"]) for row in result.log)


def test_default_student_is_shaped_like_the_first_teacher(cartpole):
    torch.manual_seed(0)
    small_teacher = Policy(4, 2, (8,))
    result = distill_policies({cartpole.name: small_teacher}, [cartpole],
                              settings=DistillSettings(iterations=1, steps_per_variant=64, n_envs=2), seed=0)
    assert result.policy.config() == small_teacher.config()
    assert result.interactions == 64


def test_students_may_differ_from_their_teachers(teacher, cartpole):
    """Only action distributions and values cross: a narrow student learns from a wide teacher."""
    torch.manual_seed(0)
    narrow = Policy(4, 2, (16,))
    result = distill_policies({cartpole.name: teacher}, [cartpole], student=narrow,
                              settings=DistillSettings(iterations=1, steps_per_variant=64, n_envs=2), seed=0)
    assert result.policy.hidden == (16,)


def test_same_seed_same_student(teacher, cartpole, fresh_student):
    settings = DistillSettings(iterations=1, steps_per_variant=128, n_envs=2)
    a = distill_policies({cartpole.name: teacher}, [cartpole], student=fresh_student, settings=settings, seed=4)
    b = distill_policies({cartpole.name: teacher}, [cartpole], student=fresh_student, settings=settings, seed=4)
    for key, value in a.policy.state_dict().items():
        assert torch.equal(b.policy.state_dict()[key], value)


# ----------------------------------------------------------------------------- bad input


def test_a_variant_without_a_teacher_is_refused(teacher, cartpole):
    other = EnvVariant("CartPole-v1", {"length": 2.0}, name="long")
    with pytest.raises(ValidationError, match=r"no expert for variants \['long'\]; teachers has \['cartpole\[default\]'\]"):
        distill_policies({cartpole.name: teacher}, [cartpole, other])


def test_no_variants_is_refused(teacher):
    with pytest.raises(ValidationError, match="distill_policies needs at least one variant"):
        distill_policies({"x": teacher}, [])


def test_teacher_or_student_of_other_spaces_is_refused(teacher, cartpole):
    with pytest.raises(ValidationError, match=r"chooses among 3 actions, but cartpole\[default\] has 4 observation"):
        distill_policies({cartpole.name: Policy(4, 3)}, [cartpole])
    with pytest.raises(ValidationError, match=r"chooses among 3 actions, but cartpole\[default\]"):
        distill_policies({cartpole.name: teacher}, [cartpole], student=Policy(4, 3))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"iterations": 0}, "DistillSettings.iterations must be >= 1, got 0"),
        ({"steps_per_variant": 0}, "DistillSettings.steps_per_variant must be >= 1"),
        ({"n_envs": 0}, "DistillSettings.n_envs must be >= 1"),
        ({"beta": 1.5}, r"beta and beta_decay must lie in \[0, 1\], got 1.5"),
        ({"beta_decay": -0.1}, r"beta and beta_decay must lie in \[0, 1\]"),
        ({"temperature": 0.0}, "temperature and learning_rate must be > 0"),
        ({"learning_rate": -1e-3}, "temperature and learning_rate must be > 0"),
        ({"value_weight": -1.0}, "value_weight >= 0"),
    ],
)
def test_distill_settings_out_of_range(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        DistillSettings(**kwargs)
