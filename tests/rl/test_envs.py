"""Environment variants: physics really changed, derived quantities recomputed, clear errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import gymnasium  # noqa: E402

from crossfeed.exceptions import UnknownNameError, ValidationError  # noqa: E402
from crossfeed.rl import PHYSICS, EnvVariant, VariantSuite, discrete_actions, make_env  # noqa: E402


def rollout(variant: EnvVariant, actions, seed: int = 3) -> np.ndarray:
    """The observations after reset(seed) and each of ``actions`` (stops at the end of the episode)."""
    env = make_env(variant)
    try:
        obs, _ = env.reset(seed=seed)
        seen = [obs]
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(int(a))
            seen.append(obs)
            if terminated or truncated:
                break
        return np.array(seen, dtype=np.float64)
    finally:
        env.close()


CARTPOLE_ACTIONS = [0, 1, 1, 0, 1, 0, 0, 1]
ACROBOT_ACTIONS = [0, 2, 2, 0, 1, 2, 0, 0]
PENDULUM_ACTIONS = [0, 4, 4, 2, 0, 1, 3, 4]
MOUNTAINCAR_ACTIONS = [2] * 10


@pytest.mark.parametrize(
    ("env_id", "params", "actions"),
    [
        ("CartPole-v1", {"length": 2.0}, CARTPOLE_ACTIONS),
        ("CartPole-v1", {"masscart": 3.0}, CARTPOLE_ACTIONS),
        ("CartPole-v1", {"force_mag": 4.0}, CARTPOLE_ACTIONS),
        ("CartPole-v1", {"gravity": 20.0}, CARTPOLE_ACTIONS),
        ("Acrobot-v1", {"link_mass_1": 2.0}, ACROBOT_ACTIONS),
        ("Acrobot-v1", {"link_mass_2": 2.0}, ACROBOT_ACTIONS),
        ("Acrobot-v1", {"link_length_1": 1.5}, ACROBOT_ACTIONS),
        ("Pendulum-v1", {"g": 20.0}, PENDULUM_ACTIONS),
        ("Pendulum-v1", {"m": 2.0}, PENDULUM_ACTIONS),
        ("MountainCar-v0", {"force": 0.003}, MOUNTAINCAR_ACTIONS),
        ("MountainCar-v0", {"gravity": 0.005}, MOUNTAINCAR_ACTIONS),
    ],
)
def test_changed_physics_changes_the_dynamics(env_id, params, actions):
    default = rollout(EnvVariant(env_id), actions)
    changed = rollout(EnvVariant(env_id, params), actions)
    np.testing.assert_array_equal(default[0], changed[0])  # same seed: same start
    assert len(changed) > 1
    assert not np.allclose(default[: len(changed)], changed[: len(default)]), f"{params} left {env_id} unchanged"
    # ...and the parameter set to its default value is no change at all
    (name, _), = params.items()
    same = rollout(EnvVariant(env_id, {name: PHYSICS[env_id][0][name].default}), actions)
    np.testing.assert_array_equal(default, same)


def plain_rollout(env_id: str, actions, seed: int = 3):  # type: ignore[no-untyped-def]
    """The observations of gymnasium's own environment (no crossfeed wrapper) and its observation space."""
    env = gymnasium.make(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        seen = [obs] + [env.step(a)[0] for a in actions]
        return np.array(seen, dtype=np.float64), env.observation_space
    finally:
        env.close()


def test_default_variant_is_the_plain_environment():
    plain, _ = plain_rollout("CartPole-v1", CARTPOLE_ACTIONS)
    np.testing.assert_array_equal(plain, rollout(EnvVariant("CartPole-v1"), CARTPOLE_ACTIONS))


def test_physics_attributes_are_set_on_the_unwrapped_env():
    env = make_env(EnvVariant("Acrobot-v1", {"link_mass_1": 0.5, "link_mass_2": 2.5}))
    assert (env.unwrapped.LINK_MASS_1, env.unwrapped.LINK_MASS_2) == (0.5, 2.5)
    env.close()
    env = make_env(EnvVariant("Pendulum-v1", {"g": 4.0, "l": 1.5}))
    assert (env.unwrapped.g, env.unwrapped.l, env.unwrapped.m) == (4.0, 1.5, 1.0)
    env.close()
    # a second env of the family keeps the defaults (instance attributes, not the class's)
    env = make_env(EnvVariant("Acrobot-v1"))
    assert env.unwrapped.LINK_MASS_1 == 1.0
    env.close()


def test_cartpole_derived_quantities_are_recomputed():
    env = make_env(EnvVariant("CartPole-v1", {"masspole": 1.0, "masscart": 3.0, "length": 2.0}))
    inner = env.unwrapped
    assert inner.total_mass == pytest.approx(4.0)
    assert inner.polemass_length == pytest.approx(2.0)
    env.close()
    default = make_env(EnvVariant("CartPole-v1")).unwrapped
    assert default.total_mass == pytest.approx(1.1)
    assert default.polemass_length == pytest.approx(0.05)


def test_pendulum_gets_discrete_torque():
    env = make_env(EnvVariant("Pendulum-v1"))
    assert env.action_space == gymnasium.spaces.Discrete(5)
    np.testing.assert_allclose([env.action(a)[0] for a in range(5)], [-2.0, -1.0, 0.0, 1.0, 2.0])
    env.close()
    # the torque reaches the pendulum: full left and full right part ways from the same start
    left = rollout(EnvVariant("Pendulum-v1"), [0] * 5)
    right = rollout(EnvVariant("Pendulum-v1"), [4] * 5)
    np.testing.assert_array_equal(left[0], right[0])
    assert not np.allclose(left[1:], right[1:])


def test_discrete_torque_wraps_any_box_action():
    wrapped = discrete_actions(gymnasium.make("Pendulum-v1"), n=3)
    assert wrapped.action_space == gymnasium.spaces.Discrete(3)
    assert wrapped.action(0).dtype == np.float32
    np.testing.assert_allclose([wrapped.action(a)[0] for a in range(3)], [-2.0, 0.0, 2.0])
    wrapped.close()


def test_make_env_seed_fixes_the_start():
    v = EnvVariant("CartPole-v1", {"length": 1.0})
    a, b = make_env(v, seed=7), make_env(v, seed=7)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    a.close()
    b.close()


def test_variant_names_and_round_trip():
    v = EnvVariant("CartPole-v1", {"length": 2.0, "force_mag": 5})
    assert v.name == "cartpole[force_mag=5,length=2]"
    assert EnvVariant("Acrobot-v1").name == "acrobot[default]"
    assert EnvVariant.from_dict(v.to_dict()) == v
    named = EnvVariant("CartPole-v1", {"length": 2.0}, name="long-pole")
    assert EnvVariant.from_dict(named.to_dict()) == named


# ----------------------------------------------------------------------------- bad input


def test_unknown_environment_id_suggests_a_close_one():
    with pytest.raises(UnknownNameError, match=r"gymnasium has no environment 'CartPol-v1'; did you mean .*'CartPole-v1'"):
        EnvVariant("CartPol-v1")  # checked when the variant is created, before any environment is built


def test_params_for_a_family_without_known_physics():
    with pytest.raises(UnknownNameError, match=r"no physics parameters are known for 'CartPole-v0'.*'CartPole-v1'"):
        EnvVariant("CartPole-v0", {"length": 2.0})
    with pytest.raises(UnknownNameError, match="no physics parameters are known for 'LunarLander-v3'"):
        EnvVariant("LunarLander-v3", {"gravity": -5.0})


def test_empty_env_id():
    with pytest.raises(ValidationError, match="env_id must be a gymnasium id"):
        EnvVariant("")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"length": 10.0}, r"'length' = 10.0 is out of range: expected a value in \[0.05, 5\] \(default 0.5\)"),
        ({"length": 0.0}, r"out of range: expected a value in \[0.05, 5\]"),
        ({"gravity": -9.8}, r"'gravity' = -9.8 is out of range: expected a value in \[1, 30\]"),
        ({"length": math.nan}, r"out of range"),
        ({"length": math.inf}, r"out of range"),
    ],
)
def test_parameter_out_of_range(params, fragment):
    with pytest.raises(ValidationError, match=fragment):
        EnvVariant("CartPole-v1", params)


