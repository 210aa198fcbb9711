"""The one training loop. Distillation, EWC, proximal terms and adversarial losses are hooks on it."""

from __future__ import annotations

import copy
import logging
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.training._distributed import (
    World,
    average_buffers,
    broadcast_from_main,
    prepare_module,
    sum_gradients,
    sum_scalar,
    world,
)
from crossfeed.training._hooks import Batch, TrainingHook

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "adam", "sgd")


def default_threads() -> int:
    """torch intra-op threads crossfeed trains with when none are given: half the CPUs the process
    may use, at least 1 and at most 8.

    torch's own default (every core) oversubscribes a small machine as soon as another process is
    busy. On the project's 2-core machine (``python benchmarks/threads.py``, results/threads.json)
    a small-MLP fit took a median 0.151 s with 1 thread against 4.019 s with 2 threads (torch's
    default there) while another process was busy, and 0.158 s against 1.868 s otherwise.
    Small models gain little from more threads; large ones are given more by passing ``threads``.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 2))


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch intra-op threads (None: :func:`default_threads`); restore after."""
    n = default_threads() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"threads must be None or an integer >= 1; got {n!r}")
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's global generators (dropout masks, ``torch.rand``) seeded from
    ``seed``; restore their state after.

    :func:`train` shuffles with its own generator (``TrainConfig.seed``) but dropout draws from the
    global one, so without this a run depends on what drew from it before (another client's
    training, a network built on the way). The engines of the rounds driver run every client step
    and the server's distillation inside it: the same step gives the same weights in this process,
    a Ray worker or a Flower SuperNode.

    Example
    -------
    >>> with seeded_rng(0):
    ...     a = torch.rand(2)
    >>> with seeded_rng(0):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


@dataclass
class TrainConfig:
    """Settings of :func:`train`.

    ``patience`` enables early stopping on the validation loss (only with validation data); the
    weights of the best epoch are restored at the end. ``distributed``: take part in an initialised
    ``torch.distributed`` process group (data-parallel, see :mod:`crossfeed.training._distributed`);
    False trains in this process alone even under torchrun.
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    patience: int | None = None
    device: str = "cpu"
    mixed_precision: bool = False
    grad_clip: float | None = None
    seed: int = 0
    threads: int | None = None
    distributed: bool = True

    def validate(self) -> None:
        if isinstance(self.epochs, bool) or not (isinstance(self.epochs, numbers.Integral) and self.epochs >= 1):
            raise ValidationError(f"epochs must be a positive integer; got {self.epochs!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValidationError(f"threads must be None or an integer >= 1; got {self.threads!r}")
        if isinstance(self.batch_size, bool) or not (isinstance(self.batch_size, numbers.Integral) and self.batch_size >= 1):
            raise ValidationError(f"batch_size must be a positive integer; got {self.batch_size!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValidationError(f"lr must be a positive finite number; got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValidationError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.patience is not None and self.patience < 1:
            raise ValidationError(f"patience must be None or >= 1; got {self.patience!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns: per-epoch logs and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` -> a torch device, with a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValidationError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError(
            f"device {device!r} was requested but CUDA is not available here; use device='cpu' or 'auto'"
        )
    return dev


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against probability targets; shape (batch,)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def _make_optimizer(name: str, params: list[nn.Parameter], lr: float, wd: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9)


def evaluate_loss(
    module: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``module`` on ``(X, y)``, in eval mode."""
    was_training = module.training
    module.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            logits = module(X[start : start + batch_size]).float()
            yb = y[start : start + batch_size]
            total += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    module.train(was_training)
    return total / len(X), correct / len(X)


