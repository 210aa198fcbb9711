"""``crossfeed run CONFIG.yaml``: the cycle of a config over its seeds, with results and a report.

Output folder::

    config.yaml          the config as parsed (every default written out)
    seed-<s>/gen-<g>/    checkpoints of each generation (see crossfeed.cycle)
    results.json         every generation of every seed, and a summary over seeds
    report.md, report.html, *.png   heat maps and absorption charts
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed.data._cache import atomic_write_bytes
from crossfeed.experiments._config import ExperimentConfig, config_to_dict, save_config
from crossfeed.experiments._progress import Progress, SilentProgress

__all__ = ["ExperimentResult", "run_experiment"]


@dataclass
class ExperimentResult:
    """The cycle results of every seed of a config, and where they were written."""

    config: ExperimentConfig
    cycles: list[Any]  # list[crossfeed.cycle.CycleResult]
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
            reports = {} if last.feedback is None else {last.feedback["strategy"]: last.feedback, **last.compare}
            for strategy, report in reports.items():
                absorption.setdefault(strategy, {})
                for d, row in report["domains"].items():
                    if row["absorption"] is not None:
                        absorption.setdefault(strategy, {}).setdefault(d, []).append(row["absorption"])
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


def run_experiment(
    config: ExperimentConfig, out: str | Path | None = None, *, resume: bool = True, progress: Progress | None = None
) -> ExperimentResult:
    """Run the cycle of ``config`` for each of its seeds; write checkpoints, results and report under ``out``.

    Example
    -------
    >>> from crossfeed.experiments import load_config, run_experiment     # doctest: +SKIP
    >>> result = run_experiment(load_config("examples/demo.yaml"), "runs/demo")  # doctest: +SKIP
    """
    from crossfeed.cycle import run_cycle
    from crossfeed.report import write_experiment_report

    progress = progress or SilentProgress()
    root = Path(out) if out is not None else None
    if root is not None:
        _claim(root, config)
    start = time.perf_counter()
    cycles = []
    for seed in config.seeds:
        progress.stage(f"seed {seed}")
        cycles.append(run_cycle(config, seed, None if root is None else root / f"seed-{seed}", resume=resume,
                                progress=progress))
    result = ExperimentResult(config, cycles, root, round(time.perf_counter() - start, 2))
    if root is not None:
        atomic_write_bytes(root / "results.json", json.dumps(result.to_dict(), indent=2).encode())
        write_experiment_report(result, root)
    return result


def _claim(root: Path, config: ExperimentConfig) -> None:
    """Write ``config.yaml`` into a new output folder; refuse a folder that holds another experiment."""
    from crossfeed.exceptions import ValidationError
    from crossfeed.experiments._config import load_config

    path = root / "config.yaml"
    if path.exists():
        recorded = load_config(path)
        if recorded != config:
            raise ValidationError(
                f"{root} holds the results of another experiment ({recorded.name!r}, see {path}); use another "
                "output folder (--out), or delete it to start over"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _spread(values: Any) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}
