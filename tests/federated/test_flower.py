"""Engine 2: the federated strategies as Flower apps, against engine 1 (crossfeed.federated.simulate).

Most tests drive the ServerApp's loop over an in-process Grid that hands every message to the
real ClientApp (no Ray, no sockets: fast); one runs Flower's Simulation Runtime (Ray workers), one
a loopback deployment (flower-superlink, two flower-supernode, flwr run).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

flwr = pytest.importorskip("flwr")


from crossfeed.exceptions import LabelMismatchError, MissingDependencyError, ValidationError  # noqa: E402
from crossfeed.federated import (  # noqa: E402
    Client,
    _flower,
    clients_from_parts,
    read_flower_run,
    run_flower,
    simulate,
    write_flower_app,
    write_flower_job,
)
from crossfeed.feedback import FedAvg, FedDF, FedMD, FedProx, Reptile  # noqa: E402
from crossfeed.models import TorchClassifier  # noqa: E402

from .conftest import SETTINGS, LocalGrid, federation  # noqa: E402


@pytest.fixture(scope="module")
def data(blobs):
    X, y = blobs
    clients, init = federation(blobs, rows=300, n_clients=3, alpha=0.3, min_samples=10)
    return {"clients": clients, "init": init, "server_X": X[400:500], "test": (X[500:], y[500:])}


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def holds_rows(array, X):
    """Whether any row of ``X`` appears, byte for byte, anywhere in ``array``."""
    blob = np.ascontiguousarray(array).tobytes()
    return any(np.ascontiguousarray(row, dtype=np.float32).tobytes() in blob for row in X)


def over_messages(tmp_path, strategy, init, clients, *, drop=(), timeout_s=None, **kw):
    """Run ``strategy`` through the ServerApp's loop and the ClientApp over a LocalGrid."""
    job = _flower._make_job(strategy, init, clients, SETTINGS, kw.get("server_X"), None, kw.get("test"), timeout_s)
    tmp_path.mkdir(exist_ok=True)
    for i, c in enumerate(clients):
        _flower._write_rows(tmp_path / f"partition-{i}.npz", c)
    received = []
    grid = LocalGrid(tmp_path, len(clients), drop=[100 + i for i in drop])
    module, log, accuracy = _flower._serve(grid, job, lambda *a: received.append(a))
    return module, log, accuracy, received, grid


@pytest.mark.parametrize("make", [lambda: FedAvg(rounds=2), lambda: FedProx(rounds=2, mu=0.1),
                                  lambda: FedDF(rounds=2, server_epochs=2),
                                  lambda: FedDF(rounds=2, server_epochs=2, fraction=0.67, teacher="probabilities")],
                         ids=["fedavg", "fedprox", "feddf", "feddf-sampled"])
def test_weight_strategies_over_messages_give_simulates_model_and_only_weights_reach_the_server(
        data, tmp_path, task_identity, make):
    kw = {"server_X": data["server_X"], "test": data["test"]}
    ref = simulate(make(), data["init"], data["clients"], settings=SETTINGS, **kw)
    module, log, accuracy, received, grid = over_messages(tmp_path, make(), data["init"], data["clients"], **kw)
    assert torch.allclose(weights(module), weights(ref.model.module_), atol=1e-6)
    assert accuracy == ref.accuracy
    assert [(r.round, r.clients, r.bytes_sent, r.kept_previous) for r in log] == \
        [(r.round, r.clients, r.bytes_sent, r.kept_previous) for r in ref.rounds]
    keys = list(data["init"].module_.state_dict())
    assert [(r, c, rec, k) for r, c, rec, k, _ in received] == \
        [(r.round, c, "reply", k) for r in ref.rounds for c in r.clients for k in keys]
    assert not any(holds_rows(a, c.X) for *_, a in received for c in data["clients"])
    assert all(keys_ >= {"config", "start", "rows"} and "public" not in keys_ for *_, keys_ in grid.sent)


