"""The built-in RL suites: ``load_rl_suite(name)``.

Each suite is one gymnasium family: four train variants (the industries), held-out variants the
general policy never trains on, PPO settings that learn the family on two CPU cores (after the
rl-baselines3-zoo settings, shortened), interaction budgets, and a target return (gymnasium's
``reward_threshold`` where it has one).
"""

from __future__ import annotations

from collections.abc import Callable

from crossfeed._registry import Registry
from crossfeed.exceptions import ValidationError
from crossfeed.rl._envs import EnvVariant, VariantSuite

__all__ = ["RL_SUITES", "load_rl_suite"]

RL_SUITES: Registry[Callable[[int], VariantSuite]] = Registry("rl suite")


def _v(env_id: str, name: str, **params: float) -> EnvVariant:
    return EnvVariant(env_id, params, name=name)


@RL_SUITES.register("cartpole")
def cartpole(seed: int = 0) -> VariantSuite:
    """CartPole-v1 with other poles, carts and motors (``length`` is half the pole's length)."""
    c = "CartPole-v1"
    return VariantSuite(
        name="cartpole",
        train=(
            _v(c, "default"),
            _v(c, "short-pole", length=0.1),
            _v(c, "long-pole", length=2.0),
            _v(c, "heavy-pole-weak-motor", masspole=1.0, force_mag=5.0),
        ),
        held_out=(
            _v(c, "long-pole-weak-motor", length=1.5, force_mag=4.0),
            _v(c, "very-long-pole-heavy-cart", length=3.0, masscart=3.0),
            _v(c, "high-gravity-short-pole", gravity=20.0, length=0.1, force_mag=5.0),
        ),
        seed=seed,
        ppo={"n_envs": 8, "n_steps": 128, "batch_size": 256, "n_epochs": 10, "learning_rate": 1e-3,
             "gamma": 0.98, "gae_lambda": 0.8},
        budgets={"general": 100_000, "expert": 40_000, "scratch": 100_000, "adapt": 50_000,
                 "meta_inner": 4096, "meta_iterations": 10, "eval_every": 5120},
        target_return=475.0,
    )


@RL_SUITES.register("acrobot")
def acrobot(seed: int = 0) -> VariantSuite:
    """Acrobot-v1 with other link masses and lengths."""
    a = "Acrobot-v1"
    return VariantSuite(
        name="acrobot",
        train=(
            _v(a, "default"),
            _v(a, "heavy-lower-link", link_mass_2=2.0),
            _v(a, "light-upper-link", link_mass_1=0.5),
            _v(a, "long-upper-link", link_length_1=1.5),
        ),
        held_out=(
            _v(a, "heavy-links", link_mass_1=1.5, link_mass_2=2.5),
            _v(a, "short-lower-link-heavy", link_length_2=0.6, link_mass_2=1.5),
        ),
        seed=seed,
        ppo={"n_envs": 16, "n_steps": 256, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3,
             "gamma": 0.99, "gae_lambda": 0.94},
        budgets={"general": 150_000, "expert": 40_000, "scratch": 150_000, "adapt": 60_000,
                 "meta_inner": 8192, "meta_iterations": 8, "eval_every": 8192},
        target_return=-100.0,
    )


@RL_SUITES.register("mountaincar")
def mountaincar(seed: int = 0) -> VariantSuite:
    """MountainCar-v0 with other engines and slopes (sparse reward: PPO needs its entropy bonus)."""
    m = "MountainCar-v0"
    return VariantSuite(
        name="mountaincar",
        train=(
            _v(m, "default"),
            _v(m, "strong-engine", force=0.0015),
            _v(m, "gentle-slope", gravity=0.002),
            _v(m, "strong-engine-steep", force=0.0016, gravity=0.003),
        ),
        held_out=(_v(m, "weak-engine", force=0.0009), _v(m, "steep-slope", gravity=0.0028)),
        seed=seed,
        ppo={"n_envs": 16, "n_steps": 256, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3,
             "gamma": 0.99, "gae_lambda": 0.98, "ent_coef": 0.01},
        budgets={"general": 300_000, "expert": 60_000, "scratch": 300_000, "adapt": 100_000,
                 "meta_inner": 8192, "meta_iterations": 10, "eval_every": 16384},
        target_return=-110.0,
    )


@RL_SUITES.register("pendulum")
def pendulum(seed: int = 0) -> VariantSuite:
    """Pendulum-v1 with other gravity, masses and lengths; torque discretised to 5 levels."""
    p = "Pendulum-v1"
    return VariantSuite(
        name="pendulum",
        train=(
            _v(p, "default"),
            _v(p, "low-gravity", g=6.0),
            _v(p, "heavy", m=1.3),
            _v(p, "long", l=1.2),
        ),
        held_out=(_v(p, "high-gravity", g=13.0), _v(p, "short-light", l=0.8, m=0.8)),
        seed=seed,
        ppo={"n_envs": 4, "n_steps": 1024, "batch_size": 256, "n_epochs": 10, "learning_rate": 1e-3,
             "gamma": 0.9, "gae_lambda": 0.95},
        budgets={"general": 200_000, "expert": 50_000, "scratch": 200_000, "adapt": 80_000,
                 "meta_inner": 8192, "meta_iterations": 10, "eval_every": 16384},
        target_return=-250.0,
    )


def load_rl_suite(name: str, seed: int = 0) -> VariantSuite:
    """A built-in RL suite by name (``RL_SUITES.names()``); needs ``crossfeed[rl]``.

    Example
    -------
    >>> suite = load_rl_suite("cartpole")                  # doctest: +SKIP
    >>> [v.name for v in suite.train]                      # doctest: +SKIP
    ['default', 'short-pole', 'long-pole', 'heavy-pole-weak-motor']

    Unknown names raise ``UnknownNameError`` with the closest suite.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValidationError(f"seed must be an int, got {seed!r}")
    return RL_SUITES.get(name)(seed)
