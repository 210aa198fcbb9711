"""What the reports render: the demo's measurements (the cycle's results live in ``crossfeed.cycle``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossfeed.cycle import CycleResult

__all__ = ["DemoResult"]


@dataclass
class DemoResult:
    """Everything the demo measured; ``records`` is what ``results.json`` holds."""

    records: list[dict[str, Any]]
    cascade: dict[str, Any]
    spawn: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    curve: dict[str, list[float]] = field(default_factory=dict)
    cycle: CycleResult | None = None  # the feedback section's cycle, or None

    def record(self, name: str) -> dict[str, Any]:
        return next(r for r in self.records if r["name"] == name)

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "records": self.records, "cascade": self.cascade, "spawn": self.spawn,
                "curve": self.curve, "cycle": None if self.cycle is None else self.cycle.to_dict()}
