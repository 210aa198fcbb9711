"""Secure aggregation (SecAgg+ through Flower's legacy workflow) against the in-process FedAvg.

The fast tests run the real ServerApp (LegacyContext, DefaultWorkflow, SecAggPlusWorkflow) and the
real ClientApp (NumPyClient + secaggplus_mod) over an in-process Grid; one slow test runs Flower's
Simulation Runtime.
"""

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import Context, RecordDict  # noqa: E402

from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.federated import (  # noqa: E402
    Client,
    SecAggPlus,
    _flower,
    _secagg,
    run_secure,
    simulate,
)
from crossfeed.feedback import DPFedAvg, FedAvg, FedDF, FedProx  # noqa: E402

from .conftest import SETTINGS, LocalGrid, federation  # noqa: E402


@pytest.fixture(scope="module")
def data(blobs):
    X, y = blobs
    clients, init = federation(blobs, rows=400, n_clients=4, alpha=0.5, min_samples=20)
    return {"clients": clients, "init": init, "test": (X[500:], y[500:])}


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def over_grid(tmp_path, strategy, init, clients, secure=None, drop=()):
    """Run the secure apps over a LocalGrid; return the run's (module, log, accuracy) and the grid."""
    secure = secure or SecAggPlus()
    job = _secagg._secure_job(strategy, init, clients, SETTINGS, secure, None)
    tmp_path.mkdir(exist_ok=True)
    for i, c in enumerate(clients):
        _flower._write_rows(tmp_path / f"partition-{i}.npz",
                            Client(c.name, c.X, np.searchsorted(init.classes_, c.y)))
    grid = LocalGrid(tmp_path, len(clients), drop=[100 + i for i in drop], app=_secagg._secure_client_app(str(tmp_path)))
    out = {}
    _secagg._secure_server_app(job, out)(grid, Context(run_id=1, node_id=0, state=RecordDict(), run_config={},
                                                       node_config={}))
    return out["result"], grid


@pytest.mark.parametrize("make", [lambda: FedAvg(rounds=2), lambda: FedProx(rounds=2, mu=0.1)], ids=["fedavg", "fedprox"])
def test_secure_aggregation_gives_fedavgs_model_and_the_server_never_sees_an_update(data, tmp_path, task_identity,
                                                                                    make):
    ref = simulate(make(), data["init"], data["clients"], settings=SETTINGS)
    (module, log, _), grid = over_grid(tmp_path, make(), data["init"], data["clients"])
    # the same model up to the quantization of the updates
    diff = float((weights(module) - weights(ref.model.module_)).abs().max())
    assert diff < 1e-4, diff
    assert [r.round for r in log] == [1, 2] and all(len(r.clients) == 4 and not r.failures for r in log)
    assert all(r.bytes_sent > 0 for r in log)
    # what the clients sent: no float array at all (masked vectors travel as integer bytes), and
    # none of those integers decode to a client's update
    floats = [a for m in grid.replies for rec in m.content.array_records.values() for a in rec.values()
              if a.dtype.startswith("float")]
    assert floats == []
    start = weights(data["init"].module_)
    updates = []
    for c in data["clients"]:  # each client's own round-1 update, in process
        alone = simulate(make(), data["init"], [c], settings=SETTINGS)
        updates.append((weights(alone.model.module_) - start).numpy())
    masked = [np.frombuffer(b, dtype=np.int64) if len(b) % 8 == 0 else np.frombuffer(b, dtype=np.uint8)
              for m in grid.replies for rec in m.content.config_records.values() for v in rec.values()
              for b in (v if isinstance(v, list) else [v]) if isinstance(b, bytes)]
    assert masked and not any(np.isclose(u, 0).all() for u in updates)
    assert not any(bytes(np.asarray(u, dtype=np.float32).tobytes()[:64]) in b"".join(x.tobytes() for x in masked)
                   for u in updates)


