"""Transfer initialisation: transplant the experts' layers into the large model, then fine-tune.

Module reuse / transfer learning (Yosinski et al. 2014, "How transferable are features in deep
neural networks?", arXiv 1411.1792): layers that worked in the domain models are carried over
into the large model, and the result is fine-tuned so that the transplant fits its new
surroundings. A layer of the large network is transplanted when some experts have a layer of the
same name whose parameters and buffers all have the same shapes; it becomes the average of those
experts' layers (with one such expert, its copy). Layers without a match keep the large model's
weights. Fine-tuning is :class:`~crossfeed.feedback.MultiTeacherKD`'s: the experts teach on their
domains' field data, the old large model on the general data.

The rule works layer by layer rather than tensor by tensor: a layer is moved whole or not at all,
so a shape that matches by accident (a head's bias of ``n_classes`` entries, BatchNorm's scalar
counter) never brings a lone tensor from a layer of another width.
"""

from __future__ import annotations

import copy
import difflib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from crossfeed.exceptions import UnknownNameError, ValidationError
from crossfeed.feedback._base import DistillData, FeedbackContext, register
from crossfeed.feedback._merging import average_weights
from crossfeed.feedback._params import Param
from crossfeed.feedback.multi_teacher_kd import MultiTeacherKD

__all__ = ["TransferInit", "transplant", "transplant_plan"]

logger = logging.getLogger(__name__)


def _local_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a module owns itself (parameters and buffers, not its children's)."""
    return {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}


def _layers(module: nn.Module) -> dict[str, nn.Module]:
    """Modules that own tensors themselves, by qualified name (the units that are transplanted)."""
    return {name: m for name, m in module.named_modules() if _local_state(m)}


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in _local_state(module).items()}


def _selected(name: str, prefixes: Sequence[str] | None) -> bool:
    return prefixes is None or any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def _check_prefixes(layers: Any, module: nn.Module) -> tuple[str, ...] | None:
    """``layers`` as a tuple of prefixes (None: every layer); unknown prefixes raise with the layer names."""
    if layers is None:
        return None
    prefixes = (layers,) if isinstance(layers, str) else layers
    if not isinstance(prefixes, Sequence) or not prefixes or not all(isinstance(p, str) for p in prefixes):
        raise ValidationError(
            f"layers must be None (every layer) or layer-name prefixes such as ['features']; got {layers!r}"
        )
    names = list(_layers(module))
    candidates = [n for n, _ in module.named_modules() if n]
    for prefix in prefixes:
        if not any(_selected(n, (prefix,)) for n in names):
            close = difflib.get_close_matches(prefix, candidates, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"no layer of the large model is named {prefix!r} or lies under it; layers: {', '.join(names)}{hint}"
            )
    return tuple(prefixes)


