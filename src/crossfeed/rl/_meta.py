"""Meta-RL with Reptile (Nichol et al. 2018) over environment variants as tasks.

Each meta-iteration adapts a copy of the initial policy to a few variants with PPO (the inner
loop) and moves the initialisation toward the adapted weights:
``theta <- theta + epsilon_t * mean_i(theta_i - theta)``, ``epsilon_t`` annealed linearly to 0.
The result is an initial policy that adapts fast to a new variant, measured against the distilled
general policy and against scratch on held-out variants.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crossfeed.exceptions import ValidationError
from crossfeed.rl._envs import EnvVariant
from crossfeed.rl._policy import LearnedPolicy, Policy
from crossfeed.rl._ppo import PPOSettings, initial_policy, train_ppo

__all__ = ["ReptileSettings", "reptile", "reptile_step"]


def reptile_step(
    start: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]], step: float
) -> dict[str, torch.Tensor]:
    """``start + step * mean(adapted - start)``, tensor by tensor (the Reptile outer update).

    Example
    -------
    >>> out = reptile_step({"w": torch.zeros(2)}, [{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 0.0])}], 0.5)
    >>> out["w"].tolist()
    [1.0, 0.5]
    """
    if not adapted:
        raise ValidationError("reptile_step needs at least one adapted state, got none")
    if not 0 < step <= 1:
        raise ValidationError(f"the Reptile step must lie in (0, 1], got {step}")
    for other in adapted:
        if set(other) != set(start):
            raise ValidationError("adapted states must have the same tensors as the start state")
        bad = [k for k, v in start.items() if other[k].shape != v.shape]
        if bad:
            raise ValidationError(f"adapted tensors {bad} have other shapes than the start state's")
    return {k: v + step * torch.stack([a[k] - v for a in adapted]).mean(0) for k, v in start.items()}


@dataclass(frozen=True)
class ReptileSettings:
    """Meta-iterations, the PPO budget of one inner adaptation, tasks per iteration, outer step."""

    meta_iterations: int = 20
    inner_timesteps: int = 4096
    tasks_per_iteration: int = 0  # 0: every variant each iteration
    meta_lr: float = 1.0

    def __post_init__(self) -> None:
        if self.meta_iterations < 1 or self.inner_timesteps < 1 or self.tasks_per_iteration < 0:
            raise ValidationError(
                "ReptileSettings needs meta_iterations >= 1, inner_timesteps >= 1, tasks_per_iteration >= 0; got "
                f"{self.meta_iterations}, {self.inner_timesteps}, {self.tasks_per_iteration}"
            )
        if not 0 < self.meta_lr <= 1:
            raise ValidationError(f"meta_lr must lie in (0, 1], got {self.meta_lr}")


def reptile(
    variants: Sequence[EnvVariant],
    *,
    start: Policy | None = None,
    settings: ReptileSettings | None = None,
    ppo: PPOSettings | None = None,
    seed: int = 0,
) -> LearnedPolicy:
    """Meta-learn an initial policy over ``variants`` (the train variants; held-out ones stay out)."""
    settings = settings or ReptileSettings()
    variants = list(variants)
    if not variants:
        raise ValidationError("reptile needs at least one variant, got none")
    rng = np.random.default_rng(seed)
    k = settings.tasks_per_iteration or len(variants)
    if k > len(variants):
        raise ValidationError(f"tasks_per_iteration={k} but only {len(variants)} variants")
    policy = start.clone() if start is not None else initial_policy(variants[0], ppo, seed)
    log: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    interactions = 0
    for it in range(settings.meta_iterations):
        tasks = [variants[i] for i in rng.choice(len(variants), size=k, replace=False)]
        adapted = []
        for j, v in enumerate(tasks):
            inner_seed = int(seed) * 100_003 + it * 101 + j
            result = train_ppo(v, settings.inner_timesteps, start=policy, settings=ppo, seed=inner_seed)
            interactions += result.interactions
            adapted.append(result)
        step = settings.meta_lr * (1 - it / settings.meta_iterations)
        policy.load_state_dict(reptile_step(policy.state_dict(), [a.policy.state_dict() for a in adapted], step))
        log.append({"iteration": it, "tasks": [v.name for v in tasks], "step": step,
                    "interactions": interactions, "seconds": time.perf_counter() - t0})
    return LearnedPolicy(policy, log, interactions, time.perf_counter() - t0)
