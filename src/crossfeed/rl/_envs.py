"""Environment variants as industries: one gymnasium environment family, its physics changed.

An :class:`EnvVariant` is one "industry": a gymnasium id plus physics parameters (CartPole's pole
length, Acrobot's link masses, ...). A :class:`VariantSuite` is the RL counterpart of a
``DomainSuite``: the variants the large (general) policy learns from, the held-out variants it must
adapt to, and a seed. Parameters are checked against known ranges before any environment is built.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfeed.exceptions import UnknownNameError, ValidationError, missing_dependency

__all__ = [
    "PHYSICS",
    "EnvVariant",
    "PhysicsParam",
    "VariantSuite",
    "discrete_actions",
    "make_env",
]


def gym() -> Any:
    """The gymnasium module, or an error with the install line."""
    try:
        import gymnasium
    except ImportError:
        raise missing_dependency("gymnasium", "rl") from None
    return gymnasium


@dataclass(frozen=True)
class PhysicsParam:
    """One physics parameter of an environment family: where it lives and what values make sense.

    ``attribute`` is the attribute of the unwrapped environment; ``low`` / ``high`` bound the values
    for which the environment still behaves (and the solver stays stable).
    """

    attribute: str
    low: float
    high: float
    default: float


def _cartpole_derived(env: Any) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


# family id -> (parameters, hook that recomputes derived quantities after setting them)
PHYSICS: dict[str, tuple[dict[str, PhysicsParam], Callable[[Any], None] | None]] = {
    "CartPole-v1": (
        {
            "gravity": PhysicsParam("gravity", 1.0, 30.0, 9.8),
            "masscart": PhysicsParam("masscart", 0.1, 10.0, 1.0),
            "masspole": PhysicsParam("masspole", 0.01, 5.0, 0.1),
            "length": PhysicsParam("length", 0.05, 5.0, 0.5),  # half the pole's length
            "force_mag": PhysicsParam("force_mag", 1.0, 50.0, 10.0),
        },
        _cartpole_derived,
    ),
    "Acrobot-v1": (
        {
            "link_mass_1": PhysicsParam("LINK_MASS_1", 0.2, 5.0, 1.0),
            "link_mass_2": PhysicsParam("LINK_MASS_2", 0.2, 5.0, 1.0),
            "link_length_1": PhysicsParam("LINK_LENGTH_1", 0.3, 3.0, 1.0),
            "link_length_2": PhysicsParam("LINK_LENGTH_2", 0.3, 3.0, 1.0),
        },
        None,
    ),
    "MountainCar-v0": (
        {
            "force": PhysicsParam("force", 0.0003, 0.005, 0.001),
            "gravity": PhysicsParam("gravity", 0.0005, 0.006, 0.0025),
        },
        None,
    ),
    "Pendulum-v1": (
        {
            "g": PhysicsParam("g", 1.0, 25.0, 10.0),
            "m": PhysicsParam("m", 0.2, 3.0, 1.0),
            "l": PhysicsParam("l", 0.3, 3.0, 1.0),
        },
        None,
    ),
}

# Continuous-action families get a discrete action wrapper: crossfeed.rl's policies are categorical.
_DISCRETISE = {"Pendulum-v1": 5}
# Families whose observations are rescaled from their Box bounds to [-1, 1]. MountainCar's velocity
# spans +-0.07 against the position's 1.8: measured here, PPO from scratch never rose above -200
# in 300k interactions on the raw observations and reached -110.7 after 196k rescaled (seed 0).
_RESCALE = frozenset({"MountainCar-v0"})


@dataclass(frozen=True)
class EnvVariant:
    """One industry of an RL suite: an environment family with changed physics.

    Parameters
    ----------
    env_id : a gymnasium id (``"CartPole-v1"``, ``"Acrobot-v1"``, ...).
    params : physics parameters by name (see ``PHYSICS[env_id]``); missing ones keep their default.
    name : the variant's name in reports (default: built from the parameters).
    """

    env_id: str
    params: Mapping[str, float] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(self.params))
        check_params(self.env_id, self.params)
        if not self.name:
            short = ",".join(f"{k}={v:g}" for k, v in sorted(self.params.items())) or "default"
            object.__setattr__(self, "name", f"{self.env_id.split('-')[0].lower()}[{short}]")

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "params": dict(self.params), "name": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvVariant:
        return cls(env_id=data["env_id"], params=dict(data.get("params", {})), name=data.get("name", ""))


def check_params(env_id: str, params: Mapping[str, Any]) -> None:
    """Raise a clear error for an unknown environment id, parameter or an out-of-range value."""
    if not isinstance(env_id, str) or not env_id:
        raise ValidationError(f"env_id must be a gymnasium id such as 'CartPole-v1', got {env_id!r}")
    known = gym().registry
    if env_id not in known:
        close = difflib.get_close_matches(env_id, list(known), n=3)
        raise UnknownNameError(
            f"gymnasium has no environment {env_id!r}"
            + (f"; did you mean one of {close}?" if close else "; see gymnasium.registry for the ids")
        )
    if env_id not in PHYSICS:
        if params:
            raise UnknownNameError(
                f"no physics parameters are known for {env_id!r}; known families: {sorted(PHYSICS)}. "
                "Register one with crossfeed.rl.PHYSICS[env_id] = ({name: PhysicsParam(...)}, None), "
                "or use the environment without params"
            )
        return
    spec, _ = PHYSICS[env_id]
    for name, value in params.items():
        if name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"{env_id} has no physics parameter {name!r}; expected one of {sorted(spec)}{hint}"
            )
        p = spec[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValidationError(f"{env_id} parameter {name!r} must be a number, got {value!r}")
        if not math.isfinite(float(value)) or not p.low <= float(value) <= p.high:
            raise ValidationError(
                f"{env_id} parameter {name!r} = {value!r} is out of range: expected a value in "
                f"[{p.low:g}, {p.high:g}] (default {p.default:g})"
            )


def discrete_actions(env: Any, n: int = 5) -> Any:
    """Wrap ``env`` so its 1-D continuous action (Pendulum's torque) becomes ``n`` evenly spaced
    discrete actions from the lowest to the highest value."""
    g = gym()
    box = env.action_space
    if not isinstance(box, g.spaces.Box) or box.shape != (1,):
        raise ValidationError(f"discrete_actions needs a 1-D Box action space, got {box}")
    if int(n) < 2:
        raise ValidationError(f"discrete_actions needs n >= 2 levels, got {n}")
    levels = np.linspace(box.low[0], box.high[0], int(n)).astype(np.float32)
    return g.wrappers.TransformAction(env, lambda a: np.array([levels[int(a)]], dtype=np.float32),
                                      g.spaces.Discrete(int(n)))


def make_env(variant: EnvVariant, seed: int | None = None) -> Any:
    """Build the gymnasium environment of ``variant`` with its physics set (the variant checked
    its id and parameters when it was created). Pendulum's torque comes as 5 discrete levels;
    MountainCar's observations come rescaled from their bounds to [-1, 1]."""
    g = gym()
    env = g.make(variant.env_id)
    if variant.env_id in PHYSICS:
        spec, derived = PHYSICS[variant.env_id]
        inner = env.unwrapped
        for name, value in variant.params.items():
            setattr(inner, spec[name].attribute, float(value))
        if derived is not None:
            derived(inner)
    if variant.env_id in _DISCRETISE:
        env = discrete_actions(env, _DISCRETISE[variant.env_id])
    if variant.env_id in _RESCALE:
        shape = env.observation_space.shape
        env = g.wrappers.RescaleObservation(env, -np.ones(shape, np.float32), np.ones(shape, np.float32))
    if not isinstance(env.action_space, g.spaces.Discrete):
        env.close()
        raise ValidationError(
            f"{variant.env_id} has action space {env.action_space}; crossfeed.rl's policies are "
            "categorical and need a Discrete action space (wrap the environment, e.g. DiscreteTorque)"
        )
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
    return env


@dataclass(frozen=True)
class VariantSuite:
    """The RL counterpart of a ``DomainSuite``: train variants, held-out variants, a seed.

    Every variant shares one observation and action space (checked on creation), so one policy can
    act in all of them. ``ppo`` holds the family's PPO settings (keyword arguments of
    :class:`PPOSettings`), ``budgets`` its default interaction budgets (``general``, ``expert``,
    ``scratch``, ``adapt``, ``meta_inner``, ``meta_iterations``, ``eval_every``) and
    ``target_return`` the return adaptation is timed to (None: set by the caller).
    """

    name: str
    train: tuple[EnvVariant, ...]
    held_out: tuple[EnvVariant, ...] = ()
    seed: int = 0
    ppo: Mapping[str, Any] = field(default_factory=dict)
    budgets: Mapping[str, int] = field(default_factory=dict)
    target_return: float | None = None
    eval_episodes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "held_out", tuple(self.held_out))
        if not self.train:
            raise ValidationError(f"suite {self.name!r} needs at least one train variant, got none")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValidationError(f"suite {self.name!r} has variants with the same name: {dupes}; name them apart")
        obs, act = self.spaces()
        for v in self.variants[1:]:
            env = make_env(v)
            try:
                if env.observation_space.shape != obs or env.action_space.n != act:
                    raise ValidationError(
                        f"variant {v.name!r} has observations {env.observation_space.shape} and "
                        f"{env.action_space.n} actions; the suite's first variant has {obs} and {act}"
                    )
            finally:
                env.close()

    @property
    def variants(self) -> tuple[EnvVariant, ...]:
        return self.train + self.held_out

    def spaces(self) -> tuple[tuple[int, ...], int]:
        """(observation shape, number of actions) shared by every variant."""
        env = make_env(self.train[0])
        try:
            return tuple(env.observation_space.shape), int(env.action_space.n)
        finally:
            env.close()

    def variant(self, name: str) -> EnvVariant:
        for v in self.variants:
            if v.name == name:
                return v
        raise UnknownNameError(f"suite {self.name!r} has no variant {name!r}; it has {[v.name for v in self.variants]}")

    def budget(self, key: str, default: int) -> int:
        return int(self.budgets.get(key, default))


def _variants(env_id: str, rows: Sequence[tuple[str, Mapping[str, float]]]) -> tuple[EnvVariant, ...]:
    return tuple(EnvVariant(env_id, params, name=name) for name, params in rows)
