"""FedProx: FedAvg whose clients add the proximal term ``(mu / 2) · ||w - w_global||²``.

Li, Sahu, Zaheer, Sanjabi, Talwalkar & Smith (MLSys 2020), "Federated Optimization in
Heterogeneous Networks", arXiv 1812.06127. The term keeps each client's weights near the round's
global weights, which limits client drift on non-IID data. (Flower's ``FedProx`` only sends
``proximal-mu`` to the clients and leaves the term to them; here the term is the client's hook.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

import torch
from torch import nn

from crossfeed.feedback._base import register
from crossfeed.feedback._params import Param
from crossfeed.feedback.fedavg import FedAvg
from crossfeed.training import Batch, TrainingHook

__all__ = ["FedProx", "ProximalHook", "proximal_term"]


def proximal_term(params: Iterable[tuple[str, torch.Tensor]], anchor: Mapping[str, torch.Tensor],
                  mu: float) -> torch.Tensor:
    """``(mu / 2) · sum_k ||w_k - anchor_k||²`` over the named parameters.

    Example
    -------
    >>> w = [("a", torch.tensor([1.0, 3.0]))]
    >>> float(proximal_term(w, {"a": torch.tensor([0.0, 1.0])}, mu=0.5))
    1.25
    """
    total = None
    for name, p in params:
        term = (p - anchor[name]).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return 0.5 * mu * total


class ProximalHook(TrainingHook):
    """Adds :func:`proximal_term` against a fixed copy of the global weights to every batch's loss."""

    def __init__(self, global_module: nn.Module, mu: float) -> None:
        self.mu = mu
        self._anchor = {k: v.detach().clone() for k, v in global_module.named_parameters()}

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self._anchor = {k: v.to(device) for k, v in self._anchor.items()}

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        if self.mu == 0:
            return None
        return proximal_term(((k, p) for k, p in module.named_parameters() if p.requires_grad), self._anchor, self.mu)


@register("fedprox")
class FedProx(FedAvg):
    """FedAvg with a proximal term on every client.

    Parameters
    ----------
    rounds : int >= 1, communication rounds.
    mu : float >= 0, strength of the proximal term (0 is FedAvg).
    fraction : share of the clients sampled each round (see :class:`FedAvg`).
    """

    params: ClassVar[dict[str, Param]] = {**FedAvg.params, "mu": Param(float, low=0.0, help="proximal strength")}

    def __init__(self, rounds: int = 5, mu: float = 0.01, fraction: float = 1.0) -> None:
        self.rounds = rounds
        self.mu = mu
        self.fraction = fraction

    def client_hooks(self, global_module: nn.Module) -> list[TrainingHook]:
        return [ProximalHook(global_module, float(self.mu))]
