"""Federated runs on Flower (``flwr``, Message API): a ServerApp and a ClientApp around the rounds driver.

The second engine next to :func:`~crossfeed.federated.simulate`: the same strategies (``fedavg``,
``fedprox``, ``feddf``, ``fedmd``), the same arguments and the same :class:`FederatedRun`, but
every client is a Flower ClientApp that holds its own rows and talks to the server only through
Flower messages. :func:`run_flower` runs it in Flower's Simulation Runtime (Ray, one process per
client); :func:`write_flower_app` / :func:`write_flower_job` / :func:`read_flower_run` run the very
same apps on a real deployment (``flower-superlink``, ``flower-supernode``, ``flwr run``).

What travels
------------
The server runs the strategy's ``local_tasks`` on a context whose client sites hold **no rows**;
each task therefore carries only server-side rows (FedMD: the public rows and their consensus soft
targets; FedAvg, FedProx, FedDF: none). Per round and client the server sends a message with

- ``config`` (ConfigRecord): round, seed offset, client name, the strategy's registered name and
  parameters (the ClientApp rebuilds the same strategy from ``crossfeed.feedback.STRATEGIES``),
  the local training settings and the architecture (see below);
- ``start`` (ArrayRecord): the state of the network to train from; for a ``persistent_clients``
  strategy (FedMD) only until the client holds a network of its own, which it keeps in
  ``context.state`` (round 1: :meth:`~crossfeed.feedback.RoundsStrategy.client_start`);
- ``rows`` (ArrayRecord): the task's server-side rows, labels and soft targets (possibly 0 rows);
- ``public`` (ArrayRecord): the server's rows, sent once, only to strategies whose ``reply`` reads
  per-run state (FedMD's logits on the public rows): the ClientApp rebuilds that state by running
  the strategy's round-1 ``local_tasks`` on its own view (those rows plus its own).

The ClientApp appends its own labelled rows (and their one-hot targets when the task has soft
targets), builds the strategy's ``client_hooks`` from the received network (FedProx's proximal
term), trains through the rounds driver (:func:`crossfeed.feedback.run_rounds` on this one task:
the one training loop, its failure and NaN checks) and replies ``strategy.reply(module, task)``
(weights, or FedMD's logits) plus a MetricRecord (``num-examples``: its own row count,
``seconds``). Its rows never leave it. A missing reply (``timeout_s``), an error reply or
non-finite arrays are a :class:`~crossfeed.feedback.Failure`, dropped and reported as in
:func:`~crossfeed.feedback.run_rounds`.

The architecture
----------------
The ClientApp rebuilds the network from the initial model's construction parameters: its
registered architecture name, ``module_kwargs``, ``n_features_in_`` and number of classes
(:func:`crossfeed.models.build_module`), then loads the received state. No pickle travels; as
for :func:`crossfeed.models.save_model`, the model must be built from a registered architecture
name.

Client data in simulation
-------------------------
Flower's Ray backend runs every ClientApp in a separate worker process, so a registry in this
process would not reach them: :func:`run_flower` writes each client's rows to its own file
``partition-<id>.npz`` in a temporary folder that only the ClientApp of that partition reads, and
deletes the folder at the end. On a deployment, each SuperNode names its file in its node config
(``data-path``).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed._cache import atomic_write_bytes
from crossfeed.exceptions import EmptyDataError, ValidationError, missing_dependency
from crossfeed.federated._simulate import Client, FederatedRun, _check_inputs, _suite
from crossfeed.feedback import (
    STRATEGIES,
    Failure,
    FedAvg,
    FedMD,
    FeedbackContext,
    LocalTask,
    LocalUpdate,
    RoundLog,
    RoundsStrategy,
    RoundState,
    TrainSettings,
    keep_update,
    run_rounds,
)
from crossfeed.models import TorchClassifier, build_module, fitted_copy, load_model, save_model
from crossfeed.training import resolve_device, torch_threads

__all__ = ["FlowerJob", "flower_rounds", "read_flower_run", "run_flower", "write_flower_app", "write_flower_job"]

logger = logging.getLogger(__name__)

#: The strategies whose client step Flower can run (subclasses included).
SUPPORTED = ("fedavg", "fedprox", "feddf", "fedmd")
BACKENDS = ("simulation",)
JOB_FORMAT = "crossfeed.flower_job"
#: Keys in a ClientApp's ``context.state``.
_OWN_NETWORK, _PUBLIC = "crossfeed.network", "crossfeed.public"
#: How long the server waits for the SuperNodes to connect (and answer who they are).
NODE_WAIT_S = 120.0


def _flwr() -> Any:
    try:
        import flwr.app
        import flwr.clientapp
        import flwr.serverapp
    except ImportError:
        raise missing_dependency("flwr", "federated") from None
    return flwr


# -- the job: everything the server needs ------------------------------------------------------
@dataclass
class _Job:
    """What the ServerApp runs: the strategy and the initial model, the clients by partition id
    (names only: their rows are theirs), the server's rows and the test rows."""

    strategy: RoundsStrategy
    model: TorchClassifier
    names: list[str]
    sample_shape: tuple[int, ...]
    settings: TrainSettings
    server_X: np.ndarray | None = None
    server_y: np.ndarray | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    timeout_s: float | None = None
    node_wait_s: float = NODE_WAIT_S
    server_val: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class _Shell:
    """A client as the server sees it: a name and no rows."""

    name: str
    X: np.ndarray
    y: np.ndarray


