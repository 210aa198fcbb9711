"""PPO through stable-baselines3: learning, starting from a given policy, stopping early, settings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.rl import (  # noqa: E402
    EnvVariant,
    Policy,
    PPOSettings,
    initial_policy,
    interactions_to_reach,
    mean_return,
    train_ppo,
)
from tests.rl.conftest import (  # noqa: E402
    EVAL_EPISODES,
    TEACHER_BUDGET,
    TEACHER_EVAL_EVERY,
    TEACHER_SEED,
)


def same_weights(a: Policy, b: Policy) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_raises_the_return(teacher_run, cartpole, ppo_settings):
    curve = teacher_run.curve
    assert [at for at, _ in curve] == list(range(0, TEACHER_BUDGET + 1, TEACHER_EVAL_EVERY))
    assert teacher_run.interactions == TEACHER_BUDGET
    first, last = curve[0][1], curve[-1][1]
    # the point at 0 is the fresh policy, measured as the curve measures it
    fresh = initial_policy(cartpole, ppo_settings, seed=TEACHER_SEED)
    assert first == pytest.approx(mean_return(fresh, cartpole, episodes=EVAL_EPISODES, seed=10_000 + TEACHER_SEED))
    assert first < 50
    assert last > first + 200, curve
    # the returned policy is the one measured last
    assert mean_return(teacher_run.policy, cartpole, episodes=EVAL_EPISODES, seed=10_000 + TEACHER_SEED) == last
    assert teacher_run.seconds > 0


def test_start_policy_is_where_training_starts(teacher, cartpole, ppo_settings):
    seed = 3
    snapshot = teacher.clone()
    started = train_ppo(cartpole, 512, start=teacher, settings=ppo_settings, seed=seed, eval_every=512,
                        eval_episodes=EVAL_EPISODES)
    expected = mean_return(teacher, cartpole, episodes=EVAL_EPISODES, seed=10_000 + seed)
    assert started.curve[0] == (0, pytest.approx(expected))
    assert expected > 300
    assert same_weights(teacher, snapshot), "train_ppo modified the start policy"
    assert not same_weights(started.policy, teacher)  # it did learn from there
    assert started.policy.hidden == teacher.hidden
    # without start= the same run starts from the fresh policy, far below the teacher
    fresh = train_ppo(cartpole, 512, settings=ppo_settings, seed=seed, eval_every=512, eval_episodes=EVAL_EPISODES)
    assert fresh.curve[0][1] < expected - 100


def test_start_with_other_hidden_widths(cartpole, ppo_settings):
    torch.manual_seed(0)
    small = Policy(4, 2, (16,))
    result = train_ppo(cartpole, 512, start=small, settings=ppo_settings, seed=0)
    assert result.policy.hidden == (16,)
    assert result.interactions == 512
    assert [at for at, _ in result.curve] == [512]


def test_stop_at_a_start_that_already_reaches_the_target(teacher, cartpole, ppo_settings):
    result = train_ppo(cartpole, 8192, start=teacher, settings=ppo_settings, seed=0, eval_every=1024,
                       eval_episodes=EVAL_EPISODES, stop_at=100.0)
    assert result.interactions == 0
    assert len(result.curve) == 1 and result.curve[0][0] == 0 and result.curve[0][1] >= 100
    assert same_weights(result.policy, teacher)


def test_stop_at_stops_early(teacher_run, cartpole, ppo_settings):
    target = 200.0
    result = train_ppo(cartpole, TEACHER_BUDGET, settings=ppo_settings, seed=TEACHER_SEED, eval_every=2048,
                       eval_episodes=EVAL_EPISODES, stop_at=target)
    assert result.interactions < TEACHER_BUDGET  # the same run without stop_at used the whole budget
    assert teacher_run.interactions == TEACHER_BUDGET
    assert result.curve[-1][1] >= target > max(value for _, value in result.curve[:-1])
    assert interactions_to_reach(result.curve, target) == result.interactions == result.curve[-1][0]
    # the returned policy is the one that reached the target
    assert mean_return(result.policy, cartpole, episodes=EVAL_EPISODES, seed=10_000 + TEACHER_SEED) >= target


def test_same_seed_same_run(cartpole, ppo_settings):
    a = train_ppo(cartpole, 512, settings=ppo_settings, seed=5)
    b = train_ppo(cartpole, 512, settings=ppo_settings, seed=5)
    assert same_weights(a.policy, b.policy)
    assert a.curve == b.curve


def test_pooled_variants_and_eval_variant(ppo_settings):
    long_pole = EnvVariant("CartPole-v1", {"length": 2.0}, name="long")
    pool = [EnvVariant("CartPole-v1", name="default"), long_pole]
    result = train_ppo(pool, 512, settings=ppo_settings, seed=0, eval_variant=long_pole, eval_episodes=3)
    assert result.curve[-1][1] == mean_return(result.policy, long_pole, episodes=3, seed=10_000)


def test_initial_policy_is_seeded(cartpole, ppo_settings):
    a, b = initial_policy(cartpole, ppo_settings, seed=4), initial_policy(cartpole, ppo_settings, seed=4)
    assert same_weights(a, b)
    assert not same_weights(a, initial_policy(cartpole, ppo_settings, seed=5))
    assert a.config() == {"obs_dim": 4, "n_actions": 2, "hidden": [64, 64]}
    # SB3's orthogonal initialisation: a small action head (gain 0.01)
    assert float(a.action_net.weight.detach().abs().max()) < 0.05


def test_initial_policy_of_pendulum_has_five_actions():
    p = initial_policy(EnvVariant("Pendulum-v1"), PPOSettings(n_envs=1, n_steps=8, hidden=(8,)))
    assert p.config() == {"obs_dim": 3, "n_actions": 5, "hidden": [8]}


# ----------------------------------------------------------------------------- bad input


def test_a_start_policy_of_other_spaces_is_refused(cartpole, ppo_settings):
    with pytest.raises(ValidationError, match=r"chooses among 3 actions, but cartpole\[default\] has 4 observation "
                                              r"values and 2 actions"):
        train_ppo(cartpole, 512, start=Policy(4, 3), settings=ppo_settings)
    with pytest.raises(ValidationError, match="takes 6 observation values"):
        train_ppo(cartpole, 512, start=Policy(6, 2), settings=ppo_settings)


def test_bad_budget_or_no_variants(cartpole, ppo_settings):
    with pytest.raises(ValidationError, match="timesteps must be >= 1, got 0"):
        train_ppo(cartpole, 0, settings=ppo_settings)
    with pytest.raises(ValidationError, match="train_ppo needs at least one variant"):
        train_ppo([], 512, settings=ppo_settings)


def test_settings_of_a_mapping():
    s = PPOSettings.of({"n_envs": 4}, n_steps=64)
    assert (s.n_envs, s.n_steps, s.rollout) == (4, 64, 256)
    assert PPOSettings.of(None) == PPOSettings()
    assert PPOSettings(hidden=[32]).hidden == (32,)


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(ValidationError, match=r"unknown PPO settings \['n_env'\]; expected some of \[.*'n_envs'"):
        PPOSettings.of({"n_env": 4})


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_envs": 0}, "PPOSettings.n_envs must be >= 1, got 0"),
        ({"batch_size": 0}, "PPOSettings.batch_size must be >= 1"),
        ({"learning_rate": 0.0}, "0 < learning_rate < 1"),
        ({"learning_rate": 2.0}, "0 < learning_rate < 1"),
        ({"gamma": 1.5}, "0 < gamma <= 1"),
        ({"gae_lambda": -0.1}, "0 <= gae_lambda <= 1"),
    ],
)
def test_settings_out_of_range(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        PPOSettings(**kwargs)


def test_batch_size_is_capped_at_the_rollout(cartpole):
    # batch_size 256 > a rollout of 2 * 8 interactions: SB3 would warn; the learner caps it
    result = train_ppo(cartpole, 16, settings=PPOSettings(n_envs=2, n_steps=8, hidden=(8,)), seed=0)
    assert result.interactions == 16
    assert np.isfinite(result.curve[-1][1])


def test_stop_at_needs_eval_every(cartpole, ppo_settings):
    with pytest.raises(ValidationError, match="stop_at=100 needs eval_every >= 1"):
        train_ppo(cartpole, 512, settings=ppo_settings, stop_at=100)


def test_critic_warmup_freezes_the_actor_only(teacher, cartpole, ppo_settings):
    obs = torch.randn(64, 4)
    frozen = train_ppo(EnvVariant("CartPole-v1", {"length": 1.5}), 1024, start=teacher, settings=ppo_settings,
                       seed=3, critic_warmup=1024).policy
    free = train_ppo(EnvVariant("CartPole-v1", {"length": 1.5}), 1024, start=teacher, settings=ppo_settings,
                     seed=3).policy
    with torch.no_grad():
        (l0, v0), (l1, v1), (l2, _) = teacher(obs), frozen(obs), free(obs)
    torch.testing.assert_close(l1, l0)  # the actor did not move during the warm-up...
    assert not torch.allclose(v1, v0)  # ...the critic did
    assert not torch.allclose(l2, l0)  # and without the warm-up the actor moves


def test_critic_warmup_must_not_be_negative(cartpole, ppo_settings):
    with pytest.raises(ValidationError, match="critic_warmup must be >= 0"):
        train_ppo(cartpole, 512, settings=ppo_settings, critic_warmup=-1)


def test_target_kl_is_passed_to_ppo_and_checked(cartpole):
    from crossfeed.rl import PPOSettings as S

    assert S(target_kl=0.02).target_kl == 0.02
    with pytest.raises(ValidationError, match="target_kl must be > 0 or None"):
        S(target_kl=0.0)
    r = train_ppo(cartpole, 256, settings=S(n_envs=2, n_steps=128, target_kl=0.01), seed=0)
    assert r.interactions == 256