def test_a_dropped_client_is_reconstructed_around_and_reported(data, tmp_path, task_identity):
    """Client 1's messages are lost from the masked-vector stage on: the other three still aggregate
    (their pairwise masks with it are rebuilt from shares); without secure aggregation this is the
    FedAvg of the three."""
    clients = data["clients"]

    class LoseAfterKeys(LocalGrid):
        def send_and_receive(self, messages, *, timeout=None):
            replies = super().send_and_receive(messages, timeout=timeout)
            stage = [m.content.config_records.get("secaggplus_configs", {}).get("stage") for m in messages]
            if "collect_masked_vectors" in stage or "unmask" in stage:
                replies = [r for r in replies if r.metadata.src_node_id != 101]
            return replies

    job = _secagg._secure_job(FedAvg(rounds=1), data["init"], clients, SETTINGS,
                              SecAggPlus(num_shares=4, reconstruction_threshold=2), None)
    for i, c in enumerate(clients):
        _flower._write_rows(tmp_path / f"partition-{i}.npz", Client(c.name, c.X, np.searchsorted(data["init"].classes_, c.y)))
    grid = LoseAfterKeys(tmp_path, len(clients), app=_secagg._secure_client_app(str(tmp_path)))
    out = {}
    _secagg._secure_server_app(job, out)(grid, Context(run_id=1, node_id=0, state=RecordDict(), run_config={},
                                                       node_config={}))
    module, log, _ = out["result"]
    assert len(log) == 1 and clients[1].name not in log[0].clients and len(log[0].clients) == 3
    ref = simulate(FedAvg(rounds=1), data["init"], clients, settings=SETTINGS)
    # the survivors' mean update, each trained with its own seed offset (1000 r + partition id)
    sizes = np.array([len(c.y) for c in clients], dtype=float)
    alone = [simulate(FedAvg(rounds=1), data["init"], [c], settings=SETTINGS.replace(seed=SETTINGS.seed + i))
             for i, c in enumerate(clients)]
    start = weights(data["init"].module_)
    upd = [weights(a.model.module_) - start for a in alone]
    expected = start + sum(sizes[i] * upd[i] for i in (0, 2, 3)) / sizes[[0, 2, 3]].sum()
    assert float((weights(module) - expected).abs().max()) < 1e-4
    assert float((weights(module) - weights(ref.model.module_)).abs().max()) > 1e-3  # not the four-client model


def test_an_update_outside_the_clipping_range_is_refused_not_clipped(data, tmp_path, task_identity):
    (module, log, _), _ = over_grid(tmp_path, FedAvg(rounds=1), data["init"], data["clients"],
                                    secure=SecAggPlus(clipping_range=1e-4))
    assert log[0].kept_previous and log[0].failures
    assert torch.equal(weights(module), weights(data["init"].module_))


def test_bad_input_gets_clear_errors(data):
    init, clients = data["init"], data["clients"]
    for strategy in (FedDF(rounds=1), DPFedAvg(rounds=1)):
        with pytest.raises(ValidationError, match="fedavg and fedprox"):
            run_secure(strategy, init, clients)
    with pytest.raises(ValidationError, match="every client every round"):
        run_secure(FedAvg(rounds=1, fraction=0.5), init, clients)
    with pytest.raises(ValidationError, match="at least 3 clients"):
        run_secure(FedAvg(rounds=1), init, clients[:2])
    with pytest.raises(ValidationError, match="num_shares must be at least 3"):
        SecAggPlus(num_shares=2)
    with pytest.raises(ValidationError, match="float in \\(0, 1\\]"):
        SecAggPlus(reconstruction_threshold=1.5)
    with pytest.raises(ValidationError, match="power of 2"):
        SecAggPlus(modulus_range=3 * 2**22)
    with pytest.raises(ValidationError, match="clipping_range"):
        SecAggPlus(clipping_range=0)


@pytest.mark.slow  # Ray's start-up: ~25 s on an idle 2-core machine
def test_run_secure_in_flowers_simulation_runtime_gives_fedavgs_model(data):
    ref = simulate(FedAvg(rounds=2), data["init"], data["clients"], settings=SETTINGS, test=data["test"])
    run = run_secure(FedAvg(rounds=2), copy.deepcopy(data["init"]), data["clients"], settings=SETTINGS,
                     test=data["test"])
    assert float((weights(run.model.module_) - weights(ref.model.module_)).abs().max()) < 1e-4
    assert len(run.accuracy) == 2 and abs(run.accuracy[-1] - ref.accuracy[-1]) <= 0.01
