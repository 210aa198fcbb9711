"""Measuring a policy: seeded episode returns, and interactions until a return is reached."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.rl import EnvVariant, Policy, episode_returns, interactions_to_reach, mean_return  # noqa: E402


def test_returns_are_seeded_per_episode(teacher, cartpole):
    a = episode_returns(teacher, cartpole, episodes=4, seed=11)
    assert a.shape == (4,)
    np.testing.assert_array_equal(a, episode_returns(teacher, cartpole, episodes=4, seed=11))
    # episode i runs with seed + i
    np.testing.assert_array_equal(a[1:], episode_returns(teacher, cartpole, episodes=3, seed=12))
    assert mean_return(teacher, cartpole, episodes=4, seed=11) == pytest.approx(a.mean())
    assert np.all((a >= 1) & (a <= 500))


def test_trained_policy_beats_a_fresh_one(teacher, cartpole):
    torch.manual_seed(0)
    fresh = Policy(4, 2)
    assert mean_return(teacher, cartpole, episodes=5) > mean_return(fresh, cartpole, episodes=5) + 100


def test_sampled_actions(teacher, cartpole):
    a = episode_returns(teacher, cartpole, episodes=3, seed=0, deterministic=False)
    np.testing.assert_array_equal(a, episode_returns(teacher, cartpole, episodes=3, seed=0, deterministic=False))


def test_returns_on_a_variant_with_other_physics(teacher):
    v = EnvVariant("CartPole-v1", {"length": 0.05, "force_mag": 50.0})
    assert not np.array_equal(episode_returns(teacher, v, episodes=3), episode_returns(teacher, EnvVariant("CartPole-v1"), episodes=3))


def test_a_policy_of_other_spaces_is_refused(cartpole):
    with pytest.raises(ValidationError, match=r"chooses among 3 actions, but cartpole\[default\] has 4 observation "
                                              r"values and 2 actions; use a policy built for this environment family"):
        episode_returns(Policy(4, 3), cartpole)
    with pytest.raises(ValidationError, match=r"takes 4 observation values .* acrobot\[default\] has 6"):
        mean_return(Policy(4, 3), EnvVariant("Acrobot-v1"))


def test_episodes_must_be_positive(teacher, cartpole):
    with pytest.raises(ValidationError, match="episodes must be >= 1, got 0"):
        episode_returns(teacher, cartpole, episodes=0)


def test_interactions_to_reach():
    curve = [(0, 10.0), (512, 80.0), (1024, 200.0), (1536, 150.0), (2048, 480.0)]
    assert interactions_to_reach(curve, 10.0) == 0
    assert interactions_to_reach(curve, 100.0) == 1024
    assert interactions_to_reach(curve, 475.0) == 2048
    assert interactions_to_reach(curve, 500.0) is None
    assert interactions_to_reach([], 0.0) is None
