"""Data-free multi-teacher distillation: inputs inverted from each expert's network, no field row.

Where not even unlabelled rows may leave a domain, the expert is all it sends. Its network still
holds a summary of the domain's inputs: every BatchNorm layer keeps the running mean and variance
of its inputs on the domain's training data. DeepInversion (Yin et al. 2020) optimises a batch
of synthetic inputs so that the expert puts them in chosen classes and their per-layer batch
statistics match those running statistics; the large model then learns from the expert on them,
as :class:`~crossfeed.feedback.MultiTeacherKD` does on field rows. This is the data-free baseline
that :class:`~crossfeed.feedback.GenerativeAugment` (a generator fitted where the field rows
live, only its samples sent) is measured against.

Per expert domain, :func:`deep_inversion` starts from rows of the general domain (the large
model's own data; ``init="general"``) or from Gaussian noise with the general data's per-feature
mean and spread (``init="noise"``), targets the classes in equal shares, and runs ``steps`` Adam
steps on ``CE(expert(x), target) + bn_weight · sum_l (||mu_l(x) - mu_l|| + ||var_l(x) - var_l||)``
with the inputs kept within the general data's range. The expert labels the result with its soft
logits; the large model trains on the general rows ``(1 - alpha) · CE(y) + alpha · KD(old large)``
and on the inverted rows ``alpha · KD(the domain's expert)``.

Budget: each domain gets its part of ``synthetic_share`` of the training rows, the part
:func:`~crossfeed.feedback._field.top_up_sizes` gives ``multi_teacher_kd``'s top-up with the
same ``field_share`` (its budget whenever a domain's field data is smaller than its part).

- DeepInversion: Yin, Molchanov, Alvarez, Li, Mallya, Hoiem, Jha & Kautz (CVPR 2020), "Dreaming to
  Distill: Data-free Knowledge Transfer via DeepInversion", arXiv 1912.08795. Here it runs once
  per teacher, each domain's expert inverting its own domain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.distill import DistillationHook, teacher_logits
from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import (
    DistillData,
    FeedbackContext,
    FeedbackStrategy,
    flat,
    general_data,
    register,
    share_domains,
    with_unlabelled,
)
from crossfeed.feedback._field import top_up_sizes
from crossfeed.feedback._generative import expert_agreement
from crossfeed.feedback._params import Param
from crossfeed.training import TrainingHook

__all__ = ["DataFreeKD", "batchnorm_layers", "deep_inversion"]

#: Where the inverted inputs start: rows of the general domain, or Gaussian noise shaped like them.
INITS = ("general", "noise")


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``module`` that track running statistics, in forward order."""
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


