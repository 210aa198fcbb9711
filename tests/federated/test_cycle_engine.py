"""The cycle's feedback step on Flower (``feedback.engine: flower``) against the same step in process.

The fast tests run the real ServerApp loop and the real ClientApp over an in-process Grid (no Ray);
one slow test runs Flower's Simulation Runtime through ``run_experiment``.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

pytest.importorskip("flwr")

from crossfeed.config import config_from_dict  # noqa: E402
from crossfeed.cycle._cycle import run_fingerprint  # noqa: E402
from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.experiments import run_experiment  # noqa: E402
from crossfeed.federated import FederatedRun, _flower, flower_rounds  # noqa: E402
from crossfeed.feedback import absorb  # noqa: E402
from crossfeed.models import TorchClassifier, fitted_copy  # noqa: E402

from .conftest import LocalGrid  # noqa: E402

EXAMPLE = Path(__file__).parents[2] / "examples" / "feddf-flower.yaml"


def config(engine: str, strategy: str = "feddf", **kwargs) -> dict:
    """The example, shrunk to seconds: a tiny mnist1d suite, one generation, one round."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["suite"]["kwargs"]["n_per_domain"] = 200
    data["large"].update(epochs=2)
    data["experts"].update(epochs=1, finetune_epochs=1)
    data["generations"] = 1
    data["feedback"].update(engine=engine, strategy=strategy, epochs=1,
                            kwargs={"rounds": 2, **({"server_epochs": 1} if strategy == "feddf" else {}), **kwargs})
    return data


@pytest.fixture
def over_grid(monkeypatch, tmp_path, task_identity):
    """Route flower_rounds through the ServerApp loop and ClientApp over a LocalGrid; collect every
    array the server receives, and the rows of every client."""
    seen = {"received": [], "clients": []}

    def simulation(job, clients, record=None):
        folder = tmp_path / f"grid-{len(seen['clients'])}"
        folder.mkdir()
        for i, c in enumerate(clients):
            _flower._write_rows(folder / f"partition-{i}.npz", c)
        seen["clients"].append(clients)
        module, log, accuracy = _flower._serve(LocalGrid(folder, len(clients)), job,
                                               lambda *a: seen["received"].append(a))
        return FederatedRun(fitted_copy(job.model, module), log, accuracy)

    monkeypatch.setattr(_flower, "_simulation", simulation)
    return seen


def large_weights(run_dir: Path, generation: int = 1) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / "seed-0" / f"gen-{generation:03d}" / "large" / "model.safetensors"))


@pytest.mark.parametrize("strategy", ["feddf", "fedavg"])
def test_the_cycle_on_flower_gives_the_local_model_and_reports_its_rounds(strategy, tmp_path, over_grid):
    run_experiment(config_from_dict(config("local", strategy)), tmp_path / "local")
    run_experiment(config_from_dict(config("flower", strategy)), tmp_path / "flower")
    local, flower = large_weights(tmp_path / "local"), large_weights(tmp_path / "flower")
    assert local.keys() == flower.keys()
    assert all(np.allclose(local[k], flower[k], atol=1e-5) for k in local)
    # the clients were the domains, each with its own training rows; none of those rows reached the server
    (clients,) = over_grid["clients"]
    assert [c.name for c in clients][0] == "default" and len(clients) == 5
    assert over_grid["received"] and all(name == "reply" for _, _, name, _, _ in over_grid["received"])
    rows = {c.name: np.asarray(c.X, dtype=np.float32).reshape(len(c.X), -1) for c in clients}
    blob = b"".join(np.ascontiguousarray(a).tobytes() for *_, a in over_grid["received"])
    assert not any(row.tobytes() in blob for X in rows.values() for row in X[:50])
    # the report: the engine, rounds, bytes and seconds per round beside forgetting
    results = json.loads((tmp_path / "flower" / "results.json").read_text())
    feedback = results["seeds"][0]["generations"][1]["feedback"]
    assert feedback["info"]["engine"] == "flower" and len(feedback["rounds"]) == 2
    assert all(r["bytes_sent"] > 0 and len(r["clients"]) == 5 for r in feedback["rounds"])
    local_feedback = json.loads((tmp_path / "local" / "results.json").read_text())["seeds"][0]["generations"][1]
    assert local_feedback["feedback"]["info"]["engine"] == "local"
    assert [r["bytes_sent"] for r in feedback["rounds"]] == [r["bytes_sent"] for r in local_feedback["feedback"]["rounds"]]
    report = (tmp_path / "flower" / "report.md").read_text()
    assert "| flower | 2 |" in report and "bytes sent per round" in report


def test_bad_engines_are_refused_when_the_config_loads():
    with pytest.raises(ValidationError, match="feedback.engine must be one of local, flower; got 'grpc'"):
        config_from_dict(config("grpc"))
    for strategy, match in [("multi_teacher_kd", "has no rounds"), ("fedmd", "keeps a network per client"),
                            ("reptile", "keeps a network per client or builds its tasks")]:
        data = config("flower", strategy)
        data["feedback"]["kwargs"] = {}
        with pytest.raises(ValidationError, match=match):
            config_from_dict(data)
    with pytest.raises(ValidationError, match="client_models 'experts' needs engine: local"):
        config_from_dict(config("flower", client_models="experts"))


def test_the_default_engine_leaves_run_fingerprints_as_they_were():
    local = run_fingerprint(config_from_dict(config("local")), 0)
    assert "engine" not in local["config"]["feedback"]
    assert run_fingerprint(config_from_dict(config("flower")), 0)["config"]["feedback"]["engine"] == "flower"


def test_absorb_refuses_an_engine_for_a_strategy_without_rounds(blobs):
    X, y = blobs
    large = TorchClassifier("mlp", module_kwargs={"hidden": (8,)}, epochs=1, random_state=0).fit(X[:50], y[:50])
    with pytest.raises(ValidationError, match="has no rounds"):
        absorb(large, {}, None, "multi_teacher_kd", engine=flower_rounds)


@pytest.mark.slow  # Ray's start-up: ~25 s on an idle 2-core machine, far longer under load
def test_the_cycle_on_flowers_simulation_runtime_gives_the_local_model(tmp_path):
    run_experiment(config_from_dict(config("local")), tmp_path / "local")
    run_experiment(config_from_dict(config("flower")), tmp_path / "flower")
    local, flower = large_weights(tmp_path / "local"), large_weights(tmp_path / "flower")
    assert all(np.allclose(local[k], flower[k], atol=1e-5) for k in local)
