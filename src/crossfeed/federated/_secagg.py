"""Secure aggregation: FedAvg / FedProx whose server sees only the sum of the clients' updates (SecAgg+).

Bell, Bonawitz, Gascón, Lepoint & Raykova (CCS 2020), "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", the protocol of Flower's ``SecAggPlusWorkflow`` /
``secaggplus_mod``. Flower offers it only through its legacy API (``LegacyContext``,
``DefaultWorkflow``, a ``Strategy`` and a ``NumPyClient`` with the mod), so this engine is a
second pair of apps beside :func:`~crossfeed.federated.run_flower`'s Message API ones; the client
step is the same (the rounds driver's one task, the same seeds).

What travels and what the server learns
---------------------------------------
Every round each client trains the received global network on its own rows and computes its
*update* ``trained - received`` over the floating-point state (weights, BatchNorm statistics).
``secaggplus_mod`` scales it by the client's weight ``n_rows / max_weight``, quantizes it
(``clipping_range``, ``quantization_range``), adds pairwise masks agreed with its neighbours and
a private mask, and sends that. The server sums the masked vectors, asks the surviving clients
for the shares that remove the masks (a dropped client's pairwise masks are reconstructed from
``reconstruction_threshold`` shares) and obtains only the weighted *mean* update; it adds it to
the global network. The server never holds a single client's update or rows. It does learn each
client's row count and its training seconds (sent in the clear beside the masked vector, as
FedAvg weights need them) and the mean update of the round, from which the next global network
follows; SecAgg+ protects against an honest-but-curious server, not against a malicious one that
lies about who dropped, nor does it add noise (combine with differential privacy for that).

Differences from the in-process FedAvg, all measured in the tests: quantization (an error of
``clipping_range / quantization_range`` per value, about 2e-7 at the defaults); integer buffers
(BatchNorm's batch counters) are not aggregated and keep the round's start value; a client whose
update leaves ``[-clipping_range, clipping_range]`` would be clipped silently by the mod, so it
refuses the round instead (an error reply: dropped and reported, as every failure).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.federated._flower import (
    NODE_WAIT_S,
    _architecture,
    _build,
    _client_rows,
    _client_step,
    _jsonable,
    _partition_id,
    _shell,
    _simulate_apps,
    _step_spec,
)
from crossfeed.federated._simulate import Client, FederatedRun, _check_inputs
from crossfeed.feedback import (
    STRATEGIES,
    DPFedAvg,
    Failure,
    FedAvg,
    FedDF,
    FeedbackContext,
    LocalTask,
    RoundLog,
    TrainSettings,
    finite_arrays,
)
from crossfeed.models import TorchClassifier, fitted_copy
from crossfeed.training import torch_threads

__all__ = ["SecAggPlus", "run_secure"]


@dataclass(frozen=True)
class SecAggPlus:
    """Settings of the SecAgg+ protocol (Flower's ``SecAggPlusWorkflow``).

    Attributes
    ----------
    num_shares : int >= 3, or a float in (0, 1]: the share of the clients; every client's secret
        is split into this many shares, one per neighbour (an odd number is best).
    reconstruction_threshold : int >= 2, or a float in (0, 1]: the share of ``num_shares``; the
        shares needed to reconstruct a dropped client's masks. Higher: more privacy, less
        tolerance to dropped clients.
    clipping_range : float > 0; updates are quantized within ``[-clipping_range, clipping_range]``
        (a client whose update leaves it refuses the round).
    quantization_range : int, levels of the quantization (2**22: an error of about 2e-7 at
        ``clipping_range`` 1).
    modulus_range : int, a power of 2 above ``quantization_range`` (the masks' range).
    timeout_s : seconds the server waits for each stage's replies (None: for all of them).
    """

    num_shares: int | float = 1.0
    reconstruction_threshold: int | float = 0.67
    clipping_range: float = 1.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.clipping_range <= 0:
            raise ValidationError(f"clipping_range must be > 0; got {self.clipping_range!r}")
        for name in ("num_shares", "reconstruction_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or (isinstance(v, float) and v > 1):
                raise ValidationError(f"{name} must be an integer (a count) or a float in (0, 1] (a share); got {v!r}")
        if isinstance(self.num_shares, int) and self.num_shares < 3:
            raise ValidationError(f"num_shares must be at least 3 (a client and two neighbours); got {self.num_shares}")
        if isinstance(self.reconstruction_threshold, int) and self.reconstruction_threshold < 2:
            raise ValidationError(f"reconstruction_threshold must be at least 2; got {self.reconstruction_threshold}")
        if not isinstance(self.quantization_range, int) or self.quantization_range < 2:
            raise ValidationError(f"quantization_range must be an integer >= 2; got {self.quantization_range!r}")
        m = self.modulus_range
        if not isinstance(m, int) or m <= self.quantization_range or m > 2**32 or m & (m - 1):
            raise ValidationError(f"modulus_range must be a power of 2 above quantization_range and at most 2**32; "
                                  f"got {m!r}")

    def workflow(self, max_weight: float) -> Any:
        from flwr.server.workflow import SecAggPlusWorkflow

        return SecAggPlusWorkflow(self.num_shares, self.reconstruction_threshold, max_weight=float(max_weight),
                                  clipping_range=self.clipping_range, quantization_range=self.quantization_range,
                                  modulus_range=self.modulus_range, timeout=self.timeout_s)


def _float_keys(module: nn.Module) -> list[str]:
    """The state entries that are aggregated: the floating-point ones, in ``state_dict`` order."""
    return [k for k, v in module.state_dict().items() if v.is_floating_point()]


def _float_state(module: nn.Module) -> list[np.ndarray]:
    state = module.state_dict()
    return [state[k].detach().cpu().numpy().astype(np.float32) for k in _float_keys(module)]


def _load_float_state(module: nn.Module, arrays: Sequence[np.ndarray]) -> nn.Module:
    keys = _float_keys(module)
    if len(keys) != len(arrays):
        raise ValidationError(f"expected {len(keys)} floating-point arrays of the network's state, got {len(arrays)}")
    state = module.state_dict()
    for k, a in zip(keys, arrays, strict=True):
        state[k] = torch.as_tensor(np.asarray(a, dtype=np.float32).reshape(state[k].shape)).to(state[k].dtype)
    module.load_state_dict(state)
    return module


def _payload_bytes(content: Any) -> int:
    """What a reply carries: its arrays' bytes, and its config values (keys, ciphertexts, shares)."""
    total = sum(len(a.data) for rec in content.array_records.values() for a in rec.values())
    for rec in content.config_records.values():
        for v in rec.values():
            items = v if isinstance(v, list) else [v]
            total += sum(len(x) if isinstance(x, (bytes, str)) else 8 for x in items)
    return total


class _CountingGrid:
    """A Grid that counts the bytes of every reply, stage after stage."""

    def __init__(self, grid: Any) -> None:
        self.grid, self.received = grid, 0

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self.received += sum(_payload_bytes(m.content) for m in replies if m.has_content())
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)


def _client_of(reason: str) -> str:
    """The client an error reply names (the client step's errors start ``client 'name'``), else "?"."""
    start = reason.find("client '")
    return reason[start + 8:reason.index("'", start + 8)] if start >= 0 and "'" in reason[start + 8:] else "?"


def _server_strategy(job: _SecureJob, grid: _CountingGrid) -> Any:
    """A Flower ``Strategy`` around the global network: FitIns for every client, the global network
    plus the securely averaged update, the round log and the test accuracy."""
    from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import Strategy

    class SecureFedAvg(Strategy):
        def __init__(self) -> None:
            self.module = copy.deepcopy(job.model.module_).cpu()
            self.log: list[RoundLog] = []
            self.accuracy: list[float] = []
            self._open: tuple[int, float, int] | None = None  # round, start time, bytes before it

        def _close(self, clients: tuple[str, ...], failures: tuple[Failure, ...], kept: bool) -> None:
            r, t0, before = self._open
            self.log.append(RoundLog(r, clients, failures, kept, time.perf_counter() - t0, grid.received - before))
            self._open = None

        def initialize_parameters(self, client_manager: Any) -> Any:
            return ndarrays_to_parameters(_float_state(self.module))

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list:
            if self._open is not None:  # the protocol halted in the last round: too few clients answered
                self._close((), (Failure("*", "secure aggregation halted: fewer clients than the reconstruction "
                                              "threshold answered"),), True)
            self._open = (server_round, time.perf_counter(), grid.received)
            client_manager.wait_for(len(job.names), timeout=job.node_wait_s)
            config = {"round": server_round, "strategy": job.strategy.name, "names": json.dumps(job.names),
                      "params": json.dumps(_jsonable(job.strategy.get_params(), "strategy parameters")),
                      "settings": json.dumps(job.settings.to_dict()), "architecture": json.dumps(job.arch),
                      "clipping-range": float(job.secure.clipping_range)}
            return [(proxy, FitIns(parameters, config)) for proxy in client_manager.all().values()]

        def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple[Any, dict]:
            # the workflow may list one error reply twice (its masked-vector stage records failures in two loops)
            dropped = tuple(Failure(_client_of(str(f)), str(f)) for f in dict.fromkeys(str(f) for f in failures))
            names = tuple(sorted(str(res.metrics.get("client", "?")) for _, res in results))
            mean = parameters_to_ndarrays(results[0][1].parameters) if results else None
            if mean is None or not finite_arrays({str(i): torch.as_tensor(a) for i, a in enumerate(mean)}):
                self._close(names, dropped + ((Failure("*", "non-finite mean update"),) if results else ()), True)
                return None, {}
            new = [w + d for w, d in zip(_float_state(self.module), mean, strict=True)]
            self.module = _load_float_state(self.module, new)
            self._close(names, dropped, False)
            return ndarrays_to_parameters(new), {}

        def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> list:
            return []

        def aggregate_evaluate(self, server_round: int, results: list, failures: list) -> tuple[None, dict]:
            return None, {}

        def evaluate(self, server_round: int, parameters: Any) -> None:
            if server_round >= 1 and job.test is not None:
                model = fitted_copy(job.model, copy.deepcopy(self.module))
                self.accuracy.append(float(model.score(*job.test)))
            return None

    return SecureFedAvg()


@dataclass
class _SecureJob:
    strategy: FedAvg
    model: TorchClassifier
    names: list[str]
    settings: TrainSettings
    secure: SecAggPlus
    max_weight: float
    arch: dict[str, Any]
    test: tuple[np.ndarray, np.ndarray] | None
    node_wait_s: float = NODE_WAIT_S


def _secure_server_app(job: _SecureJob, out: dict[str, Any]) -> Any:
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        counting = _CountingGrid(grid)
        strategy = _server_strategy(job, counting)
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=job.strategy.rounds), strategy=strategy)
        with torch_threads(job.settings.threads):
            DefaultWorkflow(fit_workflow=job.secure.workflow(job.max_weight))(counting, legacy)
        if strategy._open is not None:
            strategy._close((), (Failure("*", "secure aggregation halted: fewer clients than the reconstruction "
                                              "threshold answered"),), True)
        out["result"] = (strategy.module, strategy.log, strategy.accuracy)

    return app


