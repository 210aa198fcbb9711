"""Fixtures of the RL tests: tiny PPO budgets on CartPole, a teacher trained once, one small cycle.

Every test module calls ``pytest.importorskip`` for gymnasium and stable-baselines3, so the folder
is skipped cleanly without ``crossfeed[rl]``. The budgets are a few thousand interactions: the
whole folder runs in well under a minute on one core.
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

CARTPOLE = "CartPole-v1"
#: PPO settings of every test: 512 interactions per update.
PPO = {"n_envs": 4, "n_steps": 128}
#: the seed of the teacher run; a fresh policy of this seed is poor on CartPole (mean return ~9),
#: while seed 0's fresh policy happens to balance the pole (~400), which would hide any learning.
TEACHER_SEED = 1
TEACHER_BUDGET = 16_384
TEACHER_EVAL_EVERY = 4096
EVAL_EPISODES = 5


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ppo_settings():
    from crossfeed.rl import PPOSettings

    return PPOSettings(**PPO)


@pytest.fixture(scope="session")
def cartpole():
    from crossfeed.rl import EnvVariant

    return EnvVariant(CARTPOLE)


@pytest.fixture(scope="session")
def teacher_run(ppo_settings, cartpole):
    """PPO on default CartPole from a fresh (poor) policy, the curve recorded every 4096 interactions."""
    pytest.importorskip("gymnasium")
    pytest.importorskip("stable_baselines3")
    from crossfeed.rl import train_ppo

    return train_ppo(cartpole, TEACHER_BUDGET, settings=ppo_settings, seed=TEACHER_SEED,
                     eval_every=TEACHER_EVAL_EVERY, eval_episodes=EVAL_EPISODES)


@pytest.fixture(scope="session")
def teacher(teacher_run):
    return teacher_run.policy


def tiny_suite():
    """Two CartPole train variants and one held-out variant, PPO settings of the tests."""
    from crossfeed.rl import EnvVariant, VariantSuite

    return VariantSuite(
        "tiny",
        train=(EnvVariant(CARTPOLE, name="default"), EnvVariant(CARTPOLE, {"length": 1.0}, name="long")),
        held_out=(EnvVariant(CARTPOLE, {"length": 1.5, "force_mag": 5.0}, name="longer-weak"),),
        seed=0,
        ppo=dict(PPO),
        eval_episodes=3,
    )


@pytest.fixture(scope="session")
def cycle_run(tmp_path_factory):
    """One generation of the RL cycle on :func:`tiny_suite`, written to a temporary folder."""
    pytest.importorskip("gymnasium")
    pytest.importorskip("stable_baselines3")
    from crossfeed.rl import DistillSettings, run_rl_cycle

    out = tmp_path_factory.mktemp("rl-cycle")
    lines: list[str] = []
    cycle = run_rl_cycle(tiny_suite(), generations=1, seed=1, general_timesteps=2048, expert_timesteps=512,
                         distill=DistillSettings(iterations=2, steps_per_variant=500, n_envs=4), episodes=3,
                         out_dir=out, progress=lines.append)
    return cycle, out, lines