def transplant_plan(large: nn.Module, experts: Mapping[str, Any],
                    layers: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Which experts can give which layer of ``large``.

    Parameters
    ----------
    large : the large network.
    experts : mapping name -> ``nn.Module`` or a fitted classifier with a ``module_`` (others are
        skipped: they have no layers to give).
    layers : prefixes of the layer names to consider (``["features"]``); None: every layer.

    Returns
    -------
    dict layer name -> names of the experts whose layer of that name has exactly the same tensor
    names and shapes; layers no expert matches are left out.

    Example
    -------
    >>> a, b = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    >>> transplant_plan(a, {"b": b})
    {'0': ['b']}
    """
    prefixes = _check_prefixes(layers, large)
    modules = {n: _module_of(e) for n, e in experts.items()}
    theirs = {n: _layers(m) for n, m in modules.items() if m is not None}
    plan: dict[str, list[str]] = {}
    for name, layer in _layers(large).items():
        if not _selected(name, prefixes):
            continue
        donors = [n for n, own in theirs.items() if name in own and _shapes(own[name]) == _shapes(layer)]
        if donors:
            plan[name] = donors
    return plan


def transplant(large: nn.Module, experts: Mapping[str, Any], plan: Mapping[str, Sequence[str]]) -> nn.Module:
    """A copy of ``large`` whose planned layers are the average of their donors' layers.

    Parameters
    ----------
    large : the large network (not modified).
    experts : mapping name -> ``nn.Module`` or fitted classifier with a ``module_``.
    plan : layer name -> donor names, as :func:`transplant_plan` returns.

    Returns
    -------
    nn.Module, a deep copy of ``large`` with the transplanted layers.
    """
    out = copy.deepcopy(large)
    for name, donors in plan.items():
        states = [_local_state(_module_of(experts[d]).get_submodule(name)) for d in donors]
        merged = average_weights([{k: v.detach() for k, v in s.items()} for s in states])
        target = _local_state(out.get_submodule(name))
        with torch.no_grad():
            for key, value in merged.items():
                target[key].copy_(value)
    return out


def _module_of(expert: Any) -> nn.Module | None:
    if isinstance(expert, nn.Module):
        return expert
    module = getattr(expert, "module_", None)
    return module if isinstance(module, nn.Module) else None


@register("transfer_init")
class TransferInit(MultiTeacherKD):
    """Start from the large model with the experts' matching layers transplanted, then distil.

    Parameters
    ----------
    layers : prefixes of the layer names that may be transplanted (``["features"]``: the
        feature extractor only, keeping the large model's head); None: every layer. See
        :func:`transplant_plan`.
    temperature, alpha, domain_known, field_share, field_augment, field_repeats : the fine-tuning
        distillation, see :class:`~crossfeed.feedback.MultiTeacherKD`.

    Reports ``info["transplanted"]``: layer name -> the experts averaged into it. When no expert
    has a layer of the large model's shape (e.g. experts of another architecture), nothing is
    transplanted: a warning is logged, ``info["transplanted"]`` is empty, and training starts from
    the large model's own weights (plain multi-teacher distillation). Experts spawned as fine-tuned
    copies of the large model share every layer.

    Example
    -------
    >>> new, report = absorb(large, experts, suite, "transfer_init", params={"layers": ["features"]})  # doctest: +SKIP
    >>> sorted(report.info["transplanted"])                                                # doctest: +SKIP
    ['features.0', 'features.1', 'features.4', 'features.5', 'features.8', 'features.9']
    """

    needs_torch_experts = True  # it transplants the experts' layers
    params: ClassVar[dict[str, Param]] = {
        "layers": Param(list, items=str, none=True, help="prefixes of the layer names that may be transplanted"),
        **MultiTeacherKD.params,
    }

    def __init__(self, layers: Sequence[str] | None = None, temperature: float = 2.0, alpha: float = 0.9,
                 domain_known: bool = True, field_share: float = 0.5, field_augment: str = "mixup",
                 field_repeats: int = 1) -> None:
        super().__init__(temperature=temperature, alpha=alpha, domain_known=domain_known, field_share=field_share,
                         field_augment=field_augment, field_repeats=field_repeats)
        self.layers = layers

    def prepare(self, ctx: FeedbackContext) -> DistillData:
        large, experts = ctx.large, ctx.experts
        plan = transplant_plan(large.module_, experts, self.layers)
        if not plan:
            logger.warning(
                "transfer_init: no expert has a layer with the large model's name and shapes%s, so nothing is "
                "transplanted and training starts from the large model's weights; spawn experts as fine-tuned "
                "copies of the large model to share its layers",
                "" if self.layers is None else f" under {self.layers!r}",
            )
        data = super().prepare(ctx)
        data.info["transplanted"] = plan
        return data

    def initial_module(self, ctx: FeedbackContext) -> nn.Module | None:
        large, experts = ctx.large, ctx.experts
        plan = transplant_plan(large.module_, experts, self.layers)
        return transplant(large.module_, experts, plan) if plan else None
