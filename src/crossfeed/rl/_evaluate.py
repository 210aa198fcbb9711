"""Measuring a policy: episode returns on a variant, and interactions until a return is reached."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crossfeed.exceptions import ValidationError
from crossfeed.rl._envs import EnvVariant, make_env
from crossfeed.rl._policy import Policy, check_policy_fits

__all__ = ["episode_returns", "interactions_to_reach", "mean_return"]


def episode_returns(
    policy: Policy, variant: EnvVariant, *, episodes: int = 10, seed: int = 0, deterministic: bool = True
) -> np.ndarray:
    """Undiscounted return of each of ``episodes`` episodes (seeds ``seed``, ``seed + 1``, ...).

    The episodes run side by side, so the policy sees one batch per time step.
    """
    if episodes < 1:
        raise ValidationError(f"episodes must be >= 1, got {episodes}")
    envs = [make_env(variant) for _ in range(episodes)]
    try:
        check_policy_fits(policy, envs[0].observation_space.shape, int(envs[0].action_space.n), where=variant.name)
        obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
        returns = np.zeros(episodes)
        active = list(range(episodes))
        rng = np.random.default_rng(seed)
        while active:
            actions = policy.act(np.stack([obs[i] for i in active]), deterministic=deterministic, rng=rng)
            still = []
            for i, a in zip(active, actions):
                obs[i], reward, terminated, truncated, _ = envs[i].step(int(a))
                returns[i] += float(reward)
                if not (terminated or truncated):
                    still.append(i)
            active = still
        return returns
    finally:
        for env in envs:
            env.close()


def mean_return(policy: Policy, variant: EnvVariant, *, episodes: int = 10, seed: int = 0) -> float:
    """Mean deterministic return over ``episodes`` seeded episodes."""
    return float(episode_returns(policy, variant, episodes=episodes, seed=seed).mean())


def interactions_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The first number of interactions at which ``curve`` (``(interactions, return)`` pairs, in
    order) reaches ``target``; None if it never does."""
    for interactions, value in curve:
        if value >= target:
            return int(interactions)
    return None
