"""DP-FedAvg: federated averaging with client-level differential privacy on the server.

McMahan, Ramage, Talwar & Zhang (ICLR 2018), "Learning Differentially Private Recurrent Language
Models", arXiv 1710.06963, with fixed clipping (what Flower's
``DifferentialPrivacyServerSideFixedClipping`` does): every client's update (its weights minus the
round's global weights) is clipped to L2 norm ``clip_norm``; the server adds Gaussian noise of
standard deviation ``noise_multiplier * clip_norm`` to the sum of the clipped updates and divides by
the number of updates. Adding or removing one client changes the sum by at most ``clip_norm``, so
each round is a Gaussian mechanism; :func:`gaussian_epsilon` composes the rounds with Rényi DP
(Mironov 2017, arXiv 1702.07476: ``eps(alpha) = rounds * alpha / (2 sigma^2)``, converted to
``(epsilon, delta)`` at the best ``alpha``).

What is protected: the trained global network, against anyone who sees it (or the server's
output), at the level of a whole client. Not protected: the individual updates on their way to the
server, which sees them in the clear (that needs secure aggregation, not built here). Every client
takes part in every round (no subsampling amplification is claimed).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._base import register
from crossfeed.feedback._params import Param
from crossfeed.feedback._rounds import Failure, LocalUpdate, module_with_state
from crossfeed.feedback.fedavg import FedAvg

__all__ = ["DPFedAvg", "clip_update", "gaussian_epsilon"]


def clip_update(update: dict[str, torch.Tensor], clip_norm: float) -> tuple[dict[str, torch.Tensor], float]:
    """``update`` scaled down to L2 norm at most ``clip_norm`` (over all its entries); and its norm before.

    Example
    -------
    >>> clipped, norm = clip_update({"w": torch.tensor([3.0, 4.0])}, 1.0)
    >>> clipped["w"], norm
    (tensor([0.6000, 0.8000]), 5.0)
    """
    if not clip_norm > 0:
        raise ValidationError(f"clip_norm must be > 0; got {clip_norm!r}")
    norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in update.values()))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: v * scale for k, v in update.items()}, norm


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The ``epsilon`` of ``rounds`` Gaussian mechanisms of noise ``noise_multiplier`` (x sensitivity) at ``delta``.

    Rényi DP of order ``alpha`` composes to ``rounds * alpha / (2 sigma^2)``; converting with
    ``eps = rdp + log(1/delta) / (alpha - 1)`` and choosing the best ``alpha`` gives
    ``rounds / (2 sigma^2) + sqrt(2 rounds log(1/delta)) / sigma``. Infinite without noise.

    Example
    -------
    >>> math.floor(1000 * gaussian_epsilon(1.0, 1, 1e-5)) / 1000
    5.298
    """
    if not 0 < delta < 1:
        raise ValidationError(f"delta must be in (0, 1); got {delta!r}")
    if rounds < 0:
        raise ValidationError(f"rounds must be >= 0; got {rounds!r}")
    if rounds == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    s2 = noise_multiplier**2
    return rounds / (2 * s2) + math.sqrt(2 * rounds * math.log(1 / delta)) / noise_multiplier


@register("dp_fedavg")
class DPFedAvg(FedAvg):
    """FedAvg with clipped client updates and Gaussian noise on their sum (client-level DP).

    Parameters
    ----------
    rounds : int >= 1, communication rounds.
    clip_norm : float > 0, the largest L2 norm of a client's update (all its floating entries).
    noise_multiplier : float >= 0, the noise's standard deviation in units of ``clip_norm``
        (0: clipping only, no privacy guarantee).
    delta : float in (0, 1), the ``delta`` at which :meth:`epsilon` is reported.
    fraction : share of the clients sampled each round (see :class:`FedAvg`); the epsilon
        reported does not count the amplification that sampling brings (it stays an upper bound).

    Attributes (after a run)
    ------------------------
    clipped_ : per round, how many of the updates were clipped.
    """

    params: ClassVar[dict[str, Param]] = {
        **FedAvg.params,
        "clip_norm": Param(float, low=0.0, low_open=True, help="largest L2 norm of a client's update"),
        "noise_multiplier": Param(float, low=0.0, help="noise std in units of clip_norm"),
        "delta": Param(float, low=0.0, high=1.0, low_open=True, high_open=True, help="delta of (epsilon, delta)"),
    }

    def __init__(self, rounds: int = 5, clip_norm: float = 1.0, noise_multiplier: float = 1.0,
                 delta: float = 1e-5, fraction: float = 1.0) -> None:
        self.rounds = rounds
        self.fraction = fraction
        self.clip_norm = clip_norm
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.clipped_: list[int] = []

    def epsilon(self, rounds: int | None = None) -> float:
        """The privacy spent after ``rounds`` rounds (all of them by default), at ``delta``."""
        return gaussian_epsilon(self.noise_multiplier, self.rounds if rounds is None else rounds, self.delta)

    def aggregate(self, round: int, start: nn.Module, updates: list[LocalUpdate],
                  failures: list[Failure]) -> nn.Module | None:
        if round == 1:
            self.clipped_ = []
        base = start.state_dict()
        keys = [k for k, v in base.items() if v.is_floating_point()]
        total = {k: torch.zeros_like(base[k], dtype=torch.float64) for k in keys}
        clipped = 0
        for u in updates:
            state = u.state()
            delta, norm = clip_update({k: state[k].double() - base[k].double() for k in keys}, self.clip_norm)
            clipped += norm > self.clip_norm
            for k in keys:
                total[k] += delta[k]
        self.clipped_.append(clipped)
        generator = torch.Generator().manual_seed(7919 * round + 17)
        std = self.noise_multiplier * self.clip_norm
        new = dict(base)
        for k in keys:
            noise = torch.randn(total[k].shape, generator=generator, dtype=torch.float64) * std
            new[k] = (base[k].double() + (total[k] + noise) / len(updates)).to(base[k].dtype)
        return module_with_state(start, new)