def deep_inversion(
    module: nn.Module,
    targets: Sequence[int] | np.ndarray,
    init: np.ndarray,
    *,
    steps: int = 200,
    lr: float = 0.05,
    bn_weight: float = 1.0,
    bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """Inputs that ``module`` puts in ``targets`` and whose BatchNorm statistics match its own.

    Minimises ``CE(module(x), targets) + bn_weight · sum_l (||mu_l(x) - running_mean_l||_2 +
    ||var_l(x) - running_var_l||_2)`` over ``x`` with Adam, the network in eval mode and its
    weights untouched; ``mu_l(x)`` and ``var_l(x)`` are the batch statistics of the inputs of
    BatchNorm layer ``l`` over every axis but the channel (Yin et al. 2020).

    Parameters
    ----------
    module : network mapping rows of shape (n, n_features) to logits (n, n_classes).
    targets : class columns (0 .. n_classes - 1), one per row to make.
    init : array of shape (len(targets), n_features), the starting rows.
    steps : int >= 1, Adam steps.
    lr : float > 0, Adam's step size on the inputs.
    bn_weight : float >= 0, weight of the statistics term; 0 inverts the class loss alone.
    bounds : (low, high) or None, every input value is kept within it after each step.

    Returns
    -------
    array of shape (len(targets), n_features), float32.

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    >>> x = deep_inversion(net, [0, 1, 2], np.zeros((3, 4), np.float32), steps=5)
    >>> x.shape
    (3, 4)
    """
    targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    x0 = np.asarray(init, dtype=np.float32)
    if x0.ndim != 2 or len(x0) != len(targets_t):
        raise ValidationError(f"init must have shape (len(targets), n_features) = ({len(targets_t)}, ...); "
                              f"got {x0.shape}")
    if steps < 1 or lr <= 0 or bn_weight < 0:
        raise ValidationError(f"need steps >= 1, lr > 0 and bn_weight >= 0; got steps={steps}, lr={lr}, "
                              f"bn_weight={bn_weight}")
    layers = batchnorm_layers(module)
    if bn_weight > 0 and not layers:
        raise ValidationError(f"the network ({type(module).__name__}) has no BatchNorm layer with running "
                              "statistics, which DeepInversion matches; pass bn_weight=0 to invert the class "
                              "loss alone, or use a teacher with BatchNorm")
    with _bn_terms(module, layers if bn_weight > 0 else []) as stats:
        frozen = [p.requires_grad for p in module.parameters()]
        for p in module.parameters():
            p.requires_grad_(False)
        x = torch.tensor(x0, requires_grad=True)
        optimizer = torch.optim.Adam([x], lr=lr)
        try:
            for _ in range(int(steps)):
                stats.clear()
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(module(x), targets_t)
                if stats:
                    loss = loss + bn_weight * torch.stack(stats).sum()
                loss.backward()
                optimizer.step()
                if bounds is not None:
                    with torch.no_grad():
                        x.clamp_(float(bounds[0]), float(bounds[1]))
        finally:
            for p, flag in zip(module.parameters(), frozen, strict=True):
                p.requires_grad_(flag)
    out = x.detach().numpy()
    if not np.isfinite(out).all():
        raise ValidationError("DeepInversion diverged (non-finite inputs); lower lr or bn_weight")
    return out


@register("data_free_kd")
class DataFreeKD(FeedbackStrategy):
    """Each expert teaches the large model on inputs inverted from its own network; no field row.

    Parameters
    ----------
    synthetic_share : float in (0, 1), default 0.5. Each domain's inverted rows are its part of
        this share of the training rows (as ``multi_teacher_kd``'s ``field_share``).
    init : "general" (default) or "noise": the inversion starts from random general-domain rows,
        or from Gaussian noise with their per-feature mean and standard deviation.
    steps : int >= 1, default 1000, Adam steps of each domain's inversion (each step one forward
        and backward pass of the expert over all of the domain's inverted rows).
    inversion_lr : float > 0, default 0.05, Adam's step size on the inputs.
    bn_weight : float >= 0, default 1.0, weight of the BatchNorm statistics term (0: class loss only).
    temperature : float > 0, softening of every teacher.
    alpha : float in [0, 1], weight of distillation against the hard labels.

    Reports, per domain: ``synthetic_rows``, ``expert_agreement`` (share of inverted rows the expert
    puts in their target class; chance 1 / n_classes), ``bn_gap_before`` / ``bn_gap_after`` (the
    statistics term at the start and the end, summed over layers), and ``inversion_seconds`` (all
    domains). No domain's field rows or labels are read: the strategy needs none.

    Example
    -------
    >>> new, report = absorb(v0, experts, suite, "data_free_kd", params={"steps": 500})  # doctest: +SKIP
    >>> report.info["expert_agreement"]                                                   # doctest: +SKIP
    """

    needs_torch_experts = True
    params: ClassVar[dict[str, Param]] = {
        "synthetic_share": Param(float, low=0.0, high=1.0, low_open=True, high_open=True,
                                 help="each domain's inverted rows are this share of the training rows"),
        "init": Param(str, choices=INITS, help="where the inverted inputs start"),
        "steps": Param(int, low=1, help="Adam steps of each domain's inversion"),
        "inversion_lr": Param(float, low=0.0, low_open=True, help="Adam's step size on the inputs"),
        "bn_weight": Param(float, low=0.0, help="weight of the BatchNorm statistics term"),
        "temperature": Param(float, low=0.0, low_open=True, help="softening of every teacher"),
        "alpha": Param(float, low=0.0, high=1.0, help="weight of distillation against the hard labels"),
    }

    def __init__(self, synthetic_share: float = 0.5, init: str = "general", steps: int = 1000,
                 inversion_lr: float = 0.05, bn_weight: float = 1.0, temperature: float = 2.0,
                 alpha: float = 0.9) -> None:
        self.synthetic_share = synthetic_share
        self.init = init
        self.steps = steps
        self.inversion_lr = inversion_lr
        self.bn_weight = bn_weight
        self.temperature = temperature
        self.alpha = alpha

    def prepare(self, ctx: FeedbackContext) -> DistillData:
        large, experts, suite, seed = ctx.large, ctx.experts, ctx.suite, ctx.settings.seed
        _, X_gen, y_gen = general_data(suite)
        X_gen = flat(X_gen)
        parts_X, parts_t = [X_gen], [teacher_logits(large, X_gen)]
        n_domains = share_domains(suite, len(experts))
        sizes = top_up_sizes(len(X_gen), [0] * len(experts), self.synthetic_share, n_domains)
        bounds = (float(X_gen.min()), float(X_gen.max()))
        n_classes = len(large.classes_)
        info: dict[str, Any] = {key: {} for key in ("synthetic_rows", "expert_agreement", "bn_gap_before",
                                                    "bn_gap_after")}
        start = time.perf_counter()
        for (name, expert), size in zip(experts.items(), sizes, strict=True):
            module = _network(expert, name)
            k = suite.names.index(name)  # a seed offset that does not depend on the step
            rng = np.random.default_rng(seed + 211 * k)
            targets = rng.permutation(np.resize(np.arange(n_classes), size))
            init = self._start(X_gen, size, rng)
            X_inv = deep_inversion(module, targets, init, steps=self.steps, lr=self.inversion_lr,
                                   bn_weight=self.bn_weight, bounds=bounds)
            logits = teacher_logits(expert, X_inv)
            parts_X.append(X_inv)
            parts_t.append(logits)
            info["synthetic_rows"][name] = len(X_inv)
            info["expert_agreement"][name] = expert_agreement(logits, targets) if len(X_inv) else None
            info["bn_gap_before"][name] = _bn_gap(module, init)
            info["bn_gap_after"][name] = _bn_gap(module, X_inv)
        info["inversion_seconds"] = time.perf_counter() - start
        X = np.concatenate(parts_X)
        y, labelled = with_unlabelled(y_gen, len(X) - len(X_gen), large.classes_[0])
        return DistillData(X, y, info=info, labelled_mask=labelled, teacher_logits=np.concatenate(parts_t))

    def hooks(self, ctx: FeedbackContext, data: DistillData) -> list[TrainingHook]:
        return [DistillationHook(data.teacher_logits, labelled=data.labelled, temperature=self.temperature,
                                 alpha=self.alpha)]

    def _start(self, X_gen: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        if self.init == "general":
            return X_gen[rng.integers(0, len(X_gen), size)].copy()
        noise = rng.standard_normal((size, X_gen.shape[1])).astype(np.float32)
        return X_gen.mean(axis=0) + noise * X_gen.std(axis=0)


def _network(expert: Any, name: str) -> nn.Module:
    module = getattr(expert, "module_", None)
    if not isinstance(module, nn.Module):
        raise ValidationError(f"data_free_kd inverts the experts' networks; the expert of domain {name!r} is a "
                              f"{type(expert).__name__} without one (module_). Use a TorchClassifier expert, or "
                              "a strategy that only reads predictions (multi_teacher_kd, generative_augment)")
    return module


@contextmanager
def _bn_terms(module: nn.Module, layers: Sequence[nn.modules.batchnorm._BatchNorm]) -> Iterator[list[torch.Tensor]]:
    """``module`` in eval mode, each forward appending every layer's statistics term to the list
    yielded; the hooks are removed and the module's mode restored after."""
    terms: list[torch.Tensor] = []

    def match(layer: nn.modules.batchnorm._BatchNorm, inputs: tuple[torch.Tensor, ...], _: Any) -> None:
        h = inputs[0]
        dims = [0, *range(2, h.dim())]  # every axis but the channel
        terms.append(torch.linalg.vector_norm(h.mean(dim=dims) - layer.running_mean)
                     + torch.linalg.vector_norm(h.var(dim=dims, unbiased=False) - layer.running_var))

    handles = [layer.register_forward_hook(match) for layer in layers]
    was_training = module.training
    module.eval()
    try:
        yield terms
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)


def _bn_gap(module: nn.Module, X: np.ndarray) -> float | None:
    """The statistics term of :func:`deep_inversion` on rows ``X`` (None without BatchNorm)."""
    layers = batchnorm_layers(module)
    if not layers or not len(X):
        return None
    with _bn_terms(module, layers) as terms, torch.no_grad():
        module(torch.as_tensor(np.asarray(X, dtype=np.float32)))
    return float(sum(float(t) for t in terms))
