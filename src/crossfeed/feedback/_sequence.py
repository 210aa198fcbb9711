"""Setting (c) of feedback: the experts' domains arrive one after another.

:func:`absorb_sequence` runs :func:`~crossfeed.feedback.absorb` once per domain, in order, with one
strategy instance, so a continual-learning strategy carries its memory (Fisher information, the
previous model, a replay buffer) from step to step through its ``remember`` hook. The report says
how much of each domain the final model kept: forgetting of domain ``d`` is its accuracy right
after ``d`` was absorbed minus its accuracy at the end (Chaudhry et al. 2018, arXiv 1801.10112).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfeed.data import DomainSuite
from crossfeed.evaluate import absorption
from crossfeed.exceptions import ValidationError
from crossfeed.feedback._absorb import FeedbackReport, absorb, resolve_settings, resolve_strategy
from crossfeed.feedback._base import FeedbackStrategy, TrainSettings
from crossfeed.models import TorchClassifier

__all__ = ["SequenceReport", "absorb_sequence"]


@dataclass
class SequenceReport:
    """What :func:`absorb_sequence` measured.

    Attributes
    ----------
    strategy : registry name of the strategy.
    order : the domains in the order they were absorbed.
    steps : one :class:`FeedbackReport` per step (``steps[i]`` compares the model before and after step ``i``).
    wall_seconds : total wall-clock seconds.
    """

    strategy: str
    order: list[str]
    steps: list[FeedbackReport] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def general_domain(self) -> str:
        return self.steps[0].general_domain

    def accuracy(self, domain: str, after_step: int = -1) -> float:
        """Test accuracy on ``domain`` after step ``after_step`` (default: the last)."""
        return self.steps[after_step].domains[domain].acc_v1

    def initial(self, domain: str) -> float:
        """Test accuracy on ``domain`` before any step (the large model v0)."""
        return self.steps[0].domains[domain].acc_v0

    def forgetting(self, domain: str) -> float:
        """Accuracy on ``domain`` right after it was absorbed minus at the end (positive = forgotten).

        The general domain, never absorbed, counts from the start: ``v0 - final``.
        """
        if domain == self.general_domain:
            return self.initial(domain) - self.accuracy(domain)
        return self.accuracy(domain, self._step(domain)) - self.accuracy(domain)

    def _step(self, domain: str) -> int:
        if domain not in self.order:
            raise ValidationError(f"domain {domain!r} was not absorbed; the order was {self.order}")
        return self.order.index(domain)

    def absorption(self, domain: str) -> float | None:
        """``(final - v0) / (expert - v0)`` on ``domain``; None when its expert does not lead v0."""
        expert = self.steps[self._step(domain)].domains[domain].acc_expert
        return absorption(self.initial(domain), expert, self.accuracy(domain))

    def mean_forgetting(self) -> float:
        """Mean forgetting over the absorbed domains but the last (the last cannot be forgotten yet)."""
        earlier = self.order[:-1]
        return float(np.mean([self.forgetting(d) for d in earlier])) if earlier else 0.0


def absorb_sequence(
    large: TorchClassifier,
    experts: Mapping[str, Any],
    suite: DomainSuite,
    strategy: str | FeedbackStrategy,
    settings: TrainSettings | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    order: Sequence[str] | None = None,
    keep_weaker_experts: bool = False,
    epochs: int | None = None,
    lr: float | None = None,
    random_state: int | None = None,
) -> tuple[TorchClassifier, SequenceReport]:
    """Absorb the experts one domain at a time, in ``order``; return the final model and a report.

    Parameters
    ----------
    large, experts, suite, settings, params, keep_weaker_experts, epochs, lr, random_state : as in
        :func:`absorb` (an expert is compared with the model of its step); step ``i`` trains with
        seed ``settings.seed + i``.
    strategy : a registered name or a :class:`FeedbackStrategy`; one instance serves every step.
    order : the domains of ``experts`` in the order they arrive (default: the suite's order).

    Example
    -------
    >>> final, report = absorb_sequence(large, experts, suite, "ewc")  # doctest: +SKIP
    >>> report.mean_forgetting()                                                         # doctest: +SKIP
    """
    strat = resolve_strategy(strategy, params)
    settings = resolve_settings(large, settings, epochs=epochs, lr=lr, random_state=random_state)
    if not experts:
        raise ValidationError("experts must be a non-empty mapping of domain name -> fitted classifier")
    names = [n for n in suite.names if n in experts] if order is None else list(order)
    if sorted(names) != sorted(experts) or len(set(names)) != len(names):
        raise ValidationError(
            f"order must list every expert's domain exactly once; experts: {sorted(experts)}, order: {names}"
        )
    report = SequenceReport(strat.name, names)
    start = time.perf_counter()
    model = large
    for i, name in enumerate(names):
        model, step = absorb(model, {name: experts[name]}, suite, strat, settings.replace(seed=settings.seed + i),
                             keep_weaker_experts=keep_weaker_experts)
        report.steps.append(step)
    report.wall_seconds = time.perf_counter() - start
    return model, report
