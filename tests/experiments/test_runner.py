"""``run_experiment`` and ``crossfeed run``: every seed's cycle, results JSON and the report."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from crossfeed.cli import app
from crossfeed.experiments import config_from_dict, run_experiment

TINY = {
    "name": "tiny-run",
    "seeds": [0, 1],
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 200, "domains": ["default", "noisy"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "tiny"}, "epochs": 6, "lr": 0.005, "patience": None},
    "experts": {"student": "cnn1d:tiny", "epochs": 2, "finetune_epochs": 2},
    "feedback": {"strategy": "multi_teacher_kd", "epochs": 2, "compare": [{"strategy": "data_feedback"}]},
    "generations": 1,
}


def test_run_experiment_writes_results_and_report(tmp_path):
    result = run_experiment(config_from_dict(TINY), tmp_path)
    assert len(result.cycles) == 2
    data = json.loads((tmp_path / "results.json").read_text())
    assert [s["seed"] for s in data["seeds"]] == [0, 1]
    summary = data["summary"]
    assert set(summary["large_accuracy"]) == {"gen-0", "gen-1"}
    assert set(summary["large_accuracy"]["gen-1"]) == {"default", "noisy"}
    report = (tmp_path / "report.md").read_text()
    assert "Every model on every domain" in report and "heatmap_seed0.png" in report
    for name in ("heatmap_seed0.png", "heatmap_seed1.png", "report.html", "config.yaml"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "seed-1" / "gen-001" / "large" / "model.safetensors").exists()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["name"] == "tiny-run"
    row = data["seeds"][0]["generations"][1]
    assert row["accuracy"]["large"].keys() == {"default", "noisy"}
    assert "data_feedback" in row["compare"]


def test_cli_run_and_its_errors(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "seeds": [0]}))
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "gen-1" in res.output and "absorption" in res.output
    assert "served model of each domain" in res.output and "fell by more than the margin" in res.output
    again = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])  # resumes: nothing to do
    assert again.exit_code == 0 and "resuming after generation 1" in again.output
    refused = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out"), "--no-resume"])
    assert refused.exit_code == 2 and "already holds this run" in refused.output
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY, "seeds": [0], "name": "other", "generations": 2}))
    clash = runner.invoke(app, ["run", str(other), "--out", str(tmp_path / "out")])
    assert clash.exit_code == 2 and "another experiment" in clash.output
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["name"] == "tiny-run"  # left as it was
    bad = tmp_path / "bad.yaml"
    bad.write_text("feedback: {strategy: multi_teacher}\n")
    res = runner.invoke(app, ["run", str(bad)])
    # the console wraps long messages: compare with the line breaks folded into spaces
    assert res.exit_code == 2 and "did you mean 'multi_teacher_kd'" in " ".join(res.output.split())


def test_a_run_that_failed_before_generation_0_does_not_lock_its_folder(tmp_path, monkeypatch):
    """Rule: a folder is bound to its config.yaml only once it holds a finished generation or results."""
    import pytest

    import crossfeed.cycle._cycle as cycle

    def fail(*args, **kwargs):
        raise RuntimeError("killed while training the large model")

    first = config_from_dict({**TINY, "seeds": [0], "name": "first", "large": {**TINY["large"], "epochs": 50}})
    with monkeypatch.context() as m:
        m.setattr(cycle, "_train_large", fail)
        with pytest.raises(RuntimeError, match="killed"):
            run_experiment(first, tmp_path)
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "seed-0" / "run.json").exists()
    second = config_from_dict({**TINY, "seeds": [0], "name": "second"})
    run_experiment(second, tmp_path)  # another config takes the folder over: nothing was finished
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["name"] == "second"
    assert (tmp_path / "seed-0" / "gen-001" / "generation.json").exists()
    # now it holds results: another config is refused, naming the keys that differ
    with pytest.raises(ValueError, match=r"another experiment \('second'.*differs from this one in: "
                                         r"large\.epochs, name\. Use another output folder"):
        run_experiment(first, tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["name"] == "second"


def test_an_unreadable_config_yaml_without_results_is_replaced(tmp_path):
    import pytest

    from crossfeed.experiments._runner import _claim

    (tmp_path / "config.yaml").write_text("feedback: {strategy: [")
    config = config_from_dict({**TINY, "seeds": [0]})
    _claim(tmp_path, config)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["name"] == "tiny-run"
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "config.yaml").write_text("feedback: {strategy: [")
    with pytest.raises(ValueError, match="holds results, but its config.yaml cannot be read"):
        _claim(tmp_path, config)