def test_fedmd_over_messages_keeps_every_network_on_its_client_and_sends_only_logits(data, tmp_path, task_identity):
    kw = {"server_X": data["server_X"], "test": data["test"]}
    ref = simulate(FedMD(rounds=3), data["init"], data["clients"], settings=SETTINGS, **kw)
    module, log, accuracy, received, grid = over_messages(tmp_path, FedMD(rounds=3), data["init"], data["clients"],
                                                          **kw)
    assert torch.allclose(weights(module), weights(ref.model.module_), atol=1e-6)
    assert accuracy == ref.accuracy and [r.bytes_sent for r in log] == [r.bytes_sent for r in ref.rounds]
    assert {(rec, k, a.shape) for _, _, rec, k, a in received} == {("reply", "logits", (100, 4))}
    assert not any(holds_rows(a, c.X) for *_, a in received for c in data["clients"])
    # the start network and the public rows travel once; from round 2 each client trains its own network
    assert all(("start" in keys and "public" in keys) == (r == "1") for r, _, keys in grid.sent)


def test_failed_and_silent_clients_are_dropped_and_reported_like_simulate(data, tmp_path, task_identity):
    nan = Client("nan", np.full((20, 8), np.nan, dtype=np.float32), np.zeros(20, dtype=int))
    clients = [*data["clients"][:2], nan]
    ref = simulate(FedAvg(rounds=2), data["init"], clients, settings=SETTINGS)
    module, log, _, _, _ = over_messages(tmp_path, FedAvg(rounds=2), data["init"], clients)
    assert torch.allclose(weights(module), weights(ref.model.module_), atol=1e-6)
    assert [f.client for r in log for f in r.failures] == ["nan", "nan"]
    assert [r.failures for r in log] == [r.failures for r in ref.rounds]  # the same reasons ("training diverged")
    silent = over_messages(tmp_path / "silent", FedAvg(rounds=1), data["init"], data["clients"], drop=[1],
                           timeout_s=5.0)[1][0]
    assert silent.failures[0].client == data["clients"][1].name and "timed out" in silent.failures[0].reason
    assert silent.clients == (data["clients"][0].name, data["clients"][2].name)


def test_bad_input_gets_clear_errors(data, monkeypatch):
    init, clients = data["init"], data["clients"]
    with pytest.raises(ValidationError, match="fedavg, fedprox, feddf, fedmd.*simulate"):
        run_flower(Reptile(rounds=1), init, clients)
    mod = TorchClassifier(torch.nn.Linear(8, 4), epochs=1).fit(data["test"][0][:20], data["test"][1][:20])
    with pytest.raises(ValidationError, match="registered architecture name"):
        run_flower(FedAvg(rounds=1), mod, clients)
    with pytest.raises(ValidationError, match="backend must be one of"):
        run_flower(FedAvg(rounds=1), init, clients, backend="grpc")
    with pytest.raises(LabelMismatchError, match="labels \\[7\\]"):
        run_flower(FedAvg(rounds=1), init, [Client("odd", np.zeros((5, 8)), np.full(5, 7))])
    with pytest.raises(ValidationError, match="timeout_s"):
        run_flower(FedAvg(rounds=1), init, clients, timeout_s=-1)
    monkeypatch.setitem(sys.modules, "flwr.serverapp", None)  # as if flwr were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[federated\]'"):
        run_flower(FedAvg(rounds=1), init, clients)


def test_the_server_folder_of_a_job_holds_no_client_row(data, tmp_path):
    job = write_flower_job(tmp_path, FedAvg(rounds=1), data["init"], data["clients"], settings=SETTINGS,
                           server_X=data["server_X"])
    with np.load(job.directory / "server.npz") as f:
        assert f.files == ["server_X"]
    server_bytes = b"".join(p.read_bytes() for p in job.directory.rglob("*") if p.is_file())
    assert not any(np.asarray(row, dtype=np.float32).tobytes() in server_bytes
                   for c in data["clients"] for row in c.X)
    assert "partition-id=1 num-partitions=3 data-path=" in job.node_config(1)
    with pytest.raises(ValidationError, match="no result yet"):
        read_flower_run(job.directory)


