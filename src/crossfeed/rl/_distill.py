"""Policy distillation (Rusu et al. 2016), DAgger-style: the experts teach one general policy.

Each iteration the student acts in every variant (mixed with the variant's expert: the expert takes
the action with probability ``beta``, which decays), the states it visits are labelled with that
variant's expert's action distribution and value, the labels join one growing dataset (DAgger,
Ross et al. 2011), and the student is trained on it: KL(expert's softmax at temperature tau ||
student's softmax), plus a small mean-squared error to the expert's value so the distilled policy
can go on learning with PPO without a blank critic. Experts and student may differ in architecture:
only action distributions and values cross.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossfeed.exceptions import ValidationError
from crossfeed.rl._envs import EnvVariant, make_env
from crossfeed.rl._policy import LearnedPolicy, Policy, check_policy_fits

__all__ = ["DistillSettings", "distill_policies", "policy_kl"]


def policy_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean KL(softmax(teacher / temperature) || softmax(student)) over the batch (Rusu et al. 2016, eq. 3).

    A temperature below 1 sharpens the teacher's distribution (the paper's tau = 0.01 for Q-values);
    1 keeps a policy's own probabilities.

    Example
    -------
    >>> t = torch.tensor([[2.0, 0.0]])
    >>> float(policy_kl(t, t))
    0.0
    >>> round(float(policy_kl(t, torch.zeros(1, 2))), 4)   # KL([0.881, 0.119] || [0.5, 0.5])
    0.3278
    """
    if temperature <= 0:
        raise ValidationError(f"temperature must be > 0, got {temperature}")
    target = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(F.log_softmax(student_logits, dim=-1), target, log_target=True, reduction="batchmean")


@dataclass(frozen=True)
class DistillSettings:
    """How long and how hard the student learns."""

    iterations: int = 6
    steps_per_variant: int = 2000
    epochs: int = 4
    batch_size: int = 256
    learning_rate: float = 1e-3
    beta: float = 1.0
    beta_decay: float = 0.5
    temperature: float = 1.0
    value_weight: float = 0.5
    n_envs: int = 8

    def __post_init__(self) -> None:
        for name in ("iterations", "steps_per_variant", "epochs", "batch_size", "n_envs"):
            if int(getattr(self, name)) < 1:
                raise ValidationError(f"DistillSettings.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.beta <= 1 or not 0 <= self.beta_decay <= 1:
            raise ValidationError(f"beta and beta_decay must lie in [0, 1], got {self.beta}, {self.beta_decay}")
        if self.temperature <= 0 or self.learning_rate <= 0 or self.value_weight < 0:
            raise ValidationError("temperature and learning_rate must be > 0 and value_weight >= 0")


def _visit(
    student: Policy, teacher: Policy, variant: EnvVariant, steps: int, beta: float, n_envs: int, rng: np.random.Generator
) -> np.ndarray:
    """States visited in ``variant`` by the mixture: the teacher acts with probability beta."""
    envs = [make_env(variant) for _ in range(n_envs)]
    try:
        obs = np.stack([env.reset(seed=int(rng.integers(2**31)))[0] for env in envs])
        states = []
        for _ in range(-(-steps // n_envs)):
            states.append(obs.copy())
            mine = student.act(obs, deterministic=False, rng=rng)
            theirs = teacher.act(obs, deterministic=False, rng=rng)
            actions = np.where(rng.random(n_envs) < beta, theirs, mine)
            for i, env in enumerate(envs):
                o, _, terminated, truncated, _ = env.step(int(actions[i]))
                obs[i] = env.reset(seed=int(rng.integers(2**31)))[0] if terminated or truncated else o
        return np.concatenate(states)[:steps].astype(np.float32)
    finally:
        for env in envs:
            env.close()


def distill_policies(
    teachers: Mapping[str, Policy],
    variants: Sequence[EnvVariant],
    *,
    student: Policy | None = None,
    settings: DistillSettings | None = None,
    seed: int = 0,
) -> LearnedPolicy:
    """Distil one policy from one expert per variant.

    Parameters
    ----------
    teachers : the expert of each variant, by variant name (every variant needs one).
    variants : the variants; the student visits each of them every iteration.
    student : the policy to train (default: a fresh one shaped like the first teacher). It is not
        modified: the result holds a trained copy.
    settings : :class:`DistillSettings`.
    seed : seeds the states visited and the minibatches.
    """
    settings = settings or DistillSettings()
    variants = list(variants)
    if not variants:
        raise ValidationError("distill_policies needs at least one variant, got none")
    missing = [v.name for v in variants if v.name not in teachers]
    if missing:
        raise ValidationError(f"no expert for variants {missing}; teachers has {sorted(teachers)}")
    first = teachers[variants[0].name]
    student = (student or Policy(first.obs_dim, first.n_actions, first.hidden)).clone()
    for v in variants:
        env = make_env(v)
        shape, n = env.observation_space.shape, int(env.action_space.n)
        env.close()
        check_policy_fits(teachers[v.name], shape, n, where=v.name)
        check_policy_fits(student, shape, n, where=v.name)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.learning_rate)
    X: list[torch.Tensor] = []
    T: list[torch.Tensor] = []
    V: list[torch.Tensor] = []
    log: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    interactions = 0
    for it in range(settings.iterations):
        beta = settings.beta * settings.beta_decay**it
        for v in variants:
            teacher = teachers[v.name]
            states = torch.from_numpy(_visit(student, teacher, v, settings.steps_per_variant, beta, settings.n_envs, rng))
            interactions += len(states)
            with torch.no_grad():
                logits, value = teacher(states)
            X.append(states)
            T.append(logits)
            V.append(value)
        x, t, val = torch.cat(X), torch.cat(T), torch.cat(V)
        kls, mses = [], []
        for _ in range(settings.epochs):
            order = torch.randperm(len(x))
            for start in range(0, len(x), settings.batch_size):
                idx = order[start : start + settings.batch_size]
                logits, value = student(x[idx])
                kl = policy_kl(t[idx], logits, settings.temperature)
                mse = F.mse_loss(value, val[idx])
                optimizer.zero_grad()
                (kl + settings.value_weight * mse).backward()  # actor and critic are separate networks
                optimizer.step()
                kls.append(kl.item())
                mses.append(mse.item())
        log.append({"iteration": it, "beta": beta, "states": len(x), "kl": float(np.mean(kls)),
                    "value_mse": float(np.mean(mses)), "seconds": time.perf_counter() - t0})
    return LearnedPolicy(student, log, interactions, time.perf_counter() - t0)
