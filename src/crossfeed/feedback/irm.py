"""IRM (IRMv1): invariant risk minimisation with the domains as environments.

Arjovsky, Bottou, Gulrajani & Lopez-Paz (2019), "Invariant Risk Minimization", arXiv 1907.02893.
The large model is asked for a representation on which the same classifier is optimal in every
environment: IRMv1 penalises, per environment, the squared gradient of its risk with respect to
a dummy scale ``w = 1.0`` of the logits (:func:`~crossfeed.feedback._invariance.irm_penalty`), and
averages it over the environments of each batch. Like ``joint_training`` it reads the labelled
training data of the general domain and of every expert's domain (``data_free = False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from crossfeed.feedback._base import register
from crossfeed.feedback._invariance import InvarianceStrategy, irm_penalty
from crossfeed.feedback._params import Param

__all__ = ["IRM"]


@register("irm")
class IRM(InvarianceStrategy):
    """IRMv1 over the general domain and every expert's domain as environments.

    Parameters
    ----------
    penalty_weight : float >= 0, the penalty's weight after annealing (the reference Colored
        MNIST code: 91257.18); 0 trains plain ERM on balanced batches.
    anneal_steps : int >= 0, optimizer steps with weight 1 first (reference: 190).
    l2_weight : float >= 0, squared L2 norm of the weights in the loss, divided with it after
        annealing (reference: 0.0011); 0: none (the optimizer's weight decay still applies).
    unbiased : bool, default False: the reference code's squared gradient of each environment's
        batch risk; True: the paper's unbiased estimate (product of the gradients of the even
        and the odd rows).
    """

    params: ClassVar[dict[str, Param]] = {
        **InvarianceStrategy.params,
        "unbiased": Param(bool, help="the paper's unbiased two-half estimate instead of the squared gradient"),
    }

    def __init__(self, penalty_weight: float = 91257.18, anneal_steps: int = 190, l2_weight: float = 0.0,
                 unbiased: bool = False) -> None:
        self.penalty_weight = penalty_weight
        self.anneal_steps = anneal_steps
        self.l2_weight = l2_weight
        self.unbiased = unbiased

    def penalty(self, groups: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Mean over the environments of :func:`irm_penalty`."""
        return torch.stack([irm_penalty(logits, y, unbiased=self.unbiased) for logits, y in groups]).mean()