def _check_strategy(strategy: Any) -> None:
    if not isinstance(strategy, (FedAvg, FedMD)):
        name = getattr(strategy, "name", None)
        raise ValidationError(
            f"run_flower runs the strategies whose client step trains the received network on the client's rows "
            f"plus rows the server sends: {', '.join(SUPPORTED)} (and their subclasses); got "
            f"{type(strategy).__name__}{f' ({name!r})' if name else ''}, whose local tasks are built from the "
            "clients' rows on the server side. Run it in process with crossfeed.federated.simulate")
    registered = STRATEGIES.get(strategy.name)
    if not isinstance(strategy, registered):
        raise ValidationError(
            f"the ClientApp rebuilds the strategy from its registered name {strategy.name!r}, which is "
            f"{registered.__name__}, not a base of {type(strategy).__name__}; register the subclass under a name "
            "of its own (crossfeed.feedback.register) in a module the ClientApp imports")
    strategy.validate()


def _architecture(model: TorchClassifier) -> dict[str, Any]:
    """The construction parameters a ClientApp rebuilds the network from (checked against ``model.module_``)."""
    if not isinstance(model.module, str):
        raise ValidationError(
            "run_flower rebuilds the network on every client from a registered architecture name (no pickle "
            f"travels); got module={type(model.module).__name__}. Register the factory with "
            "crossfeed.models.ARCHITECTURES.register('name') and build the model as TorchClassifier('name', ...)")
    spec = {"module": model.module, "module_kwargs": _jsonable(dict(model.module_kwargs or {}), "module_kwargs"),
            "n_features": int(model.n_features_in_), "n_classes": int(len(model.classes_))}
    built = _build(spec)
    if _shapes(built) != _shapes(model.module_):
        raise ValidationError(
            f"the model's network does not match its architecture {model.module!r} with module_kwargs "
            f"{spec['module_kwargs']}: a client could not rebuild it; refit the model from that architecture")
    return spec


def _build(spec: Mapping[str, Any]) -> nn.Module:
    return build_module(spec["module"], spec["n_features"], spec["n_classes"], **spec["module_kwargs"])


def _shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def _jsonable(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else list(v)))
    except TypeError as exc:
        raise ValidationError(f"{what} must be JSON values (numbers, strings, lists, dicts) to travel to the "
                              f"clients; got {value!r} ({exc})") from None


def _plain(a: Any) -> np.ndarray:
    """``a`` as an array Flower can send without pickle (object arrays of labels become strings)."""
    a = np.asarray(a)
    return a.astype(str) if a.dtype == object else a


def _make_job(strategy: RoundsStrategy, model: TorchClassifier, clients: Sequence[Client], settings: TrainSettings,
              server_X: Any, server_y: Any, test: tuple[Any, Any] | None, timeout_s: float | None,
              server_val: tuple[Any, Any] | None = None) -> _Job:
    _check_strategy(strategy)
    _check_inputs(model, clients, "run_flower")
    _architecture(model)
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or timeout_s < 0):
        raise ValidationError(f"timeout_s must be None or a number of seconds >= 0; got {timeout_s!r}")
    shape = tuple(int(d) for d in np.asarray(clients[0].X).shape[1:])
    sX = None if server_X is None else np.asarray(server_X, dtype=np.float32)
    sy = None if server_y is None else _plain(server_y)
    site = _suite([_Shell(c.name, np.zeros((0, *shape), np.float32), np.zeros(0)) for c in clients],
                  model.classes_, sX, sy, server_val)["server"]  # the same checks of the server rows as simulate
    val = None if server_val is None else (site.X_val, _plain(site.y_val))
    test_ = None if test is None else (np.asarray(test[0], dtype=np.float32), _plain(test[1]))
    return _Job(strategy, model, [c.name for c in clients], shape, settings, sX, sy, test_, timeout_s,
                server_val=val)


# -- the server ----------------------------------------------------------------------------
def _records(arrays: Mapping[str, Any]) -> Any:
    flwr = _flwr()
    # np.asarray(order="C"), not np.ascontiguousarray: that one makes a 0-d array (BatchNorm's
    # num_batches_tracked) 1-d, and the state no longer fits the network
    return flwr.app.ArrayRecord({k: flwr.app.Array(np.asarray(_plain(v), order="C")) for k, v in arrays.items()})


