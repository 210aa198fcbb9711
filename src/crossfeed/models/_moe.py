"""Mixtures of experts as architectures: a gated mixture of whole models, and a weight-ensembling MoE.

Both are registered architectures (``"moe"``, ``"wemoe"``), so a composed model is a plain
:class:`~crossfeed.models.TorchClassifier`: it predicts, saves (safetensors + JSON), loads and
exports like any other. Their keyword arguments describe the members by architecture name and
keyword arguments, so :func:`~crossfeed.models.load_model` rebuilds them from ``config.json``.
The training (which member weights come from where, how the gate learns) is in
:mod:`crossfeed.combine._moe`.

- ``"moe"`` (:class:`GatedMixture`): ``p(y | x) = sum_{m in top-k(x)} g_m(x) p_m(y | x)``, a
  gate over whole member networks (Jacobs, Jordan, Nowlan & Hinton 1991, "Adaptive mixtures of
  local experts"; top-k routing: Shazeer et al. 2017, arXiv 1701.06538). At inference only the
  members a sample is routed to run on it (sparse dispatch), so a top-1 mixture of a large
  model and small experts costs the gate plus one member per sample.
- ``"wemoe"`` (:class:`WeightEnsemblingMoE`): the fine-tuned copies of one base network merged by
  task arithmetic, except the linear layers named in ``upscale``, whose weights become
  ``W0 + sum_i r_i(h) tau_i`` per sample, ``tau_i`` the task vector of copy ``i`` and ``r(h)`` a
  small router on the layer's input (Tang et al. 2024, "Merging Multi-Task Models via
  Weight-Ensembling Mixture of Experts", arXiv 2402.00433).

The pure maths (mixture log-likelihood, load-balancing term, routing fractions) is here too, as
functions of tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.models._architectures import ARCHITECTURES, build_module

__all__ = [
    "GatedMixture",
    "RoutedLinear",
    "WeightEnsemblingMoE",
    "load_balancing_loss",
    "mixture_log_proba",
    "top_k_weights",
]


def top_k_weights(gate_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over each row's ``k`` largest gate logits, zero elsewhere (``KeepTopK`` of Shazeer et al.).

    Parameters
    ----------
    gate_logits : tensor of shape (batch, n_members)
    k : 1 <= k <= n_members

    Returns
    -------
    tensor of shape (batch, n_members), rows summing to 1 with at most ``k`` non-zero entries
    (ties go to the lower member index, as ``torch.topk`` breaks them).

    Example
    -------
    >>> top_k_weights(torch.tensor([[0.0, 2.0, 1.0]]), 1)
    tensor([[0., 1., 0.]])
    """
    n = gate_logits.shape[-1]
    if not 1 <= k <= n:
        raise ValidationError(f"top_k must be between 1 and the number of members ({n}); got {k}")
    top, idx = gate_logits.topk(k, dim=-1)
    return torch.zeros_like(gate_logits).scatter(-1, idx, torch.softmax(top, dim=-1))


def mixture_log_proba(log_gate: torch.Tensor, member_log_proba: torch.Tensor) -> torch.Tensor:
    """``log sum_m g_m p_m(y | x)`` for every class: the mixture's log-probabilities.

    Parameters
    ----------
    log_gate : tensor of shape (batch, n_members), log gate weights (``-inf`` for members not routed to).
    member_log_proba : tensor of shape (batch, n_members, n_classes), each member's log-probabilities.

    Returns
    -------
    tensor of shape (batch, n_classes)

    Example
    -------
    >>> lp = torch.log(torch.tensor([[[0.9, 0.1], [0.5, 0.5]]]))
    >>> mixture_log_proba(torch.log(torch.tensor([[0.5, 0.5]])), lp).exp()
    tensor([[0.7000, 0.3000]])
    """
    return torch.logsumexp(log_gate.unsqueeze(-1) + member_log_proba, dim=1)


