"""Reptile: the outer update's exact maths, and a meta-initialisation better than where it started."""

from __future__ import annotations

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.rl import (  # noqa: E402
    EnvVariant,
    ReptileSettings,
    initial_policy,
    mean_return,
    reptile,
    reptile_step,
)

START_SEED = 1  # a fresh policy of this seed is poor on both train variants (mean return ~10)
META = ReptileSettings(meta_iterations=2, inner_timesteps=1024)


def test_reptile_step_exact():
    start = {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor([2.0])}
    adapted = [{"w": torch.tensor([2.0, 3.0]), "b": torch.tensor([4.0])},
               {"w": torch.tensor([4.0, -1.0]), "b": torch.tensor([0.0])}]
    new = reptile_step(start, adapted, 0.5)
    # w: [0, 1] + 0.5 * mean([2, 2], [4, -2]) = [0, 1] + 0.5 * [3, 0]; b: 2 + 0.5 * mean(2, -2)
    torch.testing.assert_close(new["w"], torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(new["b"], torch.tensor([2.0]))
    # the inputs are left alone
    torch.testing.assert_close(start["w"], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(adapted[0]["w"], torch.tensor([2.0, 3.0]))


def test_reptile_step_of_one_full_step_is_the_adapted_state():
    torch.manual_seed(0)
    start = {"a": torch.randn(3, 2), "c": torch.randn(4)}
    one = {"a": torch.randn(3, 2), "c": torch.randn(4)}
    new = reptile_step(start, [one], 1.0)
    for key in start:
        torch.testing.assert_close(new[key], one[key])
    small = reptile_step(start, [one], 0.1)
    for key in start:
        torch.testing.assert_close(small[key], start[key] + 0.1 * (one[key] - start[key]))


@pytest.mark.parametrize("step", [0.0, -0.5, 1.5])
def test_reptile_step_must_lie_in_0_1(step):
    s = {"w": torch.zeros(2)}
    with pytest.raises(ValidationError, match=rf"the Reptile step must lie in \(0, 1\], got {step}"):
        reptile_step(s, [s], step)


def test_reptile_step_needs_matching_states():
    s = {"w": torch.zeros(2)}
    with pytest.raises(ValidationError, match="reptile_step needs at least one adapted state"):
        reptile_step(s, [], 0.5)
    with pytest.raises(ValidationError, match="adapted states must have the same tensors as the start state"):
        reptile_step(s, [{"v": torch.zeros(2)}], 0.5)
    with pytest.raises(ValidationError, match="same tensors"):
        reptile_step(s, [s, {"w": torch.zeros(2), "extra": torch.zeros(1)}], 0.5)


# ----------------------------------------------------------------------------- reptile


@pytest.fixture(scope="module")
def train_variants():
    return [EnvVariant("CartPole-v1", name="default"), EnvVariant("CartPole-v1", {"length": 1.0}, name="long")]


@pytest.fixture(scope="module")
def meta_run(train_variants, ppo_settings):
    start = initial_policy(train_variants[0], ppo_settings, seed=START_SEED)
    snapshot = start.clone()
    return reptile(train_variants, start=start, settings=META, ppo=ppo_settings, seed=0), start, snapshot


def test_meta_init_beats_its_start(meta_run, train_variants):
    result, start, _ = meta_run
    changed = [not torch.equal(a, b) for a, b in zip(start.state_dict().values(), result.policy.state_dict().values())]
    assert any(changed)
    before = [mean_return(start, v, episodes=10) for v in train_variants]
    after = [mean_return(result.policy, v, episodes=10) for v in train_variants]
    # measured here: ~[9, 13] -> ~[170, 180]; with another seed of reptile ~[35, 45]
    assert sum(before) / 2 < 30
    assert sum(after) / 2 > sum(before) / 2 + 50, (before, after)
    assert all(a > b for a, b in zip(after, before))


def test_start_is_not_modified(meta_run):
    _, start, snapshot = meta_run
    for key, value in snapshot.state_dict().items():
        assert torch.equal(start.state_dict()[key], value), key


def test_log_and_interactions(meta_run, train_variants):
    result, _, _ = meta_run
    assert [row["step"] for row in result.log] == [1.0, 0.5]  # annealed linearly toward 0
    assert [sorted(row["tasks"]) for row in result.log] == [["default", "long"]] * 2  # every variant each iteration
    assert result.interactions == 2 * 2 * 1024
    assert [row["interactions"] for row in result.log] == [2048, 4096]


def test_tasks_per_iteration(train_variants, ppo_settings):
    result = reptile(train_variants, settings=ReptileSettings(meta_iterations=1, inner_timesteps=512, tasks_per_iteration=1),
                     ppo=ppo_settings, seed=0)
    assert len(result.log[0]["tasks"]) == 1
    assert result.interactions == 512
    with pytest.raises(ValidationError, match="tasks_per_iteration=3 but only 2 variants"):
        reptile(train_variants, settings=ReptileSettings(meta_iterations=1, inner_timesteps=512, tasks_per_iteration=3),
                ppo=ppo_settings)


def test_no_variants_is_refused():
    with pytest.raises(ValidationError, match="reptile needs at least one variant"):
        reptile([])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"meta_iterations": 0}, "meta_iterations >= 1.*got 0, 4096, 0"),
        ({"inner_timesteps": 0}, "inner_timesteps >= 1.*got 20, 0, 0"),
        ({"tasks_per_iteration": -1}, "tasks_per_iteration >= 0.*got 20, 4096, -1"),
        ({"meta_lr": 0.0}, r"meta_lr must lie in \(0, 1\], got 0.0"),
        ({"meta_lr": 1.5}, r"meta_lr must lie in \(0, 1\], got 1.5"),
    ],
)
def test_reptile_settings_out_of_range(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        ReptileSettings(**kwargs)


def test_reptile_step_needs_matching_shapes():
    start = {"w": torch.zeros(2, 2)}
    with pytest.raises(ValidationError, match=r"adapted tensors \['w'\] have other shapes"):
        reptile_step(start, [{"w": torch.zeros(3)}], 0.5)
