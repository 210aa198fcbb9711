"""Report of a ``crossfeed run``: every model on every domain, generation after generation.

- a heat map per seed: rows are the large model of each generation and the experts of the last
  one, columns the domains, cells the test accuracy;
- a bar chart of absorption per domain per strategy (last generation, median over seeds, whiskers
  at min and max);
- tables of the same numbers, and of each feedback step (strategy, forgetting, seconds, gate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossfeed._cache import atomic_write_bytes
from crossfeed.cycle import CycleResult, ExperimentResult
from crossfeed.report._markup import (
    html_image,
    html_page,
    html_table,
    markdown_table,
    png_bytes,
    pyplot,
)


def accuracy_matrix(cycle: CycleResult) -> tuple[list[str], np.ndarray]:
    """Row labels and the (models x domains) test accuracy matrix of one seed's cycle."""
    rows = [(f"large g{g.generation}" + ("" if g.accepted else " (kept)"), g.accuracy["large"]) for g in cycle.generations]
    last = cycle.generations[-1]
    if "served" in last.accuracy:
        rows.append((f"served g{last.generation}", last.accuracy["served"]))
    rows += [(f"{name.replace('expert:', 'expert ')} g{last.generation}", acc)
             for name, acc in last.accuracy.items() if name.startswith("expert:")]
    return [r[0] for r in rows], np.array([[acc[d] for d in cycle.domains] for _, acc in rows])


def heatmap_png(cycle: CycleResult) -> bytes:
    labels, matrix = accuracy_matrix(cycle)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(cycle.domains) + 2.5, 0.45 * len(labels) + 1.5), dpi=110)
    image = ax.imshow(100 * matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cycle.domains)), cycle.domains, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = 100 * matrix[i, j]
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                    color="black" if value > np.median(100 * matrix) else "white")
    fig.colorbar(image, ax=ax, label="test accuracy %")
    ax.set_title(f"every model on every domain (seed {cycle.seed})")
    return png_bytes(fig)


def absorption_png(absorption: dict[str, dict[str, dict[str, float]]], domains: list[str]) -> bytes:
    """Grouped bars: absorption per domain (groups) per strategy (bars), median with min-max whiskers."""
    plt = pyplot()
    strategies = list(absorption)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(domains) * max(1, len(strategies)) / 2), 4), dpi=110)
    width = 0.8 / max(1, len(strategies))
    for k, strategy in enumerate(strategies):
        rows = absorption[strategy]
        xs = [i + (k - (len(strategies) - 1) / 2) * width for i, d in enumerate(domains) if d in rows]
        med = [rows[d]["median"] for d in domains if d in rows]
        err = [[rows[d]["median"] - rows[d]["min"] for d in domains if d in rows],
               [rows[d]["max"] - rows[d]["median"] for d in domains if d in rows]]
        ax.bar(xs, med, width, yerr=err, capsize=2, label=strategy)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xticks(range(len(domains)), domains)
    ax.set_ylabel("absorption (v1 - v0) / (expert - v0)")
    ax.set_title("how much of each expert's lead the large model took over (last generation)")
    ax.legend(fontsize=8)
    return png_bytes(fig)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _spread(s: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    if s["min"] == s["max"]:
        return f"{scale * s['median']:.{digits}f}"
    return f"{scale * s['median']:.{digits}f} [{scale * s['min']:.{digits}f}, {scale * s['max']:.{digits}f}]"


def _tables(result: ExperimentResult) -> list[tuple[str, list[str], list[list[str]]]]:
    summary = result.summary()
    domains = summary["domains"]
    n_seeds = len(result.cycles)
    over = f", median [min, max] over {n_seeds} seeds" if n_seeds > 1 else ""
    large_rows = [[gen, *(_spread(row[d]) for d in domains)] for gen, row in summary["large_accuracy"].items()]
    tables = [(f"Large model, test accuracy % per generation{over}", ["generation", *domains], large_rows)]
    absorption = summary["absorption_last_generation"]
    if absorption:
        rows = [[s, *(_spread(v[d], 1.0) if d in v else "–" for d in domains)] for s, v in absorption.items()]
        tables.append((f"Absorption per domain, last generation{over}", ["strategy", *domains], rows))
    for cycle in result.cycles:
        labels, matrix = accuracy_matrix(cycle)
        tables.append((f"Every model on every domain, test accuracy % (seed {cycle.seed})", ["model", *domains],
                       [[label, *(_pct(v) for v in row)] for label, row in zip(labels, matrix)]))
        steps = []
        for g in cycle.generations[1:]:
            for strategy, report, main in g.reports():
                steps.append([f"g{g.generation}", strategy + ("" if main else " (compared)"),
                              f"{100 * report.forgetting:+.2f}", f"{report.wall_seconds:.1f}",
                              ("accepted" if g.accepted else "kept previous") if main else "–"])
        if steps:
            tables.append((f"Feedback steps (seed {cycle.seed})",
                           ["generation", "strategy", "forgetting on general (points)", "seconds", "gate"], steps))
    return tables


def cycle_images(result: ExperimentResult) -> dict[str, bytes]:
    """The report's images of a run's cycles: file name -> PNG."""
    summary = result.summary()
    images: dict[str, bytes] = {f"heatmap_seed{c.seed}.png": heatmap_png(c) for c in result.cycles}
    if summary["absorption_last_generation"]:
        shifted = [d for d in summary["domains"] if d != summary["general_domain"]]
        images["absorption.png"] = absorption_png(summary["absorption_last_generation"], shifted)
    return images


def cycle_tables(result: ExperimentResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables (title, header, rows) of a run's cycles."""
    return _tables(result)


def write_experiment_report(result: ExperimentResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNGs of a run into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    summary = result.summary()
    images, tables = cycle_images(result), cycle_tables(result)
    c = result.config
    head = (f"suite {c.suite.name}, large {c.large.module} {c.large.module_kwargs}, experts {c.experts.student}, "
            f"feedback {c.feedback.strategy}, {c.generations} generations, seeds {c.seeds}, {result.seconds} s. "
            f"Large model never fell from one generation to the next on any domain: "
            f"{'yes' if summary['never_falls'] else 'no'}.")
    md = [f"# crossfeed run — {c.name}", "", head, ""] + [f"![{n}]({n})" for n in images] + [""]
    for table in tables:
        md += markdown_table(*table)
    page = html_page(f"crossfeed run — {c.name}", [f"<p>{head}</p>", *(html_image(png, name) for name, png in images.items()),
                                                     *(html_table(*t) for t in tables)])
    paths = {}
    for name, png in images.items():
        atomic_write_bytes(out / name, png)
        paths[name] = out / name
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())
    atomic_write_bytes(out / "report.html", page.encode())
    paths.update({"md": out / "report.md", "html": out / "report.html"})
    return paths
