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
from pathlib import Path

from crossfeed._cache import atomic_write_bytes
from crossfeed._progress import Progress, SilentProgress
from crossfeed.config import ExperimentConfig, save_config
from crossfeed.cycle import ExperimentResult, run_cycle
from crossfeed.report import write_experiment_report

__all__ = ["ExperimentResult", "run_experiment"]


def run_experiment(
    config: ExperimentConfig, out: str | Path | None = None, *, resume: bool = True, progress: Progress | None = None
) -> ExperimentResult:
    """Run the cycle of ``config`` for each of its seeds; write checkpoints, results and report under ``out``.

    Example
    -------
    >>> from crossfeed.experiments import load_config, run_experiment     # doctest: +SKIP
    >>> result = run_experiment(load_config("examples/demo.yaml"), "runs/demo")  # doctest: +SKIP
    """
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
    from crossfeed.config import load_config
    from crossfeed.exceptions import ValidationError

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
