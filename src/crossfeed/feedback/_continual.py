"""Continual learning: absorb domains one after another without forgetting the earlier ones.

Setting (c) of the feedback benchmarks (:func:`crossfeed.feedback.absorb_sequence`): each step
learns the current experts' domains, data-free, from their unlabelled field data with the experts
as teachers (cross-entropy against the expert's probabilities), and protects what came before.
The general labelled data is *not* trained on again (replay's small memory excepted), so the
protection is what keeps the general domain.

- ``"sequential_kd"`` (:class:`SequentialKD`): no protection; the lower reference of setting (c).
- ``"ewc"`` (:class:`EWC`): elastic weight consolidation, Kirkpatrick et al. (PNAS 2017),
  arXiv 1612.00796, in its online form (Schwarz et al. 2018, "Progress & Compress",
  arXiv 1805.06370): one running diagonal Fisher, anchored at the model before each step.
- ``"lwf"`` (:class:`LwF`): learning without forgetting, Li & Hoiem (2016), arXiv 1606.09282: the
  model before the step distils into the new one on the current data.
- ``"replay"`` (:class:`Replay`): experience replay from a tiny episodic memory, Chaudhry et al.
  (2019), "On Tiny Episodic Memories in Continual Learning", arXiv 1902.10486.

The strategies live one per module (``sequential_kd``, ``ewc``, ``lwf``, ``replay``); this
module holds what they share. One strategy instance serves a whole sequence: ``remember`` carries the Fisher information (EWC)
or the memory (replay) from one step to the next. Use a fresh instance for a new sequence. All
four keep batch norm's running statistics fixed during a step by default (``freeze_norm_stats``):
no weight penalty protects them. The pure maths (:func:`diagonal_fisher`, :func:`ewc_penalty`,
:func:`balanced_quotas`) and the training hooks (:class:`EWCHook`, :class:`KDTermHook`,
:class:`FrozenNormStatsHook`) are usable on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from crossfeed.distill import kd_loss
from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.feedback._base import flat
from crossfeed.training import Batch, TrainingHook

__all__ = [
    "EWCHook",
    "FrozenNormStatsHook",
    "KDTermHook",
    "balanced_quotas",
    "check_covers_classes",
    "diagonal_fisher",
    "ewc_penalty",
]

_FISHER_BATCH = 128


# -- the maths -------------------------------------------------------------------------------
def diagonal_fisher(module: nn.Module, X: np.ndarray, *, batch_size: int = _FISHER_BATCH) -> dict[str, torch.Tensor]:
    """Diagonal of the Fisher information of ``module`` on ``X``, per trainable parameter.

    ``F = mean_i sum_c p(c | x_i) · (d log p(c | x_i) / d theta)²``: the expectation is taken under
    the model's own predictive distribution, so no labels are needed. The module is evaluated in
    eval mode (batch norm uses its running statistics); it is not modified.

    Parameters
    ----------
    module : nn.Module mapping (batch, n_features) to logits (batch, n_classes).
    X : array of shape (n_samples, n_features)
    batch_size : samples per vectorised chunk.

    Returns
    -------
    dict parameter name -> tensor of the parameter's shape (CPU, float32).

    Example
    -------
    >>> net = nn.Linear(3, 2)
    >>> fisher = diagonal_fisher(net, np.ones((4, 3), dtype="float32"))
    >>> sorted(fisher), tuple(fisher["weight"].shape)
    (['bias', 'weight'], (2, 3))
    """
    if len(X) == 0:
        raise ValidationError("diagonal_fisher needs at least one sample; got an empty X")
    X = flat(X)
    device = next(module.parameters()).device
    params = {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in module.named_buffers()}

    def log_probs(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(functional_call(module, (p, buffers), (x.unsqueeze(0),)), dim=-1).squeeze(0)

    per_sample = vmap(jacrev(log_probs), in_dims=(None, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = module.training
    module.eval()
    try:
        for start in range(0, len(X), batch_size):
            x = torch.as_tensor(X[start : start + batch_size]).to(device)
            with torch.no_grad():
                probs = torch.softmax(module(x).float(), dim=-1)  # (batch, n_classes)
            grads = per_sample(params, x)  # name -> (batch, n_classes, *shape)
            for n, g in grads.items():
                weights = probs.reshape(*probs.shape, *([1] * (g.ndim - 2)))
                total[n] += (weights * g.detach() ** 2).sum(dim=(0, 1))
    finally:
        module.train(was_training)
    return {n: (t / len(X)).cpu() for n, t in total.items()}


def ewc_penalty(params: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor],
                fisher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """EWC's quadratic penalty ``sum_k F_k · (theta_k - theta*_k)²`` (without the ``lambda / 2``).

    Parameters
    ----------
    params : name -> current parameter tensor (gradients flow through it).
    anchor : name -> the parameter's value after the earlier tasks (constant).
    fisher : name -> the diagonal Fisher information, same shape (constant).

    Returns
    -------
    scalar tensor.

    Example
    -------
    >>> p = {"w": torch.tensor([1.0, 2.0])}
    >>> float(ewc_penalty(p, {"w": torch.zeros(2)}, {"w": torch.tensor([1.0, 0.5])}))
    3.0
    """
    terms = [(fisher[n] * (p - anchor[n]) ** 2).sum() for n, p in params.items() if n in fisher]
    if not terms:
        raise ValidationError("ewc_penalty: no parameter of params has a Fisher entry; the names must match")
    return torch.stack(terms).sum()


def balanced_quotas(size: int, n_tasks: int) -> list[int]:
    """Split a memory of ``size`` samples evenly over ``n_tasks`` tasks (earlier tasks get the remainder).

    Example
    -------
    >>> balanced_quotas(10, 3)
    [4, 3, 3]
    """
    if n_tasks < 1:
        raise ValidationError(f"balanced_quotas needs at least one task; got {n_tasks}")
    return [size // n_tasks + (i < size % n_tasks) for i in range(n_tasks)]


# -- hooks -----------------------------------------------------------------------------------
class EWCHook(TrainingHook):
    """Adds ``strength / 2 · sum_k F_k (theta_k - theta*_k)²`` to the loss (:func:`ewc_penalty`)."""

    def __init__(self, anchor: Mapping[str, torch.Tensor], fisher: Mapping[str, torch.Tensor], strength: float) -> None:
        self._anchor = {n: t.detach().clone() for n, t in anchor.items()}
        self._fisher = {n: t.detach().clone() for n, t in fisher.items()}
        self.strength = strength

    def setup(self, module: nn.Module, device: torch.device) -> None:
        shapes = {n: tuple(p.shape) for n, p in module.named_parameters() if p.requires_grad}
        if shapes != {n: tuple(t.shape) for n, t in self._fisher.items()}:
            raise ValidationError(
                "EWC: the network being trained does not have the parameters its Fisher information was "
                "computed for; EWC needs the same architecture at every step of a sequence"
            )
        self._anchor = {n: t.to(device) for n, t in self._anchor.items()}
        self._fisher = {n: t.to(device) for n, t in self._fisher.items()}

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        return 0.5 * self.strength * ewc_penalty(params, self._anchor, self._fisher)


class KDTermHook(TrainingHook):
    """Adds ``weight · kd_loss(student, teacher[batch.index], T)``: a teacher's outputs as an extra term."""

    def __init__(self, logits: np.ndarray, weight: float, temperature: float) -> None:
        self._logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        self.weight = weight
        self.temperature = temperature

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self._logits = self._logits.to(device)

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        return self.weight * kd_loss(logits, self._logits[batch.index], self.temperature)


class FrozenNormStatsHook(TrainingHook):
    """Keeps every batch-norm layer in eval mode while training: running statistics fixed and used.

    EWC's penalty and LwF's distillation protect the parameters and the outputs, but batch norm's
    running mean and variance are buffers that follow whatever data trains: after a few domains
    they describe the last one. With this hook the large model normalises with its own statistics
    during and after the step; the affine weights still train.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def setup(self, module: nn.Module, device: torch.device) -> None:
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                self._handles.append(layer.register_forward_pre_hook(_eval_mode))

    def teardown(self, module: nn.Module) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _eval_mode(layer: nn.Module, inputs: Any) -> None:
    layer.train(False)


# -- strategies ------------------------------------------------------------------------------


def check_covers_classes(targets: np.ndarray, classes: np.ndarray, what: str) -> None:
    """The loop needs every class among the rows' most likely labels; say so clearly if one is missing."""
    missing = np.setdiff1d(np.arange(len(classes)), np.argmax(targets, axis=1))
    if len(missing):
        raise LabelMismatchError(
            f"the targets of {what} never favour the classes {classes[missing].tolist()}; one step must show "
            "the large model every class: collect more field data, absorb these domains together, or use "
            "'replay', whose memory keeps the general domain's classes"
        )
