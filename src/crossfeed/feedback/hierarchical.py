"""Hierarchical transfer: a shared bottom, one middle block per group of domains, one head per domain.

Multi-task feedback (:mod:`crossfeed.feedback.multitask`) shares the large model's trunk and gives
every domain a head of its own; hierarchical transfer puts a level between them. A taxonomy
groups the domains (given, or learned by clustering the experts' behaviour:
:mod:`crossfeed.feedback._taxonomy`); every group gets a middle block on the trunk's features,
shared by the heads of its domains, so a domain with little field data learns through the block
its similar domains train too. The design is the tree of shared layers of Lu et al. 2017
("Fully-adaptive Feature Sharing in Multi-Task Networks", arXiv 1611.05377) and of Vandenhende
et al. 2020 ("Branched Multi-Task Networks: Deciding What Layers To Share", arXiv 1904.02920), with
the groups found from the experts' outputs (Standley et al. 2020, arXiv 1905.07553) and the
domain heads distilled from the experts (Hinton et al. 2015, arXiv 1503.02531).

Levels: bottom = the large network's trunk (its ``embed``), trained by every row; middle = a
residual block per group (``x + W2 relu(W1 x)``, ``W2`` starting at zero so a branch starts as the
large model itself); top = a copy of the large network's head per domain. The general head (the
large network's own) sits on the trunk at the root and learns the general domain's labels.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import FeedbackContext, register
from crossfeed.feedback._params import Param
from crossfeed.feedback._taxonomy import (
    DISTANCES,
    behaviour_matrix,
    check_taxonomy,
    expert_distances,
    group_index,
    learn_taxonomy,
)
from crossfeed.feedback.multitask import DomainHeadsData, DomainHeadsHook, MultiTask, split_trunk_head
from crossfeed.training import TrainingHook

__all__ = ["GroupBlock", "Hierarchical", "HierarchicalHeads", "HierarchyHook", "feature_width"]


class GroupBlock(nn.Module):
    """The middle level of one group: ``x + W2 relu(W1 x)`` on the trunk's features.

    ``W2`` and its bias start at zero, so the block starts as the identity and a branch
    (block, then a copy of the large head) starts as the large model itself.

    Example
    -------
    >>> block = GroupBlock(4)
    >>> x = torch.randn(3, 4)
    >>> bool(torch.equal(block(x), x))
    True
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, width)
        self.up = nn.Linear(width, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


def feature_width(head: nn.Module) -> int:
    """Width of the trunk's features: the input size of the head's first ``nn.Linear``."""
    linear = next((m for m in head.modules() if isinstance(m, nn.Linear)), None)
    if linear is None:
        raise ValidationError(
            f"hierarchical feedback puts a middle block before the head, so it reads the feature width from the "
            f"head's first nn.Linear; the head {type(head).__name__} has none. Use an architecture whose head "
            "starts with a Linear layer (cnn1d, cnn2d)")
    return linear.in_features


class HierarchyHook(DomainHeadsHook):
    """:class:`~crossfeed.feedback.multitask.DomainHeadsHook` with a group block under every head.

    The domain heads of one group share that group's :class:`GroupBlock`: head ``i`` is
    ``Sequential(block[groups[i]], top_i)``, so the block gets the gradients of every domain of
    its group (the trunk, as in multi-task feedback, those of every row).

    Parameters
    ----------
    groups : sequence of int, the group of each domain head (``n_heads = len(groups)``).
    The other parameters are those of :class:`DomainHeadsHook`.

    Attributes
    ----------
    blocks : nn.ModuleList of the group blocks (after ``setup``).
    heads : nn.ModuleList of the branches ``Sequential(block, top)``, one per domain.
    """

    def __init__(self, domain_index: np.ndarray, teacher_logits: np.ndarray, groups: Sequence[int],
                 temperature: float, head_weight: float) -> None:
        super().__init__(domain_index, teacher_logits, len(groups), temperature, head_weight)
        self.groups = list(groups)
        self.blocks: nn.ModuleList = nn.ModuleList()

    def setup(self, module: nn.Module, device: torch.device) -> list[nn.Parameter]:
        super().setup(module, device)  # the domain heads (copies of the network's head), the feature tap
        width = feature_width(self.heads[0])
        self.blocks = nn.ModuleList(GroupBlock(width) for _ in range(max(self.groups) + 1)).to(device)
        self.heads = nn.ModuleList(nn.Sequential(self.blocks[g], top)
                                   for g, top in zip(self.groups, self.heads, strict=True))
        return list(self.heads.parameters())  # each shared block once


class HierarchicalHeads(nn.Module):
    """The whole tree as one module: the large network (trunk and general head) and the domain branches.

    ``forward(x)`` is the large network's: the general head's logits, so the module maps the large
    model's inputs to its classes' logits like the large network; :meth:`forward_domain` and
    :meth:`routed` send inputs of known domains through their group block and domain head.

    Parameters
    ----------
    network : the trained large network (``head(embed(x))``).
    branches : mapping domain -> branch ``Sequential(group block, domain head)`` on ``embed(x)``;
        the branches of one group share their block.
    general : name of the general domain (routed to ``network`` itself).
    taxonomy : group name -> domains, as trained (kept for reports).

    Example
    -------
    >>> tree = strategy.hierarchy_                                # doctest: +SKIP
    >>> tree.routed(torch.as_tensor(X), ["noisy", "default"])    # doctest: +SKIP
    """

    def __init__(self, network: nn.Module, branches: Mapping[str, nn.Module], general: str,
                 taxonomy: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        split_trunk_head(network)
        self.network = network
        self.domains = list(branches)
        self.branches = nn.ModuleList(branches.values())
        self.general = general
        self.taxonomy = {g: list(ds) for g, ds in taxonomy.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def forward_domain(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """Logits of shape (batch, n_classes) of ``domain``'s branch (the general head for the general domain)."""
        if domain == self.general:
            return self.network(x)
        if domain not in self.domains:
            raise ValidationError(f"no branch for domain {domain!r}; the tree has {[self.general, *self.domains]}")
        return self.branches[self.domains.index(domain)](self.network.embed(x))

    def routed(self, x: torch.Tensor, domains: Sequence[str]) -> torch.Tensor:
        """Logits of shape (batch, n_classes), each row through the branch of its domain in ``domains``."""
        if len(domains) != len(x):
            raise ValidationError(f"routed got {len(x)} rows but {len(domains)} domain names; give one per row")
        names = np.asarray(domains)
        out = self.network(x)  # the general rows' logits; every other row is overwritten by its branch
        for name in dict.fromkeys(n for n in names.tolist() if n != self.general):
            rows = torch.as_tensor(names == name)
            out[rows] = self.forward_domain(x[rows], name)
        return out


@dataclasses.dataclass
class HierarchyData(DomainHeadsData):
    """:class:`DomainHeadsData` plus the group of every expert domain (``groups``, shape (n_experts,))."""

    groups: list[int] = dataclasses.field(kw_only=True)


@register("hierarchical")
class Hierarchical(MultiTask):
    """Shared trunk, one middle block per group of domains, one distilled head per domain.

    The data are those of multi-task feedback: the general domain's labelled rows train the
    general head, every expert's field data trains its domain's branch (group block, then domain
    head) by distillation from that expert, weighted by ``head_weight``; every row's gradient
    reaches the trunk. The groups come from ``taxonomy`` or, when it is None, from clustering the
    experts' behaviour on their pooled field data into ``n_groups`` groups.

    The returned model is the large network with the trained trunk and general head (the large
    model's architecture: it saves, loads and warm-starts like ``large``). ``hierarchy_`` holds the
    whole tree (:class:`HierarchicalHeads`) and :meth:`domain_model` gives a domain's branch as a
    classifier (in memory: its head is the group block and the domain head, so it does not load
    back by architecture name; save ``hierarchy_.state_dict()`` to keep the tree). ``report.info`` holds ``taxonomy`` (group -> domains), ``taxonomy_source``
    (``"given"`` or ``"learned"``) and, when learned, ``expert_distances`` (domain -> domain ->
    distance).

    Parameters
    ----------
    taxonomy : mapping group name -> list of expert domains, or None to learn it. Every expert
        domain in exactly one group; the general domain is the root and in none.
    n_groups : int >= 1, groups to learn (used only without ``taxonomy``); at most the number of experts.
    distance : ``"js"`` (mean Jensen-Shannon divergence) or ``"disagreement"``, to learn the taxonomy.
    temperature, head_weight : as for ``multitask``.

    Attributes
    ----------
    taxonomy_ : the taxonomy used (after ``prepare``).
    heads_ : dict domain -> branch ``Sequential(group block, domain head)`` (after training).
    hierarchy_ : :class:`HierarchicalHeads`, the tree (after training).
    model_ : the model :func:`~crossfeed.feedback.absorb` returned with this strategy.

    Example
    -------
    >>> strategy = Hierarchical(taxonomy={"pos": ["shifted", "scaled"], "dist": ["noisy", "sheared"]})  # doctest: +SKIP
    >>> new, report = absorb(large, experts, suite, strategy, epochs=10)                                 # doctest: +SKIP
    >>> strategy.domain_model("scaled").score(X_scaled, y_scaled)                                        # doctest: +SKIP
    """

    params: ClassVar[dict[str, Param]] = {
        "taxonomy": Param(dict, none=True, help="group name -> list of expert domains; null learns it"),
        "n_groups": Param(int, low=1, help="number of groups to learn when no taxonomy is given"),
        "distance": Param(str, choices=DISTANCES, help="distance between experts' behaviour, to learn the taxonomy"),
        **MultiTask.params,
    }

    def __init__(self, taxonomy: dict[str, list[str]] | None = None, n_groups: int = 2, distance: str = "js",
                 temperature: float = 2.0, head_weight: float = 1.0) -> None:
        super().__init__(temperature=temperature, head_weight=head_weight)
        self.taxonomy = taxonomy
        self.n_groups = n_groups
        self.distance = distance

    def prepare(self, ctx: FeedbackContext) -> HierarchyData:
        data = super().prepare(ctx)
        domains = list(ctx.experts)
        if self.taxonomy is not None:
            self.taxonomy_, info = check_taxonomy(self.taxonomy, domains, ctx.general), {"taxonomy_source": "given"}
        else:
            self.taxonomy_, info = self._learn(ctx, data)
        parts = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
        parts["info"] = {**data.info, "taxonomy": self.taxonomy_, **info}
        return HierarchyData(**parts, groups=group_index(self.taxonomy_, domains))

    def _learn(self, ctx: FeedbackContext, data: DomainHeadsData) -> tuple[dict[str, list[str]], dict[str, Any]]:
        """The taxonomy learned from the experts' behaviour on the pooled field rows of ``data``."""
        domains = list(ctx.experts)
        probe = data.X[data.domain_index >= 0]
        distances = expert_distances(behaviour_matrix(ctx.experts, probe), self.distance)
        taxonomy = learn_taxonomy(distances, domains, n_groups=self.n_groups)
        table = {a: {b: float(distances[i, j]) for j, b in enumerate(domains)} for i, a in enumerate(domains)}
        return taxonomy, {"taxonomy_source": "learned", "expert_distances": table}

    def hooks(self, ctx: FeedbackContext, data: HierarchyData) -> list[TrainingHook]:
        self._hook = HierarchyHook(data.domain_index, data.teacher_logits, data.groups,
                                   float(self.temperature), float(self.head_weight))
        return [self._hook]

    def remember(self, ctx: FeedbackContext, new_large: Any, data: Any) -> None:
        super().remember(ctx, new_large, data)
        self.hierarchy_ = HierarchicalHeads(copy.deepcopy(new_large.module_), copy.deepcopy(self.heads_),
                                            ctx.general, self.taxonomy_).eval()
