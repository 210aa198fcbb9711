"""The one training loop. Distillation, EWC, proximal terms and adversarial losses are hooks on it."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.training._hooks import Batch, TrainingHook

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass
class TrainConfig:
    """Settings of :func:`train`.

    ``patience`` enables early stopping on the validation loss (only with validation data); the
    weights of the best epoch are restored at the end.
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

    def validate(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValidationError(f"epochs must be a positive integer; got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
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
    hooks : TrainingHook instances (see :class:`TrainingHook`).
    callback : called after every epoch with a dict (epoch, epochs, train_loss, val_loss,
        val_accuracy); the CLI uses it to draw progress bars.

    Returns
    -------
    TrainResult
    """
    cfg = config or TrainConfig()
    cfg.validate()
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

    module.to(device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    for hook in hooks:
        params.extend(hook.setup(module, device) or [])
    if not params:
        raise ValidationError("the module has no trainable parameters; unfreeze some layers before training")
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
            order = torch.randperm(n, generator=generator).to(device)
            running, seen = torch.zeros((), device=device), 0
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                batch = Batch(
                    x=Xt[idx], y=yt[idx], index=idx,
                    weight=None if wt is None else wt[idx],
                    soft=None if st is None else st[idx],
                )
                with autocast:
                    logits = module(batch.x).float()
                    loss = _batch_loss(batch, logits, module, hooks)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                running += loss.detach() * len(idx)  # no per-batch host sync
                seen += len(idx)
            logs: dict[str, Any] = {"epoch": epoch + 1, "epochs": cfg.epochs, "train_loss": running.item() / seen}
            if has_val:
                logs["val_loss"], logs["val_accuracy"] = evaluate_loss(module, Xv, yv)
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


def _batch_loss(batch: Batch, logits: torch.Tensor, module: nn.Module, hooks: Sequence[TrainingHook]) -> torch.Tensor:
    targets = [t for t in (h.targets(batch, module) for h in hooks) if t is not None]
    if len(targets) > 1:
        raise ValidationError(
            f"{len(targets)} hooks returned soft targets for the same batch; at most one may. "
            "Combine them into one hook (e.g. a weighted mix of teachers)"
        )
    soft = targets[0] if targets else batch.soft
    per_sample = soft_cross_entropy(logits, soft) if soft is not None else F.cross_entropy(logits, batch.y, reduction="none")
    if batch.weight is not None:
        loss = (per_sample * batch.weight).sum() / batch.weight.sum().clamp_min(1e-12)
    else:
        loss = per_sample.mean()
    for hook in hooks:
        extra = hook.extra_loss(batch, logits, module)
        if extra is not None:
            loss = loss + extra
    return loss
