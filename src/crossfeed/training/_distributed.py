"""Data-parallel training with ``torch.distributed``: the one training loop on several processes.

Launch any crossfeed program with ``torchrun`` (``torchrun --nproc_per_node=2 -m crossfeed.cli run
CONFIG``); :func:`init_from_env` joins the process group that torchrun describes in the
environment, and from then on every call of :func:`crossfeed.training.train` is data-parallel:

- every rank holds the training arrays and draws the same seeded mini-batch order; each global
  mini-batch is dealt out to the ranks row by row (what ``DistributedSampler`` does per epoch, done
  per batch so that a run on W processes follows the single-process run batch for batch, and a
  balanced batch of several domains stays balanced on every rank);
- each rank's loss is scaled by its share of the batch and the gradients of every trainable
  parameter (the module's and the hooks' extra parameters) are summed with one all-reduce, so all
  ranks take the same optimizer step; parameters are broadcast from rank 0 before the first step;
- BatchNorm: on GPU the layers become ``SyncBatchNorm`` (global batch statistics); on CPU, where
  torch has no SyncBatchNorm, each rank normalises with its shard's statistics and the running
  statistics are averaged across ranks after every epoch, so every rank keeps the same model.
  Dropout draws its own masks on each rank;
- only the main process (rank 0) writes checkpoints (see :func:`is_main_process`).

With the same global batch size the result equals the single-process run up to float summation
order for models without BatchNorm or dropout (tested with 2 processes on CPU). Loss terms that
are statistics of the whole batch (CORAL, MMD, a discriminator's batch) see each rank's shard. Why not
``DistributedDataParallel``: hooks run parts of the module outside its ``forward`` (embeddings for
domain adaptation, feature captures for hints) and add parameters of their own; one explicit
all-reduce after ``backward`` covers all of them.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from crossfeed.exceptions import ValidationError

__all__ = ["World", "from_main", "init_from_env", "is_main_process", "world"]


@dataclass(frozen=True)
class World:
    """The process group a training run takes part in: ``size`` processes, this one is ``rank``."""

    rank: int = 0
    size: int = 1

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global mini-batch: every ``size``-th row from row ``rank``.

        Example
        -------
        >>> World(rank=1, size=2).shard(torch.arange(5))
        tensor([1, 3])
        """
        return index[self.rank:: self.size]


def world() -> World:
    """The current process group (``World(0, 1)`` when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single-process run): the process that writes files."""
    return world().rank == 0


def init_from_env(device: str = "cpu") -> World:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``); gloo on CPU, NCCL on CUDA. Without those variables (a plain
    ``python`` run) nothing happens and the world has one process.
    """
    if dist.is_available() and dist.is_initialized():
        return world()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    if not dist.is_available():
        raise ValidationError("WORLD_SIZE > 1 asks for a distributed run but this torch build has no torch.distributed")
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ValidationError(
            f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {missing} are not set; launch with torchrun "
            "(torchrun --nproc_per_node=2 -m crossfeed.cli run CONFIG), which sets them")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    atexit.register(_leave)
    return world()


def _leave() -> None:
    """Leave the process group at exit, all ranks together.

    Without the barrier a rank that finishes first tears its gloo connections down while another
    still holds its end open, and that rank can abort at exit ("terminate called without an active
    exception", about one run in twelve here). After an uncaught exception (``sys.last_value``)
    the other ranks may never arrive, so this rank leaves at once and torchrun stops the rest.
    """
    if not dist.is_initialized():
        return
    if getattr(sys, "last_value", None) is None:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=60))
            else:
                dist.barrier()
        except RuntimeError:  # a rank is gone: leave anyway
            pass
    dist.destroy_process_group()


def from_main(value: Any, w: World | None = None) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in a single-process run): how ranks agree
    on a decision that only the main process can take, such as a check of the output folder."""
    w = world() if w is None else w
    if not w.parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def prepare_module(module: nn.Module, device: torch.device, w: World) -> nn.Module:
    """``module`` ready for data-parallel training: SyncBatchNorm on GPU. Returns the module to train."""
    if w.parallel and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def broadcast_from_main(tensors: Sequence[torch.Tensor], w: World) -> None:
    """Overwrite ``tensors`` on every rank with rank 0's values."""
    if w.parallel:
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)


def sum_gradients(params: Sequence[nn.Parameter], w: World) -> None:
    """Sum every parameter's gradient over the ranks, in one flat all-reduce.

    A rank without a gradient for a parameter adds zeros; a parameter that no rank has a gradient
    for keeps ``grad = None`` (the optimizer skips it, as it would in a single-process run).
    """
    if not w.parallel or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    present = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([*(g.reshape(-1) for g in grads), present])
    dist.all_reduce(flat)
    offset = 0
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        n = g.numel()
        p.grad = flat[offset: offset + n].view_as(p).clone() if flat[-len(params) + i] > 0 else None
        offset += n


def sum_scalar(value: torch.Tensor, w: World) -> torch.Tensor:
    """``value`` summed over the ranks (itself in a single-process run)."""
    if w.parallel:
        value = value.clone()
        dist.all_reduce(value)
    return value


def average_buffers(module: nn.Module, w: World) -> None:
    """Average the floating buffers (BatchNorm running statistics) over the ranks."""
    if not w.parallel:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(w.size)