def _secure_client_app(data_dir: str | None = None) -> Any:
    """A legacy ClientApp with ``secaggplus_mod``: its NumPyClient's ``fit`` is the client step."""
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp

    class SecureClient(NumPyClient):
        def __init__(self, context: Any) -> None:
            self.context = context

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
            return _secure_step(self.context, data_dir, parameters, config)

    return ClientApp(client_fn=lambda context: SecureClient(context).to_client(), mods=[_errors_as_replies, secaggplus_mod])


def _errors_as_replies(message: Any, context: Any, call_next: Any) -> Any:
    """A client mod: whatever goes wrong in the client's step is an error reply
    ``"<Exception>: <message>"`` (SecAgg+ then treats the client as dropped), never a crash."""
    from flwr.app import Error, Message

    try:
        return call_next(message, context)
    except Exception as exc:  # failure is part of the contract: reported to the server, never raised here
        return Message(Error(code=2, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)


def _secure_step(context: Any, data_dir: str | None, parameters: list[np.ndarray],
                 config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
    """Train the received network on the own rows (the rounds driver's one task); return the update."""
    X_own, y_own = _client_rows(context, data_dir)
    pid = _partition_id(context)
    name = json.loads(str(config["names"]))[pid]
    strategy, settings, arch = _step_spec(config)
    start = _load_float_state(_build(arch), parameters)
    X = np.asarray(X_own, dtype=np.float32).reshape(len(X_own), int(arch["n_features"]))
    y = np.asarray(y_own).astype(np.int64)  # the server sent class indices (see run_secure)
    ctx = FeedbackContext(large=_shell(arch, np.arange(int(arch["n_classes"])), start), experts={name: None},
                          suite=None, settings=settings)
    task = LocalTask(name, X, y, weight=len(y), start=start, hooks=strategy.client_hooks(start))
    trained, reason = _client_step(task, ctx, 1000 * int(config["round"]) + pid, lambda module, task: module.state_dict())
    if trained is None:
        raise ValidationError(reason)
    update = [t - s for t, s in zip(_float_state(trained.module), parameters, strict=True)]
    limit = float(config["clipping-range"])
    largest = max((float(np.abs(u).max()) for u in update if u.size), default=0.0)
    if largest > limit:
        raise ValidationError(f"client {name!r}: its update reaches {largest:.3g}, outside the clipping range "
                              f"[-{limit:g}, {limit:g}] that SecAgg+ quantizes in; raise SecAggPlus.clipping_range "
                              "(or lower the learning rate or local epochs)")
    return update, len(y), {"client": name, "seconds": float(trained.seconds)}


def run_secure(strategy: FedAvg, model: TorchClassifier, clients: Sequence[Client], *,
               settings: TrainSettings | None = None, secure: SecAggPlus | None = None,
               test: tuple[Any, Any] | None = None) -> FederatedRun:
    """FedAvg or FedProx over ``clients`` with SecAgg+ secure aggregation, in Flower's Simulation Runtime.

    Same arguments and result as :func:`~crossfeed.federated.run_flower` (server rows are not
    needed: FedAvg and FedProx read none); the final weights equal :func:`simulate`'s up to the
    quantization of the updates (see the module docstring for what the server does and does not
    learn). ``rounds[i].bytes_sent`` counts every byte the clients sent in round ``i``, all four
    SecAgg+ stages included. Needs ``crossfeed[federated]``.

    Refused: FedDF (its server distils the ensemble of the individual client networks, which
    secure aggregation hides by design), DP-FedAvg (its server clips each update; clip on the
    clients instead), FedMD and the strategies ``run_flower`` refuses.
    """
    secure = secure or SecAggPlus()
    settings = settings or TrainSettings()
    job = _secure_job(strategy, model, clients, settings, secure, test)
    out: dict[str, Any] = {}
    labels = [Client(c.name, c.X, np.searchsorted(model.classes_, np.asarray(c.y))) for c in clients]
    seconds = _simulate_apps(_secure_server_app(job, out), _secure_client_app, labels)
    if "result" not in out:
        raise RuntimeError("the Flower simulation ended without a result from the ServerApp; see the log above")
    module, log, accuracy = out["result"]
    return FederatedRun(fitted_copy(model, module), log, accuracy, seconds)


def _secure_job(strategy: Any, model: TorchClassifier, clients: Sequence[Client], settings: TrainSettings,
                secure: SecAggPlus, test: tuple[Any, Any] | None) -> _SecureJob:
    try:
        import flwr.server.workflow  # noqa: F401
    except ImportError:
        raise missing_dependency("flwr", "federated") from None
    if not isinstance(strategy, FedAvg) or isinstance(strategy, (FedDF, DPFedAvg)):
        raise ValidationError(
            f"secure aggregation runs fedavg and fedprox: the server sees only the sum of the updates; got "
            f"{getattr(strategy, 'name', type(strategy).__name__)!r}, whose server needs each client's network or "
            "update (FedDF distils their ensemble, DP-FedAvg clips each update). Use run_flower or simulate")
    if strategy.fraction < 1.0:
        raise ValidationError(f"run_secure trains every client every round (SecAgg+ masks over the whole "
                              f"cohort); got fraction={strategy.fraction}. Use fraction=1.0, or run_flower / simulate")
    registered = STRATEGIES.get(strategy.name)
    if not isinstance(strategy, registered):
        raise ValidationError(f"the ClientApp rebuilds the strategy from its registered name {strategy.name!r}; "
                              f"register {type(strategy).__name__} under a name of its own")
    strategy.validate()
    if not isinstance(secure, SecAggPlus):
        raise ValidationError(f"secure must be a crossfeed.federated.SecAggPlus; got {type(secure).__name__}")
    _check_inputs(model, clients, "run_secure")
    if len(clients) < 3:
        raise ValidationError(f"SecAgg+ needs at least 3 clients (each masks with two neighbours); got {len(clients)}")
    test_ = None if test is None else (np.asarray(test[0], dtype=np.float32), np.asarray(test[1]))
    return _SecureJob(strategy, model, [c.name for c in clients], settings, secure,
                      max_weight=float(max(len(c.y) for c in clients)), arch=_architecture(model), test=test_)
