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

from crossfeed.config import ExperimentConfig, config_from_dict, config_to_dict
from crossfeed.evaluate import spread
from crossfeed.feedback import FeedbackReport

__all__ = ["CycleResult", "ExperimentResult", "GenerationResult"]


@dataclass
class GenerationResult:
    """What one generation measured.

    Attributes
    ----------
    generation : 0 for the initial large model, then 1, 2, ...
    accuracy : model name -> domain -> test accuracy; models are ``"large"`` and ``"expert:<domain>"``.
    val_accuracy : domain -> validation accuracy of the large model that goes on (on the part of the
        validation split training sees; the gate reads its own held-out part, see ``decisions``).
    feedback : the feedback step's :class:`~crossfeed.feedback.FeedbackReport` (``None`` in generation 0).
    compare : strategy name -> the report of each comparison strategy.
    accepted : False when the gate kept the previous large model.
    field_samples : domain -> field samples available to this generation.
    seconds : wall-clock seconds per step.
    served : domain -> ``{"label", "path"}`` of the model that answers it after this generation
        (``accuracy["served"]`` is their test accuracy).
    decisions : every test of the gate (:class:`crossfeed.cycle.Decision` as a mapping: purpose,
        domain, candidate, reference, their gate accuracies, p-value raw and adjusted, interval,
        passed, chosen).
    lineage : what produced this generation (see :mod:`crossfeed.cycle._lineage`).
    """

    generation: int
    accuracy: dict[str, dict[str, float]]
    val_accuracy: dict[str, float]
    feedback: FeedbackReport | None = None
    compare: dict[str, FeedbackReport] = field(default_factory=dict)
    accepted: bool = True
    field_samples: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    served: dict[str, dict[str, str]] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    lineage: dict[str, Any] = field(default_factory=dict)

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
    """Every generation of one seed; ``large_matrix()`` / ``served_matrix()`` are the generation x
    domain accuracy tables of the large model that goes on / of what answers each domain."""

    seed: int
    domains: list[str]
    general_domain: str
    generations: list[GenerationResult]
    resumed_from: int | None = None
    margin: float = 0.0

    def large_matrix(self) -> np.ndarray:
        """Test accuracy of the large model, shape (n_generations, n_domains)."""
        return np.array([[g.accuracy["large"][d] for d in self.domains] for g in self.generations])

    def served_matrix(self) -> np.ndarray:
        """Test accuracy of the served model of each domain, shape (n_generations, n_domains)
        (the large model where a record predates serving)."""
        return np.array([[g.accuracy.get("served", g.accuracy["large"])[d] for d in self.domains]
                         for g in self.generations])

    def falls(self, which: str = "served", margin: float | None = None) -> list[dict[str, Any]]:
        """Every drop of test accuracy from one generation to the next by more than ``margin``
        (default: the gate's): ``{"seed", "generation", "domain", "points"}`` (points negative)."""
        m = self.served_matrix() if which == "served" else self.large_matrix()
        margin = self.margin if margin is None else margin
        return [{"seed": self.seed, "generation": g, "domain": d, "points": 100 * float(m[g, j] - m[g - 1, j])}
                for g in range(1, m.shape[0]) for j, d in enumerate(self.domains) if m[g, j] < m[g - 1, j] - margin - 1e-12]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "domains": self.domains, "general_domain": self.general_domain,
                "resumed_from": self.resumed_from, "margin": self.margin,
                "generations": [g.to_dict() for g in self.generations]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CycleResult:
        return cls(data["seed"], list(data["domains"]), data["general_domain"],
                   [GenerationResult.from_dict(g) for g in data["generations"]], data.get("resumed_from"),
                   data.get("margin", 0.0))


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
            f"gen-{g}": {d: spread(stack[:, g, j]) for j, d in enumerate(domains)} for g in range(stack.shape[1])
        }
        served_stack = np.stack([c.served_matrix() for c in self.cycles])
        served = {
            f"gen-{g}": {d: spread(served_stack[:, g, j]) for j, d in enumerate(domains)}
            for g in range(served_stack.shape[1])
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
            "absorption_last_generation": {s: {d: spread(v) for d, v in rows.items()} for s, rows in absorption.items()},
            "served_accuracy": served,
            "never_falls": all(bool(np.all(np.diff(c.large_matrix(), axis=0) >= 0)) for c in self.cycles),
            "margin": first.margin,
            "served_falls_beyond_margin": [f for c in self.cycles for f in c.falls("served")],
        }

    def to_dict(self) -> dict[str, Any]:
        return {"config": config_to_dict(self.config), "seconds": self.seconds, "summary": self.summary(),
                "seeds": [c.to_dict() for c in self.cycles]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], out: Path | None = None) -> ExperimentResult:
        """Read back :meth:`to_dict` (a run's ``results.json``)."""
        return cls(config_from_dict(data["config"]), [CycleResult.from_dict(c) for c in data["seeds"]], out,
                   data.get("seconds", 0.0))
