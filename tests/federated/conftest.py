"""Shared parts of the federated tests: four Gaussian blobs in 8 dimensions (fixed seed), and a
Grid that runs Flower's real ClientApp in this process (no Ray, no sockets)."""

import copy
import types

import numpy as np
import pytest

from crossfeed.federated import _flower, clients_from_parts, dirichlet_partition
from crossfeed.feedback import TrainSettings
from crossfeed.models import TorchClassifier

#: Local training of every federated test's clients.
SETTINGS = TrainSettings(epochs=2, lr=5e-3, batch_size=32, threads=1, seed=0)


@pytest.fixture(scope="session")
def blobs():
    """600 rows ``(X, y)``: 4 classes around random centres (scale 2), unit noise."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=2.0, size=(4, 8))
    y = rng.integers(0, 4, 600)
    return (centres[y] + rng.normal(size=(600, 8))).astype(np.float32), y


def federation(blobs, rows: int, n_clients: int, alpha: float, min_samples: int):
    """The first ``rows`` blobs dealt to ``n_clients`` clients (Dirichlet, seed 0), and the initial
    global model: an MLP fitted for one epoch on blobs 400-419 (every class, no client's row)."""
    X, y = blobs
    parts = dirichlet_partition(y[:rows], n_clients, alpha=alpha, seed=0, min_samples=min_samples)
    init = TorchClassifier("mlp", module_kwargs={"hidden": (16,)}, epochs=1, random_state=0, threads=1)
    init.fit(X[400:420], y[400:420])
    return clients_from_parts(X[:rows], y[:rows], parts), init


class LocalGrid:
    """A Grid that delivers every message to the ClientApp of its node, in this process (needs flwr).

    ``drop``: nodes whose training messages are lost (their replies never come). ``sent``: the records of
    every message of the Message-API apps the server sent, per round and client; ``replies``: every
    reply. ``app``: the ClientApp (default: the Message-API one of ``data_dir``).
    """

    def __init__(self, data_dir, n, drop=(), app=None):
        from flwr.app import Context, RecordDict

        self.app = app if app is not None else _flower._client_app(str(data_dir))
        self.run = types.SimpleNamespace(run_id=1)  # the legacy API's client manager reads it
        self.contexts = {100 + i: Context(run_id=1, node_id=100 + i, state=RecordDict(), run_config={},
                                          node_config={"partition-id": i, "num-partitions": n}) for i in range(n)}
        self.drop, self.sent, self.replies = set(drop), [], []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for m in messages:
            if m.metadata.message_type == "train" and "config" in m.content:
                self.sent.append((m.metadata.group_id, m.content["config"]["client"], set(m.content.keys())))
            if m.metadata.message_type != "train" or m.metadata.dst_node_id not in self.drop:
                # a copy, as the wire gives every node its own (a workflow may send one content to all)
                replies.append(self.app(copy.deepcopy(m), self.contexts[m.metadata.dst_node_id]))
        self.replies.extend(replies)
        return replies


@pytest.fixture
def task_identity(monkeypatch):
    """Flower stamps messages with the identity of the running task (set by its runtimes)."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)
