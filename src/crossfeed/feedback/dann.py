"""DANN: domain-adversarial training through a gradient reversal layer.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand & Lempitsky (2016),
"Domain-Adversarial Training of Neural Networks", JMLR 17(59), arXiv 1505.07818. A domain
discriminator reads the large model's features through :func:`gradient_reversal`; it learns to
tell the domains apart while the features learn to make that impossible. The large model trains on
the general domain's labelled rows and the unlabelled field rows of every expert's domain; the
loss is the cross-entropy of the labelled rows plus ``weight`` times the discriminator's
cross-entropy. The reversal strength follows Ganin's schedule :func:`dann_lambda` over the share
of training done (the learning rate is the loop's, not Ganin's annealed one).

Multi-source: the discriminator has one class per domain (the general domain and each target
domain, K + 1 classes), on batches that hold as many rows of every domain. The experts are not
used unless ``teach`` adds their KD on the field rows.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.feedback._adaptation import (
    TEACH_PARAM,
    AdaptationData,
    AdaptationStrategy,
    AlignmentHook,
    dann_lambda,
    domain_discriminator,
    gradient_reversal,
)
from crossfeed.feedback._base import FeedbackContext, register
from crossfeed.feedback._params import Param

__all__ = ["DANN", "AdversarialHook"]


class AdversarialHook(AlignmentHook):
    """The discriminator's cross-entropy on reversed features; the discriminator is built in ``setup``.

    Attributes
    ----------
    discriminator : nn.Module (after ``setup``), features -> one logit per domain.
    """

    def __init__(self, groups: np.ndarray, labelled: np.ndarray, weight: float, epochs: int,
                 teacher_logits: np.ndarray | None = None, *, hidden: int, schedule: bool) -> None:
        super().__init__(groups, labelled, weight, epochs, teacher_logits)
        self.hidden = hidden
        self.schedule = schedule
        self.discriminator: nn.Module = nn.Identity()

    def extra_parameters(self, n_features: int, device: torch.device) -> list[nn.Parameter]:
        self.discriminator = domain_discriminator(n_features, self.n_groups, self.hidden).to(device)
        return list(self.discriminator.parameters())

    def alignment(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        lambd = dann_lambda(self.progress) if self.schedule else 1.0
        return F.cross_entropy(self.discriminator(gradient_reversal(features, lambd)), groups)


@register("dann")
class DANN(AdaptationStrategy):
    """Domain-adversarial training from the general domain to every expert's domain.

    Parameters
    ----------
    weight : float >= 0, weight of the discriminator's loss (0: source-only training on the same batches).
    hidden : int >= 1, width of the discriminator's two hidden layers.
    schedule : bool, True: reversal strength ``dann_lambda(progress)``; False: 1 throughout.
    teach : bool, also distil each domain's expert on its field rows (DA + KD; see
        :mod:`crossfeed.feedback._adaptation`).
    """

    params: ClassVar[dict[str, Param]] = {
        "weight": Param(float, low=0.0, help="weight of the domain discriminator's loss"),
        "hidden": Param(int, low=1, help="width of the discriminator's hidden layers"),
        "schedule": Param(bool, help="Ganin's schedule of the reversal strength (else 1)"),
        "teach": TEACH_PARAM,
    }

    def __init__(self, weight: float = 1.0, hidden: int = 64, schedule: bool = True, teach: bool = False) -> None:
        self.weight = weight
        self.hidden = hidden
        self.schedule = schedule
        self.teach = teach

    def alignment_hook(self, ctx: FeedbackContext, data: AdaptationData) -> AdversarialHook:
        return AdversarialHook(**self.hook_args(ctx, data), hidden=self.hidden, schedule=self.schedule)
