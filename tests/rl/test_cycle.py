"""The RL cycle on a tiny suite: files per generation, every policy on every variant, a JSON that round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.rl import RLCycle, load_policy, run_rl_cycle  # noqa: E402
from tests.rl.conftest import tiny_suite  # noqa: E402

VARIANTS = ["default", "long", "longer-weak"]


def same_outputs(a, b) -> bool:
    obs = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32))
    with torch.no_grad():
        return all(torch.equal(x, y) for x, y in zip(a(obs), b(obs)))


def test_files_per_generation(cycle_run):
    _, out, _ = cycle_run
    assert sorted(p.name for p in (out / "generation-0").iterdir()) == ["general.json", "general.safetensors"]
    assert sorted(p.name for p in (out / "generation-1").iterdir()) == [
        "expert-default.json", "expert-default.safetensors", "expert-long.json", "expert-long.safetensors",
        "general.json", "general.safetensors"]
    assert (out / "rl-cycle.json").is_file()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left
    meta = json.loads((out / "generation-1" / "expert-long.json").read_text())["meta"]
    assert meta == {"suite": "tiny", "seed": 1, "generation": 1, "model": "expert:long"}


def test_json_round_trips(cycle_run):
    cycle, out, _ = cycle_run
    data = json.loads((out / "rl-cycle.json").read_text())
    back = RLCycle.from_dict(data)
    assert back.to_dict() == data
    assert data == json.loads(json.dumps(cycle.to_dict()))
    np.testing.assert_array_equal(back.general_returns(), cycle.general_returns())
    assert (back.suite, back.seed, back.train, back.held_out) == ("tiny", 1, ["default", "long"], ["longer-weak"])
    assert back.settings["generations"] == 1
    assert [v["name"] for v in back.settings["variants"]] == VARIANTS


def test_every_policy_on_every_variant(cycle_run):
    cycle, _, _ = cycle_run
    assert cycle.variants == VARIANTS
    assert [g.generation for g in cycle.generations] == [0, 1]
    assert set(cycle.generations[0].returns) == {"general"}
    assert set(cycle.generations[1].returns) == {"general", "expert:default", "expert:long"}
    for g in cycle.generations:
        for label, row in g.returns.items():
            assert sorted(row) == sorted(VARIANTS), (g.generation, label)
            assert all(np.isfinite(list(row.values())))
    assert cycle.general_returns().shape == (2, 3)
    assert cycle.generations[0].interactions == {"general": 2048}
    # experts: one PPO update each; the general policy: 2 distillation iterations x 2 variants x 500 states
    assert cycle.generations[1].interactions == {"expert:default": 512, "expert:long": 512, "general": 2000}


def test_policies_are_kept_and_saved(cycle_run):
    cycle, out, lines = cycle_run
    assert set(cycle.policies) == {"general", "general@0", "expert:default", "expert:long"}
    assert same_outputs(cycle.policies["general"], load_policy(out / "generation-1" / "general"))
    assert same_outputs(cycle.policies["general@0"], load_policy(out / "generation-0" / "general"))
    assert same_outputs(cycle.policies["expert:default"], load_policy(out / "generation-1" / "expert-default"))
    # distillation changed the general policy; the experts moved away from it and from each other
    assert not same_outputs(cycle.policies["general"], cycle.policies["general@0"])
    assert not same_outputs(cycle.policies["expert:default"], cycle.policies["general@0"])
    assert not same_outputs(cycle.policies["expert:default"], cycle.policies["expert:long"])
    assert lines[0].startswith("generation 0: PPO on 2 pooled variants")
    assert len(lines) == 4


def test_recorded_returns_are_the_policies_returns(cycle_run):
    from crossfeed.rl import mean_return

    cycle, _, _ = cycle_run
    suite = tiny_suite()
    last = cycle.generations[-1]
    for v in suite.variants:
        assert last.returns["general"][v.name] == mean_return(cycle.policies["general"], v, episodes=3, seed=20_001)


@pytest.mark.parametrize("generations", [-1, 1.5, "2"])
def test_bad_generations(generations):
    with pytest.raises(ValidationError, match="generations must be an int >= 0"):
        run_rl_cycle(tiny_suite(), generations=generations)


@pytest.mark.parametrize("generations", [True])
def test_a_bool_is_not_a_generation_count(generations):
    with pytest.raises(ValidationError, match="generations must be an int >= 0"):
        run_rl_cycle(tiny_suite(), generations=generations)


def test_small_experts_are_distilled_from_the_general_policy_then_specialised(tmp_path):
    from crossfeed.rl import DistillSettings, load_policy

    cycle = run_rl_cycle(tiny_suite(), generations=1, seed=0, general_timesteps=1024, expert_timesteps=512,
                         distill=DistillSettings(iterations=1, steps_per_variant=256, epochs=1),
                         expert_hidden=(16,), out_dir=tmp_path)
    general = cycle.policies["general"]
    for name in ("default", "long"):
        expert = cycle.policies[f"expert:{name}"]
        assert expert.hidden == (16,) and general.hidden == (64, 64)
        assert load_policy(tmp_path / "generation-1" / f"expert-{name}").hidden == (16,)
        # the distillation that shrank it spent interactions too, and they are counted
        assert cycle.generations[1].interactions[f"expert:{name}"] > 512
    assert cycle.settings["expert_hidden"] == [16]
