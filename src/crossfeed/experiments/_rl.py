"""``crossfeed run`` of a ``kind: rl`` config: the RL cycle on environment variants, every seed.

Output folder::

    config.yaml               the config as parsed (every default written out)
    seed-<s>/                 the policies of every generation, rl-cycle.json, rl-report.md, rl-heatmap.png
    rl-results.json           every seed's cycle, and per generation, policy and variant the median
                              [min, max] return over seeds
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from crossfeed._cache import atomic_write_bytes
from crossfeed.config import RLExperimentConfig
from crossfeed.evaluate import spread
from crossfeed.exceptions import ValidationError

__all__ = ["run_rl_experiment"]


def run_rl_experiment(config: RLExperimentConfig, out: str | Path, *,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the RL cycle of ``config`` for each of its seeds into ``out``; return ``rl-results.json``'s content.

    Needs ``crossfeed[rl]`` (gymnasium, stable-baselines3). Every seed runs from generation 0
    (the RL cycle does not resume); a folder holding a supervised experiment is refused.
    """
    import torch

    from crossfeed.report import write_rl_report
    from crossfeed.rl import run_rl_cycle

    root = Path(out)
    if (root / "results.json").exists() or any(root.glob("seed-*/gen-*/generation.json")):
        raise ValidationError(f"{root} holds a supervised experiment's results; an RL experiment needs its own folder "
                              "(pass another --out)")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "config.yaml", yaml.safe_dump(dataclasses.asdict(config), sort_keys=False).encode())
    cycles = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 64-unit policies step one environment batch at a time: more threads only add overhead
    try:
        for seed in config.seeds:
            folder = root / f"seed-{seed}"
            cycle = run_rl_cycle(**config.settings(seed), out_dir=folder, progress=progress)
            write_rl_report(cycle, folder)
            cycles.append(cycle)
    finally:
        torch.set_num_threads(threads)
    result = {"config": dataclasses.asdict(config), "seeds": [c.to_dict() for c in cycles], "summary": summary(cycles)}
    atomic_write_bytes(root / "rl-results.json", json.dumps(result, indent=2).encode())
    return result


def summary(cycles: list[Any]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``gen-<g>`` -> policy -> variant -> median, min and max return over the seeds that have it."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for g in range(max(len(c.generations) for c in cycles)):
        policies = sorted({p for c in cycles if g < len(c.generations) for p in c.generations[g].returns})
        out[f"gen-{g}"] = {}
        for p in policies:
            values: dict[str, list[float]] = {}
            for c in cycles:
                if g < len(c.generations) and p in c.generations[g].returns:
                    for v, r in c.generations[g].returns[p].items():
                        values.setdefault(v, []).append(float(r))
            out[f"gen-{g}"][p] = {v: spread(r) for v, r in values.items()}
    return out