def test_acrobot_and_pendulum_ranges():
    with pytest.raises(ValidationError, match=r"'link_mass_1' = 9.0 is out of range: expected a value in \[0.2, 5\]"):
        EnvVariant("Acrobot-v1", {"link_mass_1": 9.0})
    with pytest.raises(ValidationError, match=r"'g' = 0.5 is out of range: expected a value in \[1, 25\]"):
        EnvVariant("Pendulum-v1", {"g": 0.5})


def test_unknown_parameter_name_suggests_the_close_one():
    with pytest.raises(UnknownNameError, match=r"CartPole-v1 has no physics parameter 'lenght'.*did you mean 'length'\?"):
        EnvVariant("CartPole-v1", {"lenght": 1.0})
    with pytest.raises(UnknownNameError, match=r"did you mean 'link_mass_1'\?"):
        EnvVariant("Acrobot-v1", {"link_mass1": 1.0})


@pytest.mark.parametrize("value", ["long", None, True, [1.0]])
def test_non_numeric_parameter(value):
    with pytest.raises(ValidationError, match="parameter 'length' must be a number"):
        EnvVariant("CartPole-v1", {"length": value})


def test_numpy_numbers_are_accepted():
    v = EnvVariant("CartPole-v1", {"length": np.float32(2.0), "force_mag": np.int64(5)})
    assert make_env(v).unwrapped.length == 2.0