def _state(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _wait_for_nodes(grid: Any, names: list[str], wait_s: float) -> dict[str, int]:
    """Client name -> node id: ask every node for its partition id (its index in ``names``)."""
    flwr = _flwr()
    deadline = time.monotonic() + wait_s
    nodes = list(grid.get_node_ids())
    while len(nodes) < len(names) and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    if len(nodes) < len(names):
        raise ValidationError(f"the federation has {len(names)} clients but only {len(nodes)} SuperNodes connected "
                              f"within {wait_s:.0f} s; start one SuperNode per client")
    query = [flwr.app.Message(flwr.app.RecordDict({"config": flwr.app.ConfigRecord({"ask": "partition-id"})}),
                              node, flwr.app.MessageType.QUERY) for node in nodes]
    # a fresh wait for the answers: a ClientApp's first start (imports, Ray workers) can take long on a busy machine
    replies = list(grid.send_and_receive(query, timeout=wait_s))
    node_of: dict[str, int] = {}
    for reply in replies:
        if reply.has_error():
            raise ValidationError(f"SuperNode {reply.metadata.src_node_id} could not say which client it is: "
                                  f"{reply.error.reason}")
        pid = int(reply.content["config"]["partition-id"])
        if not 0 <= pid < len(names):
            continue  # a node of no client of this run
        if names[pid] in node_of:
            raise ValidationError(f"two SuperNodes have partition-id={pid}; give every SuperNode its own "
                                  "(--node-config 'partition-id=N ...')")
        node_of[names[pid]] = reply.metadata.src_node_id
    missing = [n for n in names if n not in node_of]
    if missing:
        raise ValidationError(f"no SuperNode answered for the clients {missing} (partition ids "
                              f"{[names.index(n) for n in missing]}); start one SuperNode per partition id "
                              f"0..{len(names) - 1}")
    return node_of


def _serve(grid: Any, job: _Job, record: Callable[[int, str, str, str, np.ndarray], None] | None = None
           ) -> tuple[nn.Module, list[RoundLog], list[float]]:
    """The ServerApp's main loop: the rounds driver (:func:`~crossfeed.feedback.run_rounds`) with
    Flower messages as its exchange; return the final network, the log and the test accuracy per
    round. ``record(round, client, record, key, array)`` sees every array the server receives (for audits)."""
    model = job.model
    classes = model.classes_
    node_of = _wait_for_nodes(grid, job.names, job.node_wait_s)
    shells = [_Shell(n, np.zeros((0, *job.sample_shape), np.float32), np.zeros(0, dtype=_plain(classes).dtype))
              for n in job.names]
    suite = _suite(shells, classes, job.server_X, job.server_y, job.server_val)
    ctx = FeedbackContext(large=model, experts={n: None for n in job.names}, suite=suite, settings=job.settings)
    accuracy: list[float] = []

    def evaluate(r: int, module: nn.Module) -> None:
        if job.test is not None:
            accuracy.append(float(fitted_copy(model, copy.deepcopy(module)).score(*job.test)))

    exchange = _MessageExchange(grid, job, node_of, record)
    module, log = run_rounds(job.strategy, ctx, model.module_, timeout_s=job.timeout_s, on_round=evaluate,
                             exchange=exchange)
    return module, log, accuracy


class _MessageExchange:
    """The rounds driver's :data:`~crossfeed.feedback.Exchange` over a Flower Grid: one TRAIN
    message per task (see the module docstring for what it holds), the replies screened as
    :func:`~crossfeed.feedback.train_here` screens its updates."""

    def __init__(self, grid: Any, job: _Job, node_of: Mapping[str, int],
                 record: Callable[[int, str, str, str, np.ndarray], None] | None) -> None:
        self.grid, self.job, self.node_of, self.record = grid, job, node_of, record
        self.arch = _architecture(job.model)
        strategy = job.strategy
        self.shared = type(strategy).reply is not RoundsStrategy.reply  # its reply reads per-run state: share the rows
        self.own: set[str] = set()  # persistent clients that hold a network of their own
        self.acked: set[str] = set()  # clients that hold the shared rows

    def __call__(self, strategy: RoundsStrategy, r: int, tasks: Sequence[LocalTask], state: RoundState,
                 timeout_s: float | None) -> tuple[list[LocalUpdate], list[Failure]]:
        if len({t.client for t in tasks}) != len(tasks):
            raise ValidationError(f"{strategy.name}: round {r} has several tasks for one client; run_flower sends "
                                  "one message per client and round")
        messages, starts = [], []
        for i, task in enumerate(tasks):
            start = self._start(strategy, task, state)
            starts.append(start if start is not None else state.module)
            messages.append(self._message(strategy, r, i, task, start))
        replies = {m.metadata.src_node_id: m for m in self.grid.send_and_receive(messages, timeout=timeout_s)}
        updates, failures = [], []
        for task, start in zip(tasks, starts):
            reply = replies.get(self.node_of[task.client])
            if reply is None:
                failures.append(Failure(task.client, "no reply" if timeout_s is None else
                                        f"timed out: no reply within {timeout_s} s"))
                continue
            self.acked.add(task.client)
            if reply.has_error():
                failures.append(Failure(task.client, reply.error.reason or "the client replied with an error"))
                continue
            if keep_update(self._update(r, task, start, reply), timeout_s, updates, failures) \
                    and strategy.persistent_clients:
                self.own.add(task.client)
        return updates, failures

    def _start(self, strategy: RoundsStrategy, task: LocalTask, state: RoundState) -> nn.Module | None:
        """The network the task starts from (None: the client's own, which it keeps)."""
        if task.client not in self.node_of:
            raise ValidationError(f"{strategy.name}: a task for {task.client!r}, which is no client of this run")
        if strategy.persistent_clients and task.start is None:
            start = None if task.client in self.own else (strategy.client_start(state.ctx, task.client) or state.module)
        else:
            start = task.start if task.start is not None else state.module
        if start is not None and _shapes(start) != _shapes(self.job.model.module_):
            raise ValidationError(f"{strategy.name}: the start network of {task.client!r} is not the model's "
                                  "architecture; a ClientApp rebuilds only that one")
        return start

    def _message(self, strategy: RoundsStrategy, r: int, i: int, task: LocalTask, start: nn.Module | None) -> Any:
        flwr = _flwr()
        job, arch = self.job, self.arch
        classes = job.model.classes_
        content = flwr.app.RecordDict()
        content["config"] = flwr.app.ConfigRecord({
            "round": r, "seed-offset": 1000 * r + i, "client": task.client, "strategy": strategy.name,
            "params": json.dumps(_jsonable(strategy.get_params(), "strategy parameters")),
            "settings": json.dumps(job.settings.to_dict()),
            "task-settings": "" if task.settings is None else json.dumps(task.settings.to_dict()),
            "architecture": json.dumps(arch)})
        if start is not None:
            content["start"] = _records(_state(start))
        rows = {"X": np.asarray(task.X, dtype=np.float32).reshape(len(task.X), arch["n_features"]), "y": _plain(task.y),
                "classes": _plain(classes)}
        if task.soft_targets is not None:
            rows["soft"] = np.asarray(task.soft_targets, dtype=np.float32)
        content["rows"] = _records(rows)
        if self.shared and task.client not in self.acked and job.server_X is not None:
            content["public"] = _records({"X": job.server_X.reshape(len(job.server_X), arch["n_features"])})
        return flwr.app.Message(content, self.node_of[task.client], flwr.app.MessageType.TRAIN, group_id=str(r))

    def _update(self, r: int, task: LocalTask, start: nn.Module, reply: Any) -> LocalUpdate:
        arrays = {}
        for name, rec in reply.content.array_records.items():
            for key, value in rec.items():
                a = value.numpy()
                if self.record is not None:
                    self.record(r, task.client, name, key, a)
                if name == "reply":
                    arrays[key] = torch.from_numpy(np.array(a))
        metrics = reply.content["metrics"]
        seconds, n = float(metrics["seconds"]), int(metrics["num-examples"])
        sent = sum(a.numel() * a.element_size() for a in arrays.values())
        return LocalUpdate(task.client, _with_state(start, arrays), float(n), n, seconds, sent, arrays)


def _with_state(template: nn.Module, arrays: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """``template`` carrying the reply when the reply is a state of that network, else None
    (FedMD's logits: its aggregate reads only ``LocalUpdate.arrays``)."""
    if [(k, tuple(v.shape)) for k, v in arrays.items()] != _shapes(template):
        return None
    out = copy.deepcopy(template)
    out.load_state_dict(dict(arrays))
    return out.eval()


def _server_app(load: Callable[[Any], _Job], done: Callable[[Any, _Job, tuple], None],
                record: Callable[..., None] | None = None) -> Any:
    flwr = _flwr()
    app = flwr.serverapp.ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        job = load(context)
        with torch_threads(job.settings.threads):
            result = _serve(grid, job, record)
        done(context, job, result)

    return app


# -- the client ------------------------------------------------------------------------------
class _OneTask(RoundsStrategy):
    """One round of one task through :func:`run_rounds`: the client's step, exactly as in process."""

    def __init__(self, task: LocalTask, reply: Callable[[nn.Module, LocalTask], dict[str, torch.Tensor]]) -> None:
        self.rounds = 1
        self.task = task
        self._reply = reply
        self.update: LocalUpdate | None = None

    def local_tasks(self, round: int, state: RoundState) -> list[LocalTask]:
        return [self.task]

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        self.update = updates[0]
        return None

    def reply(self, module: nn.Module, task: LocalTask) -> dict[str, torch.Tensor]:
        return self._reply(module, task)


def _client_rows(context: Any, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    config = context.node_config
    if "data-path" in config:
        path = Path(str(config["data-path"]))
    elif data_dir is not None and "partition-id" in config:
        path = Path(data_dir) / f"partition-{int(config['partition-id'])}.npz"
    else:
        raise ValidationError("this SuperNode has no data: start it with --node-config "
                              "\"partition-id=N data-path='/path/to/client.npz'\" (a file from write_flower_job)")
    if not path.is_file():
        raise EmptyDataError(f"this client's data file {path} does not exist; write it with write_flower_job")
    with np.load(path, allow_pickle=False) as f:
        return f["X"], f["y"]


def _partition_id(context: Any) -> int:
    if "partition-id" not in context.node_config:
        raise ValidationError("this SuperNode has no partition-id in its node config; start it with "
                              "--node-config \"partition-id=N data-path='...'\"")
    return int(context.node_config["partition-id"])


def _train(message: Any, context: Any, data_dir: str | None) -> Any:
    """The ClientApp's step: rebuild strategy and network, append the own rows, train, reply.

    Whatever goes wrong is an error reply ``"<Exception>: <message>"`` (a Failure on the server,
    worded as :func:`~crossfeed.feedback.run_rounds` words it)."""
    flwr = _flwr()
    try:
        return _train_step(message, context, data_dir)
    except Exception as exc:  # failure is part of the contract: reported to the server, never raised here
        logger.warning("client step failed: %s", exc)
        return flwr.app.Message(flwr.app.Error(code=2, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)


def _train_step(message: Any, context: Any, data_dir: str | None) -> Any:
    flwr = _flwr()
    config = message.content["config"]
    X_own, y_own = _client_rows(context, data_dir)
    name = str(config["client"])
    strategy, settings, arch = _step_spec(config)
    task_settings = TrainSettings(**json.loads(str(config["task-settings"]))) if config["task-settings"] else None
    start = _build(arch)
    if "start" in message.content:
        start.load_state_dict(message.content["start"].to_torch_state_dict())
    elif _OWN_NETWORK in context.state:
        start.load_state_dict(context.state[_OWN_NETWORK].to_torch_state_dict())
    else:
        raise ValidationError(f"client {name!r} holds no network of its own and the server sent none")
    if "public" in message.content:
        context.state[_PUBLIC] = message.content["public"]
    rows = {k: v.numpy() for k, v in message.content["rows"].items()}
    classes = rows["classes"]
    X_own = np.asarray(X_own, dtype=np.float32).reshape(len(X_own), int(arch["n_features"]))
    X = np.concatenate([rows["X"], X_own])
    y = np.concatenate([rows["y"].astype(classes.dtype), np.asarray(y_own).astype(classes.dtype)])
    unknown = np.setdiff1d(y, classes)
    if len(unknown):
        raise ValidationError(f"client {name!r} holds labels {unknown.tolist()} the large model does not predict")
    soft = None
    if "soft" in rows:  # one-hot targets for the own rows, after the server's soft ones (as in FedMD's task)
        onehot = np.eye(len(classes), dtype=np.float32)[np.searchsorted(classes, y[len(rows["y"]):])]
        soft = np.concatenate([rows["soft"], onehot])
    public = context.state[_PUBLIC]["X"].numpy() if _PUBLIC in context.state else None
    suite = _suite([Client(name, X_own, np.asarray(y_own))], classes, public, None)
    ctx = FeedbackContext(large=_shell(arch, classes, start), experts={name: None}, suite=suite, settings=settings)
    if type(strategy).reply is not RoundsStrategy.reply:
        strategy.local_tasks(1, RoundState(ctx, start))  # the per-run state its reply reads (FedMD: the public rows)
    hooks = strategy.client_hooks(start) if hasattr(strategy, "client_hooks") else ()
    task = LocalTask(name, X, y, weight=len(y_own), start=start, hooks=list(hooks), settings=task_settings,
                     soft_targets=soft)
    update, reason = _client_step(task, ctx, int(config["seed-offset"]), strategy.reply)
    if update is None:
        return flwr.app.Message(flwr.app.Error(code=2, reason=reason), reply_to=message)
    if strategy.persistent_clients:
        context.state[_OWN_NETWORK] = _records(_state(update.module))
    content = flwr.app.RecordDict({
        "reply": _records({k: v.cpu().numpy() for k, v in update.arrays.items()}),
        "metrics": flwr.app.MetricRecord({"num-examples": int(len(y_own)), "seconds": float(update.seconds)})})
    return flwr.app.Message(content, reply_to=message)


def _step_spec(config: Any) -> tuple[RoundsStrategy, TrainSettings, dict[str, Any]]:
    """The strategy (rebuilt from its registered name and parameters), the settings and the
    architecture a server's message names."""
    cls = STRATEGIES.get(str(config["strategy"]))
    strategy = cls(**cls.check_params(json.loads(str(config["params"]))))
    return strategy, TrainSettings(**json.loads(str(config["settings"]))), json.loads(str(config["architecture"]))


def _shell(arch: Mapping[str, Any], classes: np.ndarray, module: nn.Module) -> TorchClassifier:
    """A fitted TorchClassifier around ``module``: the large model as a client's context sees it."""
    large = TorchClassifier(arch["module"], module_kwargs=arch["module_kwargs"] or None)
    large.classes_, large.n_features_in_, large.module_ = classes, int(arch["n_features"]), module
    return large


def _client_step(task: LocalTask, ctx: FeedbackContext, seed_offset: int,
                 reply: Callable[[nn.Module, LocalTask], dict[str, torch.Tensor]]) -> tuple[LocalUpdate | None, str]:
    """One client's step through the rounds driver, seeded as task ``seed_offset`` of
    :func:`~crossfeed.feedback.run_rounds` (``1000 r + i``): the update, or None and why not."""
    base = task.settings or ctx.settings
    # run_rounds trains its one task with seed offset 1000 (round 1, task 0): shift the seed to this task's offset
    shifted = dataclasses.replace(base, seed=base.seed + seed_offset - 1000)
    one = _OneTask(dataclasses.replace(task, settings=shifted), reply)
    with torch_threads(base.threads):
        _, log = run_rounds(one, ctx, task.start)
    if one.update is None:
        return None, log[0].failures[0].reason if log and log[0].failures else "no update"
    return one.update, ""


def _client_app(data_dir: str | None = None) -> Any:
    """The ClientApp; its rows come from ``data-path`` in the node config, else from
    ``data_dir/partition-<id>.npz`` (simulation)."""
    flwr = _flwr()
    app = flwr.clientapp.ClientApp()

    @app.query()
    def query(message: Any, context: Any) -> Any:
        pid = _partition_id(context)
        _, y = _client_rows(context, data_dir)
        return flwr.app.Message(flwr.app.RecordDict({"config": flwr.app.ConfigRecord(
            {"partition-id": pid, "num-examples": int(len(y))})}), reply_to=message)

    @app.train()
    def train(message: Any, context: Any) -> Any:
        return _train(message, context, data_dir)

    return app


# -- engine 2: Flower's Simulation Runtime ----------------------------------------------------
def run_flower(strategy: RoundsStrategy, model: TorchClassifier, clients: Sequence[Client], *,
               settings: TrainSettings | None = None, server_X: Any = None, server_y: Any = None,
               server_val: tuple[Any, Any] | None = None, test: tuple[Any, Any] | None = None,
               timeout_s: float | None = None, backend: str = "simulation") -> FederatedRun:
    """Run a federated strategy over ``clients`` as Flower apps (ServerApp + one ClientApp per client).

    Same arguments and result as :func:`~crossfeed.federated.simulate`; with the same seed the same
    final weights (to float tolerance). Needs ``crossfeed[federated]`` (``flwr[simulation]``).

    Parameters
    ----------
    strategy : ``FedAvg``, ``FedProx``, ``FedDF`` or ``FedMD`` (or a registered subclass); other
        rounds strategies (Reptile, MAML) build their tasks from the clients' rows on the server
        and are refused.
    model : a fitted :class:`TorchClassifier` built from a registered architecture name (every
        client rebuilds it); never modified.
    clients : the clients; names unique, labels within ``model.classes_``. Client ``i`` is the
        ClientApp of partition ``i``.
    settings, server_X, server_y, server_val, test : as in :func:`~crossfeed.federated.simulate`.
    timeout_s : the server waits this long for the replies of a round (``send_and_receive``'s
        timeout); a client that does not reply in time, or reports a longer training, is dropped
        for the round. Includes Flower's message latency.
    backend : ``"simulation"``: Flower's Simulation Runtime, every client in a Ray worker process
        with 1 CPU. A real deployment runs the same apps with ``flwr run``
        (:func:`write_flower_app`, :func:`write_flower_job`, :func:`read_flower_run`).

    Example
    -------
    ``run = run_flower(FedAvg(rounds=5), init, clients, settings=TrainSettings(epochs=1), test=(X, y))``
    """
    settings = settings or TrainSettings()
    if backend not in BACKENDS:
        raise ValidationError(f"backend must be one of {BACKENDS}; got {backend!r}. A deployment runs the apps "
                              "with `flwr run` (see write_flower_app and write_flower_job)")
    _flwr()
    if importlib.util.find_spec("ray") is None:  # flwr's run_simulation would exit the interpreter
        raise missing_dependency("ray", "federated")
    job = _make_job(strategy, model, clients, settings, server_X, server_y, test, timeout_s, server_val)
    return _simulation(job, clients)


def flower_rounds(strategy: RoundsStrategy, ctx: FeedbackContext, start: nn.Module) -> tuple[nn.Module, list[RoundLog]]:
    """The cycle's feedback rounds as Flower apps: a :data:`~crossfeed.feedback.RoundsEngine` for
    :func:`~crossfeed.feedback.absorb` (``feedback: {strategy: fedavg, engine: flower}`` in YAML).

    The clients are the domains the in-process rounds train (the general domain and every
    expert's domain, each a ClientApp holding its own training rows); the server holds what the
    strategy reads without labels (FedDF: its ``transfer`` rows; with ``early_stopping`` also the
    general domain's validation split, as in process). With the same seed the result
    equals :func:`~crossfeed.feedback.run_rounds` (to float tolerance). Runs in Flower's Simulation
    Runtime (:func:`run_flower`; needs ``crossfeed[federated]``).

    Refused: strategies whose clients keep a network of their own (FedMD: its clients start from
    their experts, which a ClientApp cannot rebuild yet) and FedDF with ``client_models="experts"``
    (a ClientApp rebuilds the large model's architecture only). Run those with ``engine: local``.
    """
    if strategy.persistent_clients:
        raise ValidationError(f"engine flower cannot run {strategy.name!r} in the cycle: its clients keep networks of "
                              "their own, started from their domains' experts, which a ClientApp cannot rebuild; "
                              "use engine: local (or crossfeed.federated.run_flower with plain clients)")
    if getattr(strategy, "client_models", "large") != "large":
        raise ValidationError(f"engine flower trains the large model's architecture on every client; "
                              f"{strategy.name} client_models={strategy.client_models!r} needs engine: local")
    if resolve_device(ctx.settings.device).type != "cpu":
        raise ValidationError(f"engine flower trains every client on a CPU (1 CPU per client in Flower's Simulation "
                              f"Runtime, no GPU), so device {ctx.settings.device!r} would make it differ from engine "
                              "local; set device: cpu, or use engine: local on the GPU")
    names = [ctx.general, *[n for n in ctx.experts if n != ctx.general]]
    clients = [Client(n, np.asarray(ctx.suite[n].X_train), np.asarray(ctx.suite[n].y_train)) for n in names]
    server_X = None
    if callable(getattr(strategy, "transfer_data", None)):  # FedDF: the server's own unlabelled rows
        server_X = strategy.transfer_data(ctx).reshape(-1, *np.asarray(clients[0].X).shape[1:])  # the clients' shape
        strategy = type(strategy)(**{**strategy.get_params(), "transfer": "general"})  # on Flower: the server's rows
    general = ctx.suite[ctx.general]
    val = (general.X_val, general.y_val) if getattr(strategy, "early_stopping", False) else None
    model = fitted_copy(ctx.large, copy.deepcopy(start))
    run = _simulation(_make_job(strategy, model, clients, ctx.settings, server_X, None, None, None, val), clients)
    return run.model.module_, run.rounds


flower_rounds.engine_name = "flower"  # type: ignore[attr-defined]  # what the report and FeedbackConfig.engine call it


def _simulation(job: _Job, clients: Sequence[Client],
                record: Callable[[int, str, str, str, np.ndarray], None] | None = None) -> FederatedRun:
    out: dict[str, tuple] = {}
    app = _server_app(lambda context: job, lambda context, job, result: out.setdefault("result", result), record)
    seconds = _simulate_apps(app, _client_app, clients)
    if "result" not in out:
        raise RuntimeError("the Flower simulation ended without a result from the ServerApp; see the log above")
    module, log, accuracy = out["result"]
    epsilon = job.strategy.epsilon(len(log)) if callable(getattr(job.strategy, "epsilon", None)) else None
    return FederatedRun(fitted_copy(job.model, module), log, accuracy, seconds, epsilon)


def _simulate_apps(server_app: Any, client_app: Callable[[str], Any], clients: Sequence[Client]) -> float:
    """Run ``server_app`` and one ``client_app(data_dir)`` per client in Flower's Simulation Runtime
    (Ray, 1 CPU per client), client ``i``'s rows in ``data_dir/partition-<i>.npz``; return the seconds."""
    _flwr()
    if importlib.util.find_spec("ray") is None:  # flwr's run_simulation would exit the interpreter
        raise missing_dependency("ray", "federated")
    from flwr.simulation import run_simulation

    flwr_log = logging.getLogger("flwr")
    level, pythonpath = flwr_log.level, os.environ.get("PYTHONPATH")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crossfeed-flower-") as data_dir:
        for i, c in enumerate(clients):
            _write_rows(Path(data_dir) / f"partition-{i}.npz", c)
        cpus = max(1, min(len(clients), os.cpu_count() or 1))
        flwr_log.setLevel(logging.WARNING)
        try:
            run_simulation(server_app=server_app, client_app=client_app(data_dir), num_supernodes=len(clients),
                           backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                           "init_args": {"num_cpus": cpus}})
        finally:
            flwr_log.setLevel(level)
            if pythonpath is None:  # Ray's backend exports this process's sys.path as PYTHONPATH
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = pythonpath
    return time.perf_counter() - t0


def _write_rows(path: Path, client: Client) -> None:
    np.savez(path, X=np.asarray(client.X, dtype=np.float32), y=_plain(client.y))


# -- a deployment: flwr run --------------------------------------------------------------------
@dataclass(frozen=True)
class FlowerJob:
    """A federated run written to disk for ``flwr run`` (:func:`write_flower_job`).

    Attributes
    ----------
    directory : the job folder; the ServerApp reads it and writes its result into ``result/``.
    client_files : the data file of every client, by partition id; give client ``i``'s file to
        SuperNode ``i`` only (:meth:`node_config`).
    """

    directory: Path
    client_files: tuple[Path, ...]

    def node_config(self, partition_id: int) -> str:
        """``--node-config`` of the SuperNode of client ``partition_id``."""
        return (f"partition-id={int(partition_id)} num-partitions={len(self.client_files)} "
                f"data-path='{self.client_files[partition_id]}'")

    def run_config(self, *, record: bool = False) -> str:
        """``--run-config`` of ``flwr run``; ``record``: the server also writes every array it
        received to ``result/received.npz`` (an audit of what left the clients)."""
        return f"job='{self.directory}' record={'true' if record else 'false'}"


def write_flower_job(directory: str | os.PathLike[str], strategy: RoundsStrategy, model: TorchClassifier,
                     clients: Sequence[Client], *, settings: TrainSettings | None = None, server_X: Any = None,
                     server_y: Any = None, server_val: tuple[Any, Any] | None = None,
                     test: tuple[Any, Any] | None = None, timeout_s: float | None = None,
                     node_wait_s: float = NODE_WAIT_S) -> FlowerJob:
    """Write what a deployed ServerApp needs into ``directory/server`` and every client's rows into
    ``directory/clients/partition-<i>.npz``; same arguments as :func:`run_flower`.

    The server folder holds the strategy's name and parameters, the settings and the clients'
    names (``job.json``), the initial model (:func:`crossfeed.models.save_model`) and the server's
    and test rows (``server.npz``): no client row. Hand each SuperNode its own file only. Then::

        flwr run <write_flower_app(dir)> <superlink connection> --run-config "<job.run_config()>"

    and read the result with :func:`read_flower_run`.
    """
    settings = settings or TrainSettings()
    job = _make_job(strategy, model, clients, settings, server_X, server_y, test, timeout_s, server_val)
    root = Path(directory).absolute()
    server, data = root / "server", root / "clients"
    server.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    save_model(model, server / "model")
    arrays = {k: v for k, v in {"server_X": job.server_X, "server_y": job.server_y,
                                "test_X": None if job.test is None else job.test[0],
                                "test_y": None if job.test is None else job.test[1],
                                "val_X": None if job.server_val is None else job.server_val[0],
                                "val_y": None if job.server_val is None else job.server_val[1]}.items() if v is not None}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(server / "server.npz", buffer.getvalue())
    atomic_write_bytes(server / "job.json", json.dumps({
        "format": JOB_FORMAT, "format_version": 1, "strategy": strategy.name,
        "params": _jsonable(strategy.get_params(), "strategy parameters"), "settings": settings.to_dict(),
        "clients": job.names, "sample_shape": list(job.sample_shape), "timeout_s": timeout_s,
        "node_wait_s": float(node_wait_s)}, indent=2).encode())
    files = []
    for i, c in enumerate(clients):
        files.append(data / f"partition-{i}.npz")
        _write_rows(files[-1], c)
    return FlowerJob(server, tuple(files))


def _load_job(directory: str | os.PathLike[str]) -> _Job:
    root = Path(directory)
    path = root / "job.json"
    if not path.is_file():
        raise ValidationError(f"{root} is not a flower job: no job.json in it; write one with write_flower_job and "
                              "pass its server folder as --run-config \"job='...'\"")
    spec = json.loads(path.read_text())
    if spec.get("format") != JOB_FORMAT:
        raise ValidationError(f"{path} is not a {JOB_FORMAT} file (format={spec.get('format')!r})")
    cls = STRATEGIES.get(spec["strategy"])
    with np.load(root / "server.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    test = (arrays["test_X"], arrays["test_y"]) if "test_X" in arrays else None
    val = (arrays["val_X"], arrays["val_y"]) if "val_X" in arrays else None
    return _Job(cls(**cls.check_params(spec["params"])), load_model(root / "model"), list(spec["clients"]),
                tuple(spec["sample_shape"]), TrainSettings(**spec["settings"]), arrays.get("server_X"),
                arrays.get("server_y"), test, spec["timeout_s"], float(spec["node_wait_s"]), val)


def _deployed_job(context: Any) -> _Job:
    job = str(context.run_config.get("job", ""))
    if not job:
        raise ValidationError("the crossfeed ServerApp needs --run-config \"job='/path/to/job/server'\" "
                              "(FlowerJob.run_config())")
    return _load_job(job)


def _write_result(context: Any, job: _Job, result: tuple) -> None:
    from safetensors.torch import save_file

    module, log, accuracy = result
    out = Path(str(context.run_config["job"])) / "result"
    out.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(out / "final.safetensors"))
    rounds = [{"round": r.round, "clients": list(r.clients), "kept_previous": r.kept_previous, "seconds": r.seconds,
               "bytes_sent": r.bytes_sent, "failures": [[f.client, f.reason] for f in r.failures]} for r in log]
    # log.json is the "finished" marker read_flower_run waits for: written whole or not at all
    atomic_write_bytes(out / "log.json", json.dumps({"rounds": rounds, "accuracy": accuracy}, indent=2).encode())


def _deployed_server_app() -> Any:
    received: dict[str, np.ndarray] = {}

    def record(r: int, client: str, rec: str, key: str, a: np.ndarray) -> None:
        received[f"{r}|{client}|{rec}|{key}|{len(received)}"] = a

    def done(context: Any, job: _Job, result: tuple) -> None:
        _write_result(context, job, result)
        if context.run_config.get("record", False):
            np.savez(Path(str(context.run_config["job"])) / "result" / "received.npz", **received)
        received.clear()

    return _server_app(_deployed_job, done, record)


def read_flower_run(directory: str | os.PathLike[str]) -> FederatedRun:
    """The :class:`FederatedRun` a deployed ServerApp wrote into ``directory/result`` (the job's server folder)."""
    from safetensors.torch import load_file

    root = Path(directory)
    out = root / "result"
    if not (out / "log.json").is_file():
        raise ValidationError(f"{out} holds no result yet: the run has not finished (or failed; see `flwr log`)")
    model = load_model(root / "model")
    module = copy.deepcopy(model.module_)
    module.load_state_dict(load_file(str(out / "final.safetensors")))
    spec = json.loads((out / "log.json").read_text())
    log = [RoundLog(r["round"], tuple(r["clients"]), tuple(Failure(c, why) for c, why in r["failures"]),
                    r["kept_previous"], r["seconds"], r["bytes_sent"]) for r in spec["rounds"]]
    return FederatedRun(fitted_copy(model, module), log, list(spec["accuracy"]), sum(r.seconds for r in log))


_APP_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "crossfeed-federated"
version = "0.1.0"
description = "crossfeed's federated strategies as Flower apps (ServerApp + ClientApp)"
license = "Apache-2.0"
dependencies = ["crossfeed[federated]"]

[tool.flwr.app]
publisher = "crossfeed"

[tool.flwr.app.components]
serverapp = "crossfeed.federated.flower_app:server_app"
clientapp = "crossfeed.federated.flower_app:client_app"

[tool.flwr.app.config]
job = ""
record = false
"""


def write_flower_app(directory: str | os.PathLike[str]) -> Path:
    """Write the Flower app folder (``pyproject.toml``) that ``flwr run`` builds into a FAB.

    Its components are :data:`crossfeed.federated.flower_app.server_app` and ``client_app``, imported
    from the installed crossfeed (the SuperLink and every SuperNode need ``crossfeed[federated]``;
    start the SuperLink with ``--disable-runtime-dependency-installation`` where it cannot reach
    an index). Returns the folder.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(_APP_PYPROJECT)
    return root