@pytest.mark.slow  # Ray's start-up: ~21 s on an idle 2-core machine, past 200 s (and no reply) under load
def test_run_flower_in_flowers_simulation_runtime_gives_simulates_model(data):
    """The real Simulation Runtime: every ClientApp in a Ray worker process with 1 CPU."""
    clients = data["clients"]
    ref = simulate(FedAvg(rounds=2), data["init"], clients, settings=SETTINGS, test=data["test"])
    job = _flower._make_job(FedAvg(rounds=2), data["init"], clients, SETTINGS, None, None, data["test"], None)
    received = []
    run = _flower._simulation(job, clients, record=lambda *a: received.append(a))
    assert torch.allclose(weights(run.model.module_), weights(ref.model.module_), atol=1e-6)
    assert run.accuracy == ref.accuracy and [r.clients for r in run.rounds] == [r.clients for r in ref.rounds]
    assert len(received) == 2 * len(clients) * 4 and not any(holds_rows(a, c.X) for *_, a in received for c in clients)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("flower-superlink") is None or shutil.which("flwr") is None,
                    reason="the Flower CLIs are not on PATH")
def test_loopback_deployment_gives_simulates_model_and_no_client_row_reaches_the_server(data, tmp_path):
    """flower-superlink + 2 flower-supernode on 127.0.0.1, the same apps started with `flwr run`."""
    clients = clients_from_parts(np.concatenate([c.X for c in data["clients"]]),
                                 np.concatenate([c.y for c in data["clients"]]),
                                 [np.arange(0, 150), np.arange(150, 300)])
    strategy = FedProx(rounds=1, mu=0.1)
    ref = simulate(strategy, data["init"], clients, settings=SETTINGS, test=data["test"])
    home, port = tmp_path / "flwr-home", _free_port()
    home.mkdir()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "loop"\n\n[superlink.loop]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"}
    app = write_flower_app(tmp_path / "app")
    job = write_flower_job(tmp_path / "job", strategy, data["init"], clients, settings=SETTINGS, test=data["test"],
                           node_wait_s=90)
    procs = []

    def start(cmd, log):
        with open(tmp_path / log, "w") as out:
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start(["flower-superlink", "--insecure", "--port", str(port), "--disable-runtime-dependency-installation"],
              "superlink.log")
        for i in range(len(clients)):
            start(["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(_free_port()),
                   "--node-config", job.node_config(i)], f"supernode-{i}.log")
        deadline = time.monotonic() + 60
        while True:  # until the SuperLink accepts the run
            done = subprocess.run(["flwr", "run", str(app), "loop", "--run-config", job.run_config(record=True),
                                   "--stream"], env=env, capture_output=True, text=True, timeout=240)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert done.returncode == 0, done.stdout + done.stderr
        result = job.directory / "result" / "log.json"
        while not result.exists() and time.monotonic() < deadline + 60:
            time.sleep(0.5)
    finally:
        for p in procs:  # each started its own session: its group holds the apps it spawned
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("*.log")))
    assert result.exists(), logs
    run = read_flower_run(job.directory)
    assert torch.allclose(weights(run.model.module_), weights(ref.model.module_), atol=1e-6)
    assert run.accuracy == ref.accuracy and [r.clients for r in run.rounds] == [r.clients for r in ref.rounds]
    with np.load(job.directory / "result" / "received.npz") as f:
        received = {k: f[k] for k in f.files}
    assert len(received) == len(clients) * len(data["init"].module_.state_dict())
    assert not any(holds_rows(a, c.X) for a in received.values() for c in clients)
    assert not any(Path(p).name.startswith("partition") for p in os.listdir(job.directory))
