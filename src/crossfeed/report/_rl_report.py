"""Reports of the RL cycle: every policy's return on every variant (heat map), return-vs-interactions
curves on held-out variants, and a markdown page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from crossfeed._cache import atomic_write_bytes
from crossfeed.report._markup import markdown_table, png_bytes, pyplot
from crossfeed.rl import RLCycle

__all__ = ["rl_curves_png", "rl_heatmap_png", "rl_matrix", "write_rl_report"]


def rl_matrix(cycle: RLCycle) -> tuple[list[str], np.ndarray]:
    """Row labels (``g<k> general`` per generation, then the last generation's experts) and the
    (rows, variants) matrix of mean returns."""
    labels, rows = [], []
    for g in cycle.generations:
        labels.append(f"g{g.generation} general")
        rows.append([g.returns["general"][v] for v in cycle.variants])
    last = cycle.generations[-1]
    for name in cycle.train:
        key = f"expert:{name}"
        if key in last.returns:
            labels.append(f"g{last.generation} expert {name}")
            rows.append([last.returns[key][v] for v in cycle.variants])
    return labels, np.array(rows, dtype=float)


def rl_heatmap_png(cycle: RLCycle) -> bytes:
    labels, matrix = rl_matrix(cycle)
    plt = pyplot()
    variants = cycle.variants
    fig, ax = plt.subplots(figsize=(1.3 * len(variants) + 3.0, 0.45 * len(labels) + 2.0), dpi=110)
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    names = [f"{v} (held out)" if v in cycle.held_out else v for v in variants]
    ax.set_xticks(range(len(variants)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    middle = float(np.median(matrix))
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="black" if matrix[i, j] > middle else "white")
    fig.colorbar(image, ax=ax, label="mean return")
    ax.set_title(f"{cycle.suite}: every policy on every variant (seed {cycle.seed})")
    return png_bytes(fig)


def rl_curves_png(
    curves: Mapping[str, Mapping[str, Sequence[Sequence[Sequence[float]]]]], *, target: float | None = None
) -> bytes:
    """Return vs interactions per held-out variant: ``curves[variant][start]`` is one curve
    (``(interactions, return)`` pairs) per seed; the median over seeds is drawn, the band is min-max."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), dpi=110, squeeze=False)
    for ax, (variant, by_start) in zip(axes[0], curves.items()):
        for start, runs in by_start.items():
            grid = sorted({int(x) for run in runs for x, _ in run})
            values = np.array([[_value_at(run, x) for x in grid] for run in runs])
            ax.plot(grid, np.median(values, 0), label=start)
            ax.fill_between(grid, values.min(0), values.max(0), alpha=0.15)
        if target is not None:
            ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        ax.set_title(variant, fontsize=9)
        ax.set_xlabel("interactions")
        ax.set_ylabel("mean return")
    axes[0][0].legend(fontsize=7)
    return png_bytes(fig)


def _value_at(curve: Sequence[Sequence[float]], x: int) -> float:
    """The curve's last recorded value at or before x (a run stopped early keeps its value)."""
    value = curve[0][1]
    for at, v in curve:
        if at > x:
            break
        value = v
    return float(value)


def write_rl_report(cycle: RLCycle, out_dir: str | Path) -> dict[str, Path]:
    """Write ``rl-report.md`` and ``rl-heatmap.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, matrix = rl_matrix(cycle)
    header = ["policy", *[f"{v} (held out)" if v in cycle.held_out else v for v in cycle.variants]]
    rows = [[label, *[f"{x:.1f}" for x in row]] for label, row in zip(labels, matrix)]
    lines = [f"# RL cycle: {cycle.suite}, seed {cycle.seed}", "",
             "Mean return of every policy on every variant (deterministic actions).", "",
             *markdown_table("returns", header, rows), "", "![every policy on every variant](rl-heatmap.png)", ""]
    paths = {"markdown": out / "rl-report.md", "heatmap": out / "rl-heatmap.png"}
    atomic_write_bytes(paths["heatmap"], rl_heatmap_png(cycle))
    atomic_write_bytes(paths["markdown"], "\n".join(lines).encode())
    return paths
