"""V-REx: risk extrapolation with the domains as environments.

Krueger, Caballero, Jacobsen, Zhang, Binas, Zhang, Le Priol & Courville (ICML 2021),
"Out-of-Distribution Generalization via Risk Extrapolation", arXiv 2003.00688. The large model is
asked for equal risks in every environment: V-REx penalises the variance of the environments'
mean cross-entropies in each batch (:func:`~crossfeed.feedback._invariance.vrex_penalty`), with
the same annealing and rescaling as IRM. Like ``joint_training`` it reads the labelled training
data of the general domain and of every expert's domain (``data_free = False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from crossfeed.feedback._base import register
from crossfeed.feedback._invariance import InvarianceStrategy, vrex_penalty
from crossfeed.feedback._params import Param

__all__ = ["VREx"]


@register("vrex")
class VREx(InvarianceStrategy):
    """V-REx over the general domain and every expert's domain as environments.

    Parameters
    ----------
    penalty_weight : float >= 0, the penalty's weight after annealing (the authors' Colored MNIST
        setting: 10,000); 0 trains plain ERM on balanced batches.
    anneal_steps : int >= 0, optimizer steps with weight 1 first (190 as in IRM's code).
    l2_weight : float >= 0, squared L2 norm of the weights in the loss, divided with it after
        annealing (IRM's reference: 0.0011); 0: none.
    """

    params: ClassVar[dict[str, Param]] = dict(InvarianceStrategy.params)

    def __init__(self, penalty_weight: float = 10000.0, anneal_steps: int = 190, l2_weight: float = 0.0) -> None:
        self.penalty_weight = penalty_weight
        self.anneal_steps = anneal_steps
        self.l2_weight = l2_weight

    def penalty(self, groups: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """:func:`vrex_penalty` of the environments' mean cross-entropies."""
        return vrex_penalty([F.cross_entropy(logits, y) for logits, y in groups])
