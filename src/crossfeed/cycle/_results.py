"""What the cycle measured: one generation, one seed's generations, and every seed of a config.

Typed to the end: the report and the CLI read these objects; ``to_dict`` is only for JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed.config import ExperimentConfig, config_to_dict
from crossfeed.feedback import FeedbackReport

__all__ = ["CycleResult", "ExperimentResult", "GenerationResult"]


@dataclass
class GenerationResult:
    """What one generation measured.

    Attributes
    ----------
    generation : 0 for the initial large model, then 1, 2, ...
    accuracy : model name -> domain -> test accuracy; models are ``"large"`` and ``"expert:<domain>"``.
    val_accuracy : domain -> validation accuracy of this generation's large model (what the gate reads).
    feedback : the feedback step's :class:`~crossfeed.feedback.FeedbackReport` (``None`` in generation 0).
    compare : strategy name -> the report of each comparison strategy.
    accepted : False when the gate kept the previous large model.
    field_samples : domain -> field samples available to this generation.
    seconds : wall-clock seconds per step.
    """

    generation: int
    accuracy: dict[str, dict[str, float]]
    val_accuracy: dict[str, float]
    feedback: FeedbackReport | None = None
    compare: dict[str, FeedbackReport] = field(default_factory=dict)
    accepted: bool = True
    field_samples: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def reports(self) -> list[tuple[str, FeedbackReport, bool]]:
        """``(strategy, report, is_main)`` of the feedback step and every compared strategy."""
        if self.feedback is None:
            return []
        return [(self.feedback.strategy, self.feedback, True), *((n, r, False) for n, r in self.compare.items())]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["feedback"] = None if self.feedback is None else self.feedback.to_dict()
        data["compare"] = {n: r.to_dict() for n, r in self.compare.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationResult:
        data = dict(data)
        data["feedback"] = None if data.get("feedback") is None else FeedbackReport.from_dict(data["feedback"])
        data["compare"] = {n: FeedbackReport.from_dict(r) for n, r in data.get("compare", {}).items()}
        return cls(**data)


@dataclass
class CycleResult:
    """Every generation of one seed; ``large_matrix()`` is the generation x domain accuracy table."""

    seed: int
    domains: list[str]
    general_domain: str
    generations: list[GenerationResult]
    resumed_from: int | None = None

    def large_matrix(self) -> np.ndarray:
        """Test accuracy of the large model, shape (n_generations, n_domains)."""
        return np.array([[g.accuracy["large"][d] for d in self.domains] for g in self.generations])

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "domains": self.domains, "general_domain": self.general_domain,
                "resumed_from": self.resumed_from, "generations": [g.to_dict() for g in self.generations]}


@dataclass
class ExperimentResult:
    """The cycle results of every seed of a config, and where they were written."""

    config: ExperimentConfig
    cycles: list[CycleResult]
    out: Path | None
    seconds: float

    def summary(self) -> dict[str, Any]:
        """Per generation and domain: the large model's test accuracy, median [min, max] over seeds;
        per strategy and domain: absorption of the last generation, median [min, max] over seeds."""
        first = self.cycles[0]
        domains = first.domains
        stack = np.stack([c.large_matrix() for c in self.cycles])  # seeds x generations x domains
        large = {
            f"gen-{g}": {d: _spread(stack[:, g, j]) for j, d in enumerate(domains)} for g in range(stack.shape[1])
        }
        absorption: dict[str, dict[str, Any]] = {}
        for cycle in self.cycles:
            last = cycle.generations[-1]
            for strategy, report, _ in last.reports():
                absorption.setdefault(strategy, {})
                for d, row in report.domains.items():
                    if row.absorption is not None:
                        absorption[strategy].setdefault(d, []).append(row.absorption)
        return {
            "domains": domains,
            "general_domain": first.general_domain,
            "large_accuracy": large,
            "absorption_last_generation": {s: {d: _spread(v) for d, v in rows.items()} for s, rows in absorption.items()},
            "never_falls": all(bool(np.all(np.diff(c.large_matrix(), axis=0) >= 0)) for c in self.cycles),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"config": config_to_dict(self.config), "seconds": self.seconds, "summary": self.summary(),
                "seeds": [c.to_dict() for c in self.cycles]}



def _spread(values: Any) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}