def train(
    module: nn.Module,
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    config: TrainConfig | None = None,
    sample_weight: np.ndarray | None = None,
    soft_targets: np.ndarray | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    hooks: Sequence[TrainingHook] = (),
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``module`` in place with mini-batch gradient descent.

    Parameters
    ----------
    module : nn.Module mapping (batch, n_features) to logits (batch, n_classes).
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,), class indices 0..n_classes-1.
    config : TrainConfig
    sample_weight : array of shape (n_samples,), optional
    soft_targets : array of shape (n_samples, n_classes), optional
        Probability targets that replace the one-hot labels in the base loss.
    X_val, y_val : validation data, optional; logged every epoch and used for early stopping.
        With a base-loss hook, ``y`` and ``y_val`` only fill ``Batch.y``: a hook that looks its
        targets up by ``Batch.index`` (e.g. real-valued ratings) takes placeholders such as zeros.
    hooks : TrainingHook instances (see :class:`TrainingHook`).
    callback : called after every epoch with a dict (epoch, epochs, train_loss, val_loss,
        val_accuracy); the CLI uses it to draw progress bars.

    Returns
    -------
    TrainResult
    """
    cfg = config or TrainConfig()
    cfg.validate()
    with torch_threads(cfg.threads):
        return _train(module, X, y, cfg, sample_weight, soft_targets, X_val, y_val, hooks, callback)


def _train(
    module: nn.Module, X: Any, y: Any, cfg: TrainConfig, sample_weight: Any, soft_targets: Any, X_val: Any,
    y_val: Any, hooks: Sequence[TrainingHook], callback: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    device = resolve_device(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)

    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32)).to(device)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64)).to(device)
    wt = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight, dtype=np.float32)).to(device)
    st = None if soft_targets is None else torch.as_tensor(np.asarray(soft_targets, dtype=np.float32)).to(device)
    has_val = X_val is not None and y_val is not None and len(X_val) > 0
    if has_val:
        Xv = torch.as_tensor(np.asarray(X_val, dtype=np.float32)).to(device)
        yv = torch.as_tensor(np.asarray(y_val, dtype=np.int64)).to(device)

    w = world() if cfg.distributed else World()
    module = prepare_module(module, device, w)
    module.to(device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    n_module_params = len(params)
    for hook in hooks:
        params.extend(hook.setup(module, device) or [])
    if not params:
        raise ValidationError("the module has no trainable parameters; unfreeze some layers before training")
    broadcast_from_main([*module.state_dict(keep_vars=True).values(), *params[n_module_params:]], w)
    optimizer = _make_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay)
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if cfg.mixed_precision and device.type == "cuda"
        else nullcontext()
    )

    result = TrainResult()
    best_loss, best_state, bad_epochs = math.inf, None, 0
    n = len(Xt)
    try:
        for epoch in range(cfg.epochs):
            module.train()
            running, seen = torch.zeros((), device=device), 0
            for batch_index in _epoch_batches(hooks, epoch, n, cfg.batch_size, generator, device):
                idx = w.shard(batch_index)  # the whole batch in a single-process run
                optimizer.zero_grad(set_to_none=True)
                if len(idx):
                    batch = Batch(
                        x=Xt[idx], y=yt[idx], index=idx,
                        weight=None if wt is None else wt[idx],
                        soft=None if st is None else st[idx],
                    )
                    with autocast:
                        logits = module(batch.x).float()
                        loss = _batch_loss(batch, logits, module, hooks, share=len(idx) / len(batch_index),
                                           weight_total=wt[batch_index].sum() if wt is not None and w.parallel else None)
                    loss.backward()
                    running += loss.detach() * len(batch_index)  # no per-batch host sync
                sum_gradients(params, w)
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                seen += len(batch_index)
            average_buffers(module, w)
            running = sum_scalar(running, w)
            logs: dict[str, Any] = {"epoch": epoch + 1, "epochs": cfg.epochs, "train_loss": running.item() / seen}
            if not math.isfinite(logs["train_loss"]):
                raise ValidationError(
                    f"training diverged: the loss is {logs['train_loss']} in epoch {epoch + 1} (NaN or inf). Lower the "
                    f"learning rate (lr={cfg.lr}), check the inputs and targets for NaN/inf, or clip gradients (grad_clip)"
                )
            if has_val:
                base_val = _base_val_loss(module, Xv, yv, hooks)
                if base_val is None:
                    logs["val_loss"], logs["val_accuracy"] = evaluate_loss(module, Xv, yv)
                else:
                    logs["val_loss"] = base_val
            result.history.append(logs)
            if callback is not None:
                callback(dict(logs))
            stop = any(bool(h.on_epoch_end(epoch + 1, dict(logs))) for h in hooks)
            if has_val and cfg.patience is not None:
                if logs["val_loss"] < best_loss - 1e-6:
                    best_loss, bad_epochs, result.best_epoch = logs["val_loss"], 0, epoch + 1
                    best_state = copy.deepcopy(module.state_dict())
                else:
                    bad_epochs += 1
                    if bad_epochs >= cfg.patience:
                        stop = True
            if stop:
                result.stopped_early = epoch + 1 < cfg.epochs
                break
    finally:
        for hook in hooks:
            hook.teardown(module)
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    module.eval()
    return result


def _epoch_batches(hooks: Sequence[TrainingHook], epoch: int, n: int, batch_size: int, generator: torch.Generator,
                   device: torch.device) -> Iterator[torch.Tensor]:
    """The epoch's mini-batches: a hook's sampler if one gives one, else a shuffled order."""
    samplers = [b for b in (h.batches(epoch, n, batch_size, generator) for h in hooks) if b is not None]
    if len(samplers) > 1:
        raise ValidationError(f"{len(samplers)} hooks returned a batch sampler; at most one may")
    if samplers:
        for idx in samplers[0]:
            yield torch.as_tensor(idx, dtype=torch.long).to(device)
        return
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _base_val_loss(module: nn.Module, Xv: torch.Tensor, yv: torch.Tensor, hooks: Sequence[TrainingHook],
                   batch_size: int = 1024) -> float | None:
    """Mean of a base-loss hook over the validation data, or None when no hook gives one there."""
    if all(type(h).base_loss is TrainingHook.base_loss for h in hooks):
        return None  # no hook overrides base_loss: skip the extra forward pass
    was_training = module.training
    module.eval()
    total = torch.zeros((), dtype=torch.float64, device=Xv.device)
    try:
        with torch.no_grad():
            for start in range(0, len(Xv), batch_size):
                idx = torch.arange(start, min(start + batch_size, len(Xv)), device=Xv.device)
                batch = Batch(x=Xv[idx], y=yv[idx], index=idx, validation=True)
                logits = module(batch.x).float()
                bases = [b for b in (h.base_loss(batch, logits, module) for h in hooks) if b is not None]
                if not bases:
                    return None
                if len(bases) > 1:
                    raise ValidationError(f"{len(bases)} hooks returned a base loss for the same batch; at most one may")
                total += (bases[0].sum() if bases[0].ndim else bases[0] * len(idx)).double()
    finally:
        module.train(was_training)
    return total.item() / len(Xv)


def _batch_loss(batch: Batch, logits: torch.Tensor, module: nn.Module, hooks: Sequence[TrainingHook], *,
                share: float = 1.0, weight_total: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of ``batch``, scaled to its ``share`` of the global mini-batch (1 in a single-process
    run: each rank of a data-parallel run holds a shard, and the ranks' losses sum to the global one).
    ``weight_total``: the sum of the sample weights over the global batch.
    """
    bases = [b for b in (h.base_loss(batch, logits, module) for h in hooks) if b is not None]
    if len(bases) > 1:
        raise ValidationError(f"{len(bases)} hooks returned a base loss for the same batch; at most one may")
    if bases:
        return _add_extras(_scaled(bases[0].mean() if bases[0].ndim else bases[0], share), batch, logits, module,
                           hooks, share)
    targets = [t for t in (h.targets(batch, module) for h in hooks) if t is not None]
    if len(targets) > 1:
        raise ValidationError(
            f"{len(targets)} hooks returned soft targets for the same batch; at most one may. "
            "Combine them into one hook (e.g. a weighted mix of teachers)"
        )
    soft = targets[0] if targets else batch.soft
    per_sample = soft_cross_entropy(logits, soft) if soft is not None else F.cross_entropy(logits, batch.y, reduction="none")
    if batch.weight is not None:
        total = batch.weight.sum() if weight_total is None else weight_total
        loss = (per_sample * batch.weight).sum() / total.clamp_min(1e-12)
    else:
        loss = _scaled(per_sample.mean(), share)
    return _add_extras(loss, batch, logits, module, hooks, share)


def _scaled(loss: torch.Tensor, share: float) -> torch.Tensor:
    return loss if share == 1.0 else share * loss


def _add_extras(loss: torch.Tensor, batch: Batch, logits: torch.Tensor, module: nn.Module,
                hooks: Sequence[TrainingHook], share: float) -> torch.Tensor:
    for hook in hooks:
        extra = hook.extra_loss(batch, logits, module)
        if extra is not None:
            loss = loss + _scaled(extra, share)
    return loss