def load_balancing_loss(gate_proba: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss ``n · sum_m f_m P_m`` (Fedus, Zoph & Shazeer 2021, arXiv 2101.03961).

    ``f_m`` is the share of the batch whose top-1 member is ``m`` (not differentiable) and ``P_m``
    the mean gate probability of ``m``; the loss is 1 when routing is uniform and ``n`` when every
    sample goes to one member with certainty, so it pushes the gate to spread the load.

    Parameters
    ----------
    gate_proba : tensor of shape (batch, n_members), rows summing to 1.

    Example
    -------
    >>> float(load_balancing_loss(torch.full((4, 2), 0.5)))
    1.0
    """
    n = gate_proba.shape[-1]
    share = torch.bincount(gate_proba.argmax(dim=-1), minlength=n).to(gate_proba.dtype) / gate_proba.shape[0]
    return n * (share * gate_proba.mean(dim=0)).sum()


def _member_spec(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("architecture"), str):
        raise ValidationError(
            f"{where} must be a mapping {{'architecture': name, 'kwargs': {{...}}}} naming a registered "
            f"architecture ({', '.join(ARCHITECTURES.names())}); got {spec!r}"
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValidationError(f"{where}['kwargs'] must be a mapping of keyword arguments; got {kwargs!r}")
    return spec["architecture"], dict(kwargs)


class _Standardise(nn.Module):
    """``(x - mean) / std`` with the statistics as buffers (saved with the weights)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Gate(nn.Module):
    """The router of a :class:`GatedMixture`: standardised input -> a network -> one logit per member.

    The network is an MLP with ``hidden`` units (a linear layer when 0), or any registered
    architecture given as ``spec`` (e.g. ``{"architecture": "cnn1d", "kwargs": {"size": "tiny"}}``)
    with one output per member.
    """

    def __init__(self, n_features: int, n_members: int, hidden: int = 0, spec: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.scale = _Standardise(n_features)
        if spec is not None:
            name, kwargs = _member_spec(spec, "gate")
            self.net = build_module(name, n_features, n_members, **kwargs)
            return
        layers: list[nn.Module] = [nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_members)] if hidden \
            else [nn.Linear(n_features, n_members)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.scale(x.flatten(1)))


@ARCHITECTURES.register("moe")
class GatedMixture(nn.Module):
    """Whole member networks behind a learned gate, routed top-k per sample.

    Parameters
    ----------
    n_features, n_classes : int, as for every architecture; every member maps flat input of
        ``n_features`` to ``n_classes`` logits.
    members : list of {"architecture": name, "kwargs": {...}}, the members' registered architectures.
    top_k : int, members each sample is routed to at inference (1: one member per sample).
    gate_hidden : int, hidden units of an MLP gate (0: a linear gate).
    gate : {"architecture": name, "kwargs": {...}}, optional: a registered architecture as the
        gate instead of the MLP (a tiny CNN tells signal domains apart better than an MLP).
    member_names : the members' names, kept for reports.

    ``forward`` returns the mixture's log-probabilities (``softmax`` of them is the mixture
    itself). In ``train()`` mode, and while ``torch.export`` traces the module (ONNX export), every
    member runs on every sample and the top-k weights mask them; in ``eval()`` mode only routed
    members run, on the samples routed to them (the outputs are the same).
    """

    def __init__(self, n_features: int, n_classes: int, members: Sequence[Mapping[str, Any]] = (),
                 top_k: int = 1, gate_hidden: int = 0, gate: Mapping[str, Any] | None = None,
                 member_names: Sequence[str] = ()) -> None:
        super().__init__()
        if isinstance(members, (str, bytes)) or len(members) < 2:
            raise ValidationError(f"a mixture needs at least 2 members; got {members!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(members):
            raise ValidationError(f"top_k must be an integer between 1 and {len(members)}; got {top_k!r}")
        self.top_k = top_k
        specs = [_member_spec(spec, f"members[{i}]") for i, spec in enumerate(members)]
        self.members = nn.ModuleList(build_module(name, n_features, n_classes, **kw) for name, kw in specs)
        self.gate = Gate(n_features, len(members), int(gate_hidden), gate)
        self.n_classes = n_classes
        self.member_names = tuple(member_names)

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Top-k gate weights of shape (batch, n_members)."""
        return top_k_weights(self.gate(x), self.top_k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        logits = self.gate(x)
        if self.training or torch.compiler.is_exporting():
            member_lp = torch.stack([torch.log_softmax(m(x), dim=-1) for m in self.members], dim=1)
            return mixture_log_proba(torch.log(top_k_weights(logits, self.top_k)), member_lp)
        if self.top_k == 1 and x.shape[0] == 1:  # the fast path: one sample, one member
            return torch.log_softmax(self.members[int(logits.argmax())](x), dim=-1)
        top, top_i = logits.topk(self.top_k, dim=-1)  # as top_k_weights picks them
        top_w = torch.softmax(top, dim=-1)
        proba = x.new_zeros(x.shape[0], self.n_classes)
        for m in torch.unique(top_i).tolist():
            chosen = top_i == m
            rows = torch.nonzero(chosen.any(dim=-1)).squeeze(1)
            p = torch.softmax(self.members[m](x.index_select(0, rows)), dim=-1)
            proba.index_add_(0, rows, (top_w * chosen).sum(dim=-1, keepdim=True).index_select(0, rows) * p)
        return torch.log(proba.clamp_min(1e-30))


class RoutedLinear(nn.Module):
    """A linear layer whose weight is ``W0 + sum_i r_i(h) tau_i`` for each input row ``h``.

    Computed without forming per-sample weights: ``h W0^T + b0 + sum_i r_i(h) (h tau_i^T + beta_i)``.
    The router is ``Linear(in, hidden) -> ReLU -> Linear(hidden, n_tasks)`` (or one linear layer
    when ``hidden`` is 0); its output bias starts at ``lam`` and its last weights at zero, so an
    untrained layer is task arithmetic with scale ``lam``.
    """

    def __init__(self, in_features: int, out_features: int, n_tasks: int, hidden: int = 0, lam: float = 0.3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.task_weight = nn.Parameter(torch.zeros(n_tasks, out_features, in_features))
        self.task_bias = nn.Parameter(torch.zeros(n_tasks, out_features))
        layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_tasks)] if hidden \
            else [nn.Linear(in_features, n_tasks)]
        self.router = nn.Sequential(*layers)
        nn.init.zeros_(self.router[-1].weight)
        nn.init.constant_(self.router[-1].bias, float(lam))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r = self.router(h)  # (batch, n_tasks)
        base = nn.functional.linear(h, self.weight, self.bias)
        per_task = torch.einsum("bi,toi->bto", h, self.task_weight) + self.task_bias  # (batch, n_tasks, out)
        return base + (r.unsqueeze(-1) * per_task).sum(dim=1)


@ARCHITECTURES.register("wemoe")
class WeightEnsemblingMoE(nn.Module):
    """One base architecture whose ``upscale`` linear layers mix task vectors per sample.

    Parameters
    ----------
    n_features, n_classes : int
    base : {"architecture": name, "kwargs": {...}}, the architecture every fine-tuned copy shares.
    n_tasks : int >= 1, the number of fine-tuned copies (task vectors).
    upscale : names of ``nn.Linear`` submodules of the base (as in ``named_modules``) that become
        :class:`RoutedLinear` layers; the rest of the network holds merged weights.
    router_hidden : int, hidden units of each router (0: linear routers).
    lam : float, the routers' initial output (task-arithmetic scale).
    member_names : the fine-tuned copies' names, kept for reports.
    """

    def __init__(self, n_features: int, n_classes: int, base: Mapping[str, Any] | None = None, n_tasks: int = 1,
                 upscale: Sequence[str] = (), router_hidden: int = 0, lam: float = 0.3,
                 member_names: Sequence[str] = ()) -> None:
        super().__init__()
        name, kwargs = _member_spec(base, "base")
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
            raise ValidationError(f"n_tasks must be a positive integer; got {n_tasks!r}")
        self.net = build_module(name, n_features, n_classes, **kwargs)
        linear = {n: m for n, m in self.net.named_modules() if isinstance(m, nn.Linear)}
        unknown = [n for n in upscale if n not in linear]
        if not upscale or unknown:
            raise ValidationError(
                f"upscale must name linear layers of the {name!r} base ({', '.join(linear) or 'it has none'}); "
                f"got {list(upscale)!r}"
            )
        for layer in upscale:
            parent_name, _, child = layer.rpartition(".")
            parent = self.net.get_submodule(parent_name) if parent_name else self.net
            old = linear[layer]
            parent.register_module(child, RoutedLinear(old.in_features, old.out_features, n_tasks,
                                                       int(router_hidden), float(lam)))
        self.upscale = tuple(upscale)
        self.member_names = tuple(member_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