def test_continuous_actions_without_a_wrapper_are_refused():
    with pytest.raises(ValidationError, match="need a Discrete action space"):
        make_env(EnvVariant("MountainCarContinuous-v0"))


# ----------------------------------------------------------------------------- suites


def test_suite_shares_spaces():
    c = "CartPole-v1"
    suite = VariantSuite("two", train=(EnvVariant(c), EnvVariant(c, {"length": 2.0})),
                         held_out=(EnvVariant(c, {"gravity": 20.0}),))
    assert suite.spaces() == ((4,), 2)
    assert [v.name for v in suite.variants] == ["cartpole[default]", "cartpole[length=2]", "cartpole[gravity=20]"]
    assert suite.variant("cartpole[length=2]").params == {"length": 2.0}
    with pytest.raises(UnknownNameError, match="suite 'two' has no variant 'nope'"):
        suite.variant("nope")
    assert suite.budget("general", 123) == 123


def test_suite_mixing_families_is_refused():
    with pytest.raises(ValidationError, match=r"variant 'acrobot\[default\]' has observations \(6,\) and 3 actions; "
                                              r"the suite's first variant has \(4,\) and 2"):
        VariantSuite("mixed", train=(EnvVariant("CartPole-v1"),), held_out=(EnvVariant("Acrobot-v1"),))


def test_suite_with_duplicate_names_is_refused():
    c = "CartPole-v1"
    with pytest.raises(ValidationError, match=r"variants with the same name: \['same'\]"):
        VariantSuite("dupes", train=(EnvVariant(c, name="same"), EnvVariant(c, {"length": 2.0}, name="same")))
    with pytest.raises(ValidationError, match=r"same name: \['cartpole\[default\]'\]"):
        VariantSuite("dupes", train=(EnvVariant(c),), held_out=(EnvVariant(c),))


def test_suite_without_train_variants_is_refused():
    with pytest.raises(ValidationError, match="needs at least one train variant"):
        VariantSuite("empty", train=(), held_out=(EnvVariant("CartPole-v1"),))


def test_discrete_actions_refuses_what_it_cannot_discretise():
    with pytest.raises(ValidationError, match="needs a 1-D Box action space"):
        discrete_actions(gymnasium.make("CartPole-v1"))
    with pytest.raises(ValidationError, match="n >= 2 levels"):
        discrete_actions(gymnasium.make("Pendulum-v1"), n=1)


def test_mountaincar_observations_come_rescaled_to_minus_one_one():
    raw, space = plain_rollout("MountainCar-v0", MOUNTAINCAR_ACTIONS)
    env = make_env(EnvVariant("MountainCar-v0"))
    try:
        assert np.all(env.observation_space.low == -1) and np.all(env.observation_space.high == 1)
    finally:
        env.close()
    expected = 2 * (raw - space.low) / (space.high - space.low) - 1
    np.testing.assert_allclose(rollout(EnvVariant("MountainCar-v0"), MOUNTAINCAR_ACTIONS), expected, rtol=1e-5, atol=1e-6)
