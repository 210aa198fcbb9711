"""PPO through stable-baselines3: experts per variant, the pooled general policy, fine-tuning.

stable-baselines3 (a well-kept PPO, installs with CPU torch) does the learning; crossfeed's
:class:`Policy` goes in and comes out, so a learner can start from a distilled or meta-learned
policy and hand its weights back. With ``eval_every`` the returned curve holds the mean
deterministic return on ``eval_variant`` after every ``eval_every`` interactions (and at 0): the
return-vs-interactions curves of the benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from torch import nn

from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.rl._envs import EnvVariant, make_env
from crossfeed.rl._evaluate import mean_return
from crossfeed.rl._policy import Policy, check_policy_fits

__all__ = ["PPOSettings", "TrainResult", "initial_policy", "train_ppo"]


@dataclass(frozen=True)
class PPOSettings:
    """PPO's settings (stable-baselines3's names). ``n_envs`` environments run side by side; with
    several variants they take turns, so a pooled learner sees every variant in every rollout."""

    n_envs: int = 8
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 10
    learning_rate: float = 1e-3
    gamma: float = 0.98
    gae_lambda: float = 0.8
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None  # stop an update's epochs once the policy moved this far (SB3's target_kl)
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValidationError(f"PPOSettings.target_kl must be > 0 or None, got {self.target_kl}")
        for name in ("n_envs", "n_steps", "batch_size", "n_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValidationError(f"PPOSettings.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1 or not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValidationError(
                "PPOSettings needs 0 < learning_rate < 1, 0 < gamma <= 1 and 0 <= gae_lambda <= 1; got "
                f"{self.learning_rate}, {self.gamma}, {self.gae_lambda}"
            )

    @classmethod
    def of(cls, overrides: Any = None, **more: Any) -> PPOSettings:
        """Settings from a mapping (unknown keys are errors that list the known ones)."""
        merged = {**dict(overrides or {}), **more}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValidationError(f"unknown PPO settings {unknown}; expected some of {sorted(known)}")
        return cls(**merged)

    @property
    def rollout(self) -> int:
        """Interactions per PPO update (``n_envs * n_steps``)."""
        return self.n_envs * self.n_steps


@dataclass
class TrainResult:
    """A trained policy, its return-vs-interactions curve, interactions used and seconds."""

    policy: Policy
    curve: list[tuple[int, float]] = field(default_factory=list)
    interactions: int = 0
    seconds: float = 0.0


def _sb3() -> Any:
    try:
        import stable_baselines3
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError:
        raise missing_dependency("stable-baselines3", "rl") from None
    return stable_baselines3, BaseCallback, Monitor, DummyVecEnv


def _learner(pool: Sequence[EnvVariant], settings: PPOSettings, seed: int, hidden: Sequence[int]) -> tuple[Any, Any]:
    sb3, _, Monitor, DummyVecEnv = _sb3()

    def env_fn(i: int) -> Any:
        return lambda: Monitor(make_env(pool[i % len(pool)]))

    vec = DummyVecEnv([env_fn(i) for i in range(settings.n_envs)])
    kwargs = asdict(settings)
    for key in ("n_envs", "hidden"):
        kwargs.pop(key)
    kwargs["batch_size"] = min(settings.batch_size, settings.rollout)
    model = sb3.PPO(
        "MlpPolicy", vec, seed=int(seed), device="cpu", verbose=0,
        policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)}, "activation_fn": nn.Tanh},
        **kwargs,
    )
    return vec, model


def initial_policy(variant: EnvVariant, settings: PPOSettings | None = None, seed: int = 0) -> Policy:
    """A fresh policy for ``variant``'s spaces, initialised as PPO initialises one (orthogonal)."""
    settings = settings or PPOSettings()
    vec, model = _learner([variant], settings, seed, settings.hidden)
    vec.close()
    obs_dim = int(np.prod(vec.observation_space.shape))
    policy = Policy(obs_dim, int(vec.action_space.n), settings.hidden)
    policy.load_state_dict(model.policy.state_dict(), strict=True)
    return policy


