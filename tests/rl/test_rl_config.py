"""RL experiments from YAML (``kind: rl``): checked when they load, run by ``crossfeed run``."""

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

from typer.testing import CliRunner  # noqa: E402

from crossfeed.cli import app  # noqa: E402
from crossfeed.config import RLExperimentConfig, load_config, rl_config_from_dict  # noqa: E402
from crossfeed.exceptions import UnknownNameError, ValidationError  # noqa: E402

EXAMPLE = Path(__file__).parents[2] / "examples" / "rl-cartpole.yaml"
TINY = {"kind": "rl", "name": "tiny-rl", "suite": "cartpole", "seeds": [1], "generations": 1,
        "general_timesteps": 2048, "expert_timesteps": 512, "episodes": 2,
        "ppo": {"n_envs": 4, "n_steps": 128}, "distill": {"iterations": 1, "steps_per_variant": 256, "epochs": 1}}


def test_the_example_loads_as_an_rl_experiment():
    config = load_config(EXAMPLE)
    assert isinstance(config, RLExperimentConfig) and config.suite == "cartpole" and config.seeds == [0, 1, 2]
    settings = config.settings(0)
    assert settings["distill"].iterations == 6 and settings["ppo"].hidden == settings["suite"].ppo.get("hidden", (64, 64))


@pytest.mark.parametrize("change, error, match", [
    ({"suite": "cartpol"}, UnknownNameError, "did you mean 'cartpole'"),
    ({"ppo": {"learnig_rate": 1e-3}}, ValidationError, "unknown PPO settings \\['learnig_rate'\\]"),
    ({"distill": {"iters": 2}}, ValidationError, "distill: .*iters"),
    ({"generations": -1}, ValidationError, "generations must be >= 0"),
    ({"expert_timesteps": 0}, ValidationError, "expert_timesteps must be >= 1"),
    ({"seeds": []}, ValidationError, "non-empty list"),
    ({"kind": "rl", "episodes": "many"}, ValidationError, "expected an integer"),
    ({"gamma": 0.9}, ValidationError, "unknown key 'gamma'"),
])
def test_bad_rl_configs_name_the_problem(change, error, match):
    with pytest.raises(error, match=match):
        rl_config_from_dict({**TINY, **change})


def test_crossfeed_run_runs_the_rl_cycle_of_a_config(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(TINY))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "mean return per variant" in res.output and "general" in res.output
    result = json.loads((tmp_path / "out" / "rl-results.json").read_text())
    (seed,) = result["seeds"]
    assert seed["seed"] == 1 and [g["generation"] for g in seed["generations"]] == [0, 1]
    last = result["summary"]["gen-1"]
    assert set(last) >= {"general", *(f"expert:{v}" for v in seed["train"])}
    assert last["general"]["default"]["median"] == seed["generations"][1]["returns"]["general"]["default"]
    assert (tmp_path / "out" / "seed-1" / "rl-report.md").exists()
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["suite"] == "cartpole"
    bad = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "o2"), "--until", "0"])
    assert bad.exit_code == 2 and "drop --device and --until" in _flat(bad.output)
    report = CliRunner().invoke(app, ["report", str(tmp_path / "out")])
    assert report.exit_code == 2 and "is an RL experiment" in _flat(report.output)
    (tmp_path / "supervised").mkdir()
    (tmp_path / "supervised" / "results.json").write_text("{}")
    taken = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "supervised")])
    assert taken.exit_code == 2 and "holds a supervised experiment's results" in _flat(taken.output)


def _flat(text: str) -> str:
    """The console wraps long lines where a space was (where depends on the length of the temporary
    path): one space between words again."""
    return " ".join(text.split())
