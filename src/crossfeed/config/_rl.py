"""RL experiments as data: ``kind: rl`` YAML configs for the cycle on environment variants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossfeed.config._config import _build
from crossfeed.exceptions import UnknownNameError, ValidationError

__all__ = ["RLExperimentConfig", "rl_config_from_dict"]


@dataclass(frozen=True)
class RLExperimentConfig:
    """The RL cycle (:func:`crossfeed.rl.run_rl_cycle`) on one suite of environment variants, per seed.

    ``kind: rl`` tells it from a supervised experiment in ``crossfeed run``. ``suite``: a name in
    :data:`crossfeed.rl.RL_SUITES`. ``generations``: generations after generation 0 (pooled PPO).
    ``general_timesteps`` / ``expert_timesteps`` / ``episodes``: null takes the suite's budgets
    and evaluation episodes. ``expert_hidden``: hidden widths of smaller experts (null: copies of
    the general policy). ``ppo``: overrides of the suite's :class:`crossfeed.rl.PPOSettings`;
    ``distill``: of :class:`crossfeed.rl.DistillSettings`. Checked when the config loads.

    Example
    -------
    >>> cfg = rl_config_from_dict({"kind": "rl", "suite": "cartpole", "ppo": {"learning_rate": 3e-4}})
    >>> cfg.suite, cfg.seeds, cfg.ppo
    ('cartpole', [0], {'learning_rate': 0.0003})
    """

    name: str = "rl"
    kind: str = "rl"
    suite: str = "cartpole"
    seeds: list[int] = field(default_factory=lambda: [0])
    generations: int = 1
    general_timesteps: int | None = None
    expert_timesteps: int | None = None
    episodes: int | None = None
    expert_hidden: list[int] | None = None
    ppo: dict[str, Any] = field(default_factory=dict)
    distill: dict[str, Any] = field(default_factory=dict)

    def settings(self, seed: int) -> dict[str, Any]:
        """The keyword arguments of :func:`crossfeed.rl.run_rl_cycle` for ``seed`` (and its suite)."""
        from crossfeed.rl import DistillSettings, PPOSettings, load_rl_suite

        suite = load_rl_suite(self.suite, seed=seed)
        return {"suite": suite, "generations": self.generations, "seed": seed,
                "general_timesteps": self.general_timesteps, "expert_timesteps": self.expert_timesteps,
                "ppo": PPOSettings.of({**dict(suite.ppo), **self.ppo}), "distill": DistillSettings(**self.distill),
                "episodes": self.episodes,
                "expert_hidden": None if self.expert_hidden is None else tuple(self.expert_hidden)}


def rl_config_from_dict(data: Any, *, source: str = "config") -> RLExperimentConfig:
    """Build an :class:`RLExperimentConfig` from plain data, checking keys, types, names and settings."""
    config = _build(RLExperimentConfig, data, source)
    _check(config, source)
    return config


def _check(c: RLExperimentConfig, source: str) -> None:
    from crossfeed.rl import RL_SUITES, DistillSettings

    if c.kind != "rl":
        raise ValidationError(f"{source}: kind must be 'rl' for an RL experiment; got {c.kind!r}")
    try:
        RL_SUITES.get(c.suite)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{source}: suite: {exc.args[0]}") from None
    if not c.seeds or len(set(c.seeds)) != len(c.seeds):
        raise ValidationError(f"{source}: seeds must be a non-empty list of distinct integers; got {c.seeds}")
    if c.generations < 0:
        raise ValidationError(f"{source}: generations must be >= 0 (0: pooled PPO only); got {c.generations}")
    for key in ("general_timesteps", "expert_timesteps", "episodes"):
        value = getattr(c, key)
        if value is not None and value < 1:
            raise ValidationError(f"{source}: {key} must be >= 1 or null (the suite's); got {value}")
    if c.expert_hidden is not None and (not c.expert_hidden or any(w < 1 for w in c.expert_hidden)):
        raise ValidationError(f"{source}: expert_hidden must be a non-empty list of widths >= 1 or null; "
                              f"got {c.expert_hidden}")
    try:
        c.settings(c.seeds[0])  # the PPO overrides against the suite's settings
        DistillSettings(**c.distill)
    except TypeError as exc:
        raise ValidationError(f"{source}: distill: {exc} (keys of crossfeed.rl.DistillSettings)") from None
    except ValidationError as exc:
        raise ValidationError(f"{source}: {exc}") from None