def train_ppo(
    variants: EnvVariant | Sequence[EnvVariant],
    timesteps: int,
    *,
    start: Policy | None = None,
    settings: PPOSettings | None = None,
    seed: int = 0,
    eval_variant: EnvVariant | None = None,
    eval_every: int = 0,
    eval_episodes: int = 10,
    stop_at: float | None = None,
    critic_warmup: int = 0,
) -> TrainResult:
    """Train a policy with PPO on one variant, or on several pooled.

    Parameters
    ----------
    variants : the variant(s) the learner's environments run.
    timesteps : interaction budget (rounded up to whole rollouts of ``settings.rollout``).
    start : the policy to start from (None: a fresh one, orthogonally initialised as in SB3).
    settings : PPO settings (default :class:`PPOSettings`).
    seed : seeds the learner, its environments and the evaluation episodes.
    eval_variant, eval_every, eval_episodes : record the mean return on ``eval_variant`` (default:
        the first variant) at 0 and after every ``eval_every`` interactions (0: only at the end).
    stop_at : stop as soon as a recorded return reaches this value.
    critic_warmup : for the first ``critic_warmup`` interactions only the critic learns (the actor
        is frozen). Fine-tuning a policy on a new variant otherwise starts from a critic fitted
        elsewhere, whose wrong advantages can wreck a good actor in the first updates.
    """
    _, BaseCallback, _, _ = _sb3()
    settings = settings or PPOSettings()
    pool = [variants] if isinstance(variants, EnvVariant) else list(variants)
    if not pool:
        raise ValidationError("train_ppo needs at least one variant, got none")
    if int(timesteps) < 1:
        raise ValidationError(f"timesteps must be >= 1, got {timesteps}")
    if int(critic_warmup) < 0:
        raise ValidationError(f"critic_warmup must be >= 0 interactions, got {critic_warmup}")
    if stop_at is not None and eval_every < 1:
        raise ValidationError(f"stop_at={stop_at} needs eval_every >= 1: returns are only recorded every eval_every interactions")
    probe = make_env(pool[0])
    obs_shape, n_actions = probe.observation_space.shape, int(probe.action_space.n)
    probe.close()
    if start is not None:
        check_policy_fits(start, obs_shape, n_actions, where=pool[0].name)
    hidden = start.hidden if start is not None else settings.hidden
    target = eval_variant or pool[0]

    vec, model = _learner(pool, settings, seed, hidden)
    if start is not None:
        model.policy.load_state_dict(start.state_dict(), strict=True)
    policy = Policy(int(np.prod(obs_shape)), n_actions, hidden)
    curve: list[tuple[int, float]] = []

    def record(at: int) -> float:
        policy.load_state_dict(model.policy.state_dict(), strict=True)
        value = mean_return(policy, target, episodes=eval_episodes, seed=10_000 + int(seed))
        curve.append((at, value))
        return value

    stop = [False]
    actor = [*model.policy.mlp_extractor.policy_net.parameters(), *model.policy.action_net.parameters()]

    class _Eval(BaseCallback):
        """Records the return at the start of a rollout: the policy has then learnt from every
        interaction counted so far. Once ``stop_at`` is reached the next step ends learning."""

        def __init__(self) -> None:
            super().__init__()
            self.next_at = eval_every

        def _on_rollout_start(self) -> None:
            at = self.num_timesteps
            for p in actor:  # the update after this rollout touches the actor only after the warm-up
                p.requires_grad_(at + settings.rollout > critic_warmup)
            if eval_every and at >= self.next_at and at > 0:
                while self.next_at <= at:
                    self.next_at += eval_every
                value = record(at)
                if stop_at is not None and value >= stop_at:
                    stop[0] = True

        def _on_step(self) -> bool:
            return not stop[0]

    t0 = time.perf_counter()
    if eval_every and record(0) >= (np.inf if stop_at is None else stop_at):
        vec.close()
        return TrainResult(policy, curve, 0, time.perf_counter() - t0)
    model.learn(int(timesteps), callback=_Eval())
    vec.close()
    if stop[0]:  # learning ended before another update: ``policy`` holds the weights just recorded
        return TrainResult(policy, curve, curve[-1][0], time.perf_counter() - t0)
    record(int(model.num_timesteps))
    return TrainResult(policy, curve, int(model.num_timesteps), time.perf_counter() - t0)
