"""The cycle's promise: served per-domain accuracy, field data that keeps arriving, and a lineage
that reproduces a generation exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossfeed.cycle import (
    data_sha256,
    load_served,
    reproduce_generation,
    run_cycle,
    weights_sha256,
)
from crossfeed.cycle._checkpoint import finished_generations
from crossfeed.evaluate import prediction_accuracy
from crossfeed.exceptions import EmptyDataError, ValidationError
from crossfeed.experiments import config_from_dict
from crossfeed.models import load_model

BASE = {
    "name": "served",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 600, "domains": ["default", "noisy", "shifted"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "small"}, "epochs": 12, "lr": 0.005, "patience": None},
    "experts": {"method": "finetune", "finetune_epochs": 8},
    "feedback": {"strategy": "data_feedback", "kwargs": {"threshold": 0.5}, "epochs": 3},
    "gate": {"margin": 0.02, "resamples": 500},
    "generations": 2,
}
NO_GATE = {"test": "none", "route": False, "holdout": 0.0, "advance": "all"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_suite):
    root = tmp_path_factory.mktemp("served") / "seed-0"
    return root, run_cycle(config_from_dict(BASE), seed=0, out=root)


def test_served_accuracy_never_falls_beyond_the_margin_when_feedback_destroys_the_large_model(sabotage):
    harmful = {**BASE, "generations": 1, "feedback": {"strategy": sabotage, "epochs": 6, "lr": 0.01}}
    gated = run_cycle(config_from_dict(harmful), seed=0)
    ungated = run_cycle(config_from_dict({**harmful, "gate": NO_GATE}), seed=0)
    assert gated.falls("served", margin=0.02) == []
    assert len(ungated.falls("served", margin=0.02)) == 3  # without the gate every domain falls
    g1 = gated.generations[1]
    assert not any(d["chosen"] and d["candidate"] == "large g1" for d in g1.decisions)
    assert {d["purpose"] for d in g1.decisions} == {"serve"} and all(d["p_value"] is not None for d in g1.decisions)
    assert not g1.accepted  # the wrecked large model does not go on either


def test_each_domain_is_answered_by_the_model_the_gate_chose(run):
    root, result = run
    last = result.generations[-1]
    router = load_served(root)
    suite = _suite()
    for d in suite:
        ref = last.served[d.name]
        assert router.labels[d.name] == ref["label"]
        model = load_model(root / ref["path"])
        assert np.array_equal(router.predict(d.X_test, domain=d.name), model.predict(d.X_test))
        assert last.accuracy["served"][d.name] == prediction_accuracy(model, d.X_test, d.y_test)
    X = np.concatenate([d.X_test[:5] for d in suite])
    names = np.repeat(suite.names, 5)
    assert np.array_equal(router.predict(X, domain=names),
                          np.concatenate([router.predict(d.X_test[:5], domain=d.name) for d in suite]))
    with pytest.raises(ValidationError, match="unknown domains"):
        router.predict(X[:2], domain="nowhere")
    # an expert that leads its domain on the gate data by far is certified and serves it
    assert any(ref["label"].startswith("expert:") for ref in last.served.values())


def test_lineage_reproduces_the_last_generation_exactly(run):
    root, result = run
    lineage = result.generations[2].lineage
    assert lineage["parent"]["label"] in {"large g0", "large g1"}
    assert set(lineage["field"]) == {"noisy", "shifted"}
    assert lineage["field"]["noisy"]["samples"] == result.generations[2].field_samples["noisy"]
    large, experts = reproduce_generation(root, 2)
    assert weights_sha256(large) == lineage["candidate"]["sha256"]
    assert {d: weights_sha256(m) for d, m in experts.items()} == lineage["expert_sha256"]


def test_the_lineage_check_catches_another_parent(run, tmp_path):
    import shutil

    root, result = run
    copy = tmp_path / "seed-0"
    shutil.copytree(root, copy)
    parent = result.generations[2].lineage["parent"]["path"]
    other = "gen-001/experts/noisy" if parent != "gen-001/experts/noisy" else "gen-000/large"
    shutil.rmtree(copy / parent)
    shutil.copytree(copy / other, copy / parent)  # a different model where the parent was
    with pytest.raises(Exception, match="not the parent"):
        reproduce_generation(copy, 2)


def _suite():
    from crossfeed.data import load_suite

    return load_suite("mnist1d", seed=0, **BASE["suite"]["kwargs"])


def _batches(suite, rng, names, n=40):
    out = {}
    for name in names:
        d = suite[name]
        rows = rng.choice(len(d.X_field), n, replace=False)
        out[name] = (d.X_field[rows], d.y_field[rows])
    return out


def test_a_domain_can_join_later_and_its_data_is_hashed_into_the_lineage():
    suite = _suite()
    rng = np.random.default_rng(0)
    stream = [_batches(suite, rng, ["noisy"]), _batches(suite, rng, ["noisy", "shifted"])]
    result = run_cycle(config_from_dict(BASE), seed=0, suite=suite, field=stream)
    g1, g2 = result.generations[1], result.generations[2]
    assert set(g1.lineage["expert_sha256"]) == {"noisy"} and set(g2.lineage["expert_sha256"]) == {"noisy", "shifted"}
    assert g2.lineage["field"]["shifted"]["joined"] == 2 and g2.lineage["field"]["noisy"]["joined"] == 1
    X = np.concatenate([stream[0]["noisy"][0], stream[1]["noisy"][0]])
    y = np.concatenate([stream[0]["noisy"][1], stream[1]["noisy"][1]])
    assert g2.lineage["field"]["noisy"]["sha256"] == data_sha256(X, y)
    assert g2.field_samples == {"noisy": 80, "shifted": 40}
    assert g1.served["shifted"]["label"] in {"large g0", "large g1"}  # no expert yet: a large model answers


def test_bad_field_batches_are_refused_and_earlier_generations_are_kept(tmp_path):
    suite = _suite()
    rng = np.random.default_rng(0)
    good = _batches(suite, rng, ["noisy", "shifted"])
    X, y = good["noisy"]
    cases = [
        ({**good, "noisy": (X[:, :-1], y)}, "samples of shape"),
        ({**good, "noisy": (X, np.full(len(X), 99))}, r"labels \[99\] are not among"),
        ({**good, "noisy": (np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y)}, "NaN"),
        ({"shifted": good["shifted"]}, r"no batch for \['noisy'\]"),          # noisy vanished
        ({"elsewhere": good["noisy"], **good}, "no expert in this cycle"),
    ]
    for k, (second, message) in enumerate(cases):
        root = tmp_path / f"run{k}"
        with pytest.raises(ValidationError, match=message):
            run_cycle(config_from_dict(BASE), seed=0, out=root, suite=suite, field=[good, second])
        assert finished_generations(root) == [0, 1]  # generation 1 is intact; nothing of generation 2 written
        assert not list(root.glob(".gen-*.tmp"))
    with pytest.raises(EmptyDataError, match="ended after 1 generations"):
        run_cycle(config_from_dict(BASE), seed=0, suite=suite, field=[good])


def test_field_data_from_a_folder_and_a_resume_that_sees_other_data(tmp_path):
    suite = _suite()
    rng = np.random.default_rng(1)
    folder = tmp_path / "field"
    for g in (1, 2):
        (folder / f"gen-{g:03d}").mkdir(parents=True)
        for name, (X, y) in _batches(suite, rng, ["noisy", "shifted"]).items():
            np.savez(folder / f"gen-{g:03d}" / f"{name}.npz", X=X, y=y)
    config = config_from_dict({**BASE, "generations": 2, "field_data": {"source": "folder", "path": str(folder)}})
    root = tmp_path / "run"
    result = run_cycle(config, seed=0, out=root, suite=suite)
    with np.load(folder / "gen-001" / "noisy.npz") as f:
        assert result.generations[1].lineage["field"]["noisy"]["batches"] == [data_sha256(f["X"], f["y"])]
    # the data behind generation 1 changes, then the run is resumed (one more generation asked)
    with np.load(folder / "gen-001" / "noisy.npz") as f:
        np.savez(folder / "gen-001" / "noisy.npz", X=f["X"][::-1], y=f["y"][::-1])
    before = (root / "gen-001" / "generation.json").read_bytes()
    with pytest.raises(ValidationError, match="differs from what it was trained on"):
        run_cycle(config, seed=0, out=root, suite=suite)
    assert (root / "gen-001" / "generation.json").read_bytes() == before
    with pytest.raises(ValidationError, match="is not a folder"):
        run_cycle(config_from_dict({**BASE, "field_data": {"source": "folder", "path": str(tmp_path / "none")}}),
                  seed=0, suite=suite)


def test_results_hold_the_gate_decisions_as_json(run):
    _, result = run
    data = json.loads(json.dumps(result.to_dict()))
    decisions = data["generations"][1]["decisions"]
    assert decisions and {"domain", "candidate", "reference", "p_value", "p_adjusted", "passed", "chosen"} <= set(decisions[0])
    assert data["margin"] == 0.02


def test_crossfeed_report_shows_lineage_decisions_and_served_accuracy_also_of_a_stopped_run(tmp_path):
    from typer.testing import CliRunner

    from crossfeed.cli import app
    from crossfeed.experiments import run_experiment

    out = tmp_path / "run"
    run_experiment(config_from_dict({**BASE, "generations": 1}), out)
    (out / "results.json").unlink()  # as if the run had been stopped before writing it
    for name in ("report.md", "report.html"):
        (out / name).unlink()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    for title in ("Served model of each domain", "Gate decisions (seed 0", "Lineage (seed 0)",
                  "Which model serves each domain", "margin 2 points"):
        assert title in md
    assert (out / "served.png").stat().st_size > 1000
    assert "lineage, seed 0" in res.output
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "neither results.json nor config.yaml" in bad.output


def test_the_gate_holdout_is_stratified_and_refuses_a_share_that_leaves_nothing(small_suite):
    from crossfeed.cycle._cycle import hold_out

    trained, gate = hold_out(small_suite, 0.5, seed=0)
    for d in small_suite:
        X_gate, y_gate = gate[d.name]
        assert len(X_gate) + len(trained[d.name].X_val) == len(d.X_val)
        assert set(np.unique(y_gate)) == set(np.unique(d.y_val))  # every class on both sides
    with pytest.raises(EmptyDataError, match="none for training"):
        hold_out(small_suite, 0.999, seed=0)


def test_gate_compose_measures_one_gated_mixture_of_the_served_models(tmp_path):
    config = config_from_dict({**BASE, "generations": 1, "gate": {**BASE["gate"], "compose": 1}})
    result = run_cycle(config, seed=0, out=tmp_path / "seed-0")
    g1 = result.generations[-1]
    composed, served = g1.accuracy["composed"], g1.accuracy["served"]
    assert set(composed) == set(served)
    acc = g1.accuracy
    assert g1.served["shifted"]["label"] == "expert:shifted g1"  # measured (seed 0): large 0.47, expert 0.91 there
    # the gate routes per input: shifted samples to their expert, default samples not to it
    # (measured: composed 0.87 on shifted against the large model's 0.47; 0.69 on default against
    # the shifted expert's 0.31 there)
    assert composed["shifted"] > acc["large"]["shifted"] + 0.2
    assert composed["default"] > acc["expert:shifted"]["default"] + 0.2
    assert g1.seconds["compose"] > 0
    with pytest.raises(ValidationError, match="gate.compose"):
        config_from_dict({**BASE, "gate": {**BASE["gate"], "compose": -1}})
    # the option, off, leaves a run's fingerprint as it was before it existed
    from crossfeed.cycle._cycle import run_fingerprint

    assert "compose" not in run_fingerprint(config_from_dict(BASE), 0)["config"]["gate"]
    assert run_fingerprint(config, 0)["config"]["gate"]["compose"] == 1
