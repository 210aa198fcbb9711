import json

import pytest
from typer.testing import CliRunner

from crossfeed.cli import app
from crossfeed.experiments import run_demo


def test_demo_writes_every_output(tmp_path):
    result = run_demo(tmp_path, n_per_domain=200, epochs=2, spawn=False, feedback=True)
    names = [r["name"] for r in result.records]
    assert names == ["large_cnn", "tiny_cnn", "mlp", "logistic", "mean", "weighted", "caruana", "stacking", "cascade",
                     "cascade_certified", "router"]
    data = json.loads((tmp_path / "results.json").read_text())
    for rec in data["records"]:
        assert {"accuracy", "nll", "ece", "flops_per_sample", "latency_batch1_s", "latency_batch256_s", "domains"} <= set(rec)
        assert set(rec["domains"]) == {"default", "noisy", "sheared", "shifted", "scaled"}
    assert (tmp_path / "report.md").read_text().startswith("# crossfeed demo")
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "Cascade" in html
    assert 0 <= data["cascade"]["escalation_rate"] <= 1
    cycle = data["cycle"]
    assert [g["generation"] for g in cycle["generations"]] == [0, 1, 2]  # the feedback step and a second generation
    assert set(cycle["generations"][2]["accuracy"]) == {"large", "served", "expert:noisy", "expert:sheared", "expert:shifted",
                                                        "expert:scaled"}
    assert "multi_teacher_kd" in cycle["generations"][1]["compare"]
    assert (tmp_path / "heatmap_seed0.png").stat().st_size > 0 and (tmp_path / "absorption.png").exists()
    assert "Every model on every domain" in (tmp_path / "report.md").read_text()


def test_examples_demo_yaml_is_the_demo_cycle():
    from pathlib import Path

    from crossfeed.experiments import config_from_dict, load_config
    from crossfeed.experiments._demo import DEMO_CYCLE, demo_cycle_config

    example = load_config(Path(__file__).parents[2] / "examples" / "demo.yaml")
    assert example == config_from_dict(DEMO_CYCLE) == demo_cycle_config()


def test_cli_demo_and_bad_device(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), "--n-per-domain", "200", "--epochs", "1", "--no-spawn", "--no-feedback"])
    assert res.exit_code == 0, res.output
    assert "cascade" in res.output and (tmp_path / "o" / "report.html").exists()
    bad = runner.invoke(app, ["demo", "--device", "tpu"])
    assert bad.exit_code == 2 and "error: device must be 'cpu', 'cuda', 'cuda:N' or 'auto'" in bad.output


@pytest.mark.slow
def test_full_demo_meets_the_issue_criteria(tmp_path):
    """The default demo: weighted and stacked ensembles at or above the best single member."""
    result = run_demo(tmp_path, spawn=False)
    best_member = max(r["accuracy"] for r in result.records if r["kind"] == "member")
    assert result.record("weighted")["accuracy"] >= best_member
    assert result.record("stacking")["accuracy"] >= best_member
    assert result.cascade["flops_fraction"] < 1.0
    assert result.cascade["cost_to_match_flops_fraction"] is not None
