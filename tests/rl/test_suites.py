"""The built-in RL suites: every one builds, every variant makes an env, train and held-out apart."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

from crossfeed.exceptions import UnknownNameError, ValidationError  # noqa: E402
from crossfeed.rl import RL_SUITES, PPOSettings, load_rl_suite, make_env  # noqa: E402


def test_registered_suites():
    assert RL_SUITES.names() == ["acrobot", "cartpole", "mountaincar", "pendulum"]


@pytest.mark.parametrize("name", ["acrobot", "cartpole", "mountaincar", "pendulum"])
def test_every_suite_builds_and_its_variants_make_envs(name):
    suite = load_rl_suite(name, seed=3)
    assert suite.name == name and suite.seed == 3
    assert len(suite.train) >= 2 and len(suite.held_out) >= 1
    train, held = {v.name for v in suite.train}, {v.name for v in suite.held_out}
    assert len(train) == len(suite.train) and len(held) == len(suite.held_out)
    assert not train & held, f"{name}: a variant is both trained on and held out: {train & held}"
    obs_shape, n_actions = suite.spaces()
    for v in suite.variants:
        env = make_env(v, seed=0)
        try:
            assert env.observation_space.shape == obs_shape and env.action_space.n == n_actions
            obs, _ = env.reset(seed=0)
            obs, reward, *_ = env.step(0)
            assert np.all(np.isfinite(obs)) and np.isfinite(reward)
        finally:
            env.close()
    assert PPOSettings.of(suite.ppo).n_envs >= 1
    assert suite.target_return is not None
    for key in ("general", "expert", "scratch", "adapt", "meta_inner", "meta_iterations", "eval_every"):
        assert suite.budget(key, 0) > 0


def test_cartpole_suite_variants():
    suite = load_rl_suite("cartpole")
    assert [v.name for v in suite.train] == ["default", "short-pole", "long-pole", "heavy-pole-weak-motor"]
    assert suite.variant("long-pole").params == {"length": 2.0}


def test_unknown_suite_suggests_the_close_name():
    with pytest.raises(UnknownNameError, match=r"unknown rl suite 'cartpol'.*did you mean 'cartpole'\?"):
        load_rl_suite("cartpol")


@pytest.mark.parametrize("seed", ["0", 1.5, True])
def test_seed_must_be_an_int(seed):
    with pytest.raises(ValidationError, match="seed must be an int"):
        load_rl_suite("cartpole", seed=seed)
