"""Report of a ``crossfeed run``: every model on every domain, generation after generation.

- a heat map per seed: rows are the large model of each generation and the experts of the last
  one, columns the domains, cells the test accuracy;
- a bar chart of absorption per domain per strategy (last generation, median over seeds, whiskers
  at min and max);
- the served accuracy of each domain over generations (what users get: the model the gate chose
  for the domain), median over seeds with the min-max band, the large model dashed beside it;
- tables of the same numbers, of each feedback step (strategy, forgetting, seconds; for a rounds
  strategy its engine, rounds, bytes and seconds per round, dropped clients; gate), of the
  architecture search of each expert (``experts.method: search``: best configuration, its
  accuracy and FLOPs, and a Pareto plot per generation), of
  every gate decision (candidate, reference, gate accuracies, p-values, chosen) and of the lineage
  of every generation (parent, strategy, experts, field data with hashes, weights hash).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossfeed._cache import atomic_write_bytes
from crossfeed.cycle import CycleResult, ExperimentResult
from crossfeed.feedback import FeedbackReport
from crossfeed.report._markup import (
    html_image,
    html_page,
    html_table,
    markdown_table,
    png_bytes,
    pyplot,
)
from crossfeed.report._search_report import pareto_png
from crossfeed.spawn import SearchResult


def accuracy_matrix(cycle: CycleResult) -> tuple[list[str], np.ndarray]:
    """Row labels and the (models x domains) test accuracy matrix of one seed's cycle."""
    rows = [(f"large g{g.generation}" + ("" if g.accepted else " (kept)"), g.accuracy["large"]) for g in cycle.generations]
    last = cycle.generations[-1]
    if "served" in last.accuracy:
        rows.append((f"served g{last.generation}", last.accuracy["served"]))
    if "composed" in last.accuracy:
        rows.append((f"composed (gated mixture) g{last.generation}", last.accuracy["composed"]))
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


def served_png(result: ExperimentResult) -> bytes:
    """Served test accuracy per domain over generations (median, min-max band over seeds); the
    large model dashed in the same colour."""
    cycles = result.cycles
    domains = cycles[0].domains
    served = np.stack([c.served_matrix() for c in cycles])  # seeds x generations x domains
    large = np.stack([c.large_matrix() for c in cycles])
    gens = np.arange(served.shape[1])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for j, d in enumerate(domains):
        line, = ax.plot(gens, 100 * np.median(served[:, :, j], axis=0), marker="o", label=f"{d} (served)")
        ax.fill_between(gens, 100 * served[:, :, j].min(axis=0), 100 * served[:, :, j].max(axis=0),
                        color=line.get_color(), alpha=0.15, lw=0)
        ax.plot(gens, 100 * np.median(large[:, :, j], axis=0), ls="--", lw=1, color=line.get_color())
    ax.set_xticks(gens, [f"g{g}" for g in gens])
    ax.set_xlabel("generation")
    ax.set_ylabel("test accuracy %")
    margin = cycles[0].margin
    ax.set_title(f"served accuracy per domain (solid; dashed: large model), gate margin {100 * margin:g} points")
    ax.legend(fontsize=7, ncol=2)
    return png_bytes(fig)


def _short(h: str | None) -> str:
    return "–" if not h else h[:10]


def lineage_rows(cycle: CycleResult) -> list[list[str]]:
    """One row per generation: parent, strategy, experts, field data, the large model that goes on."""
    rows = []
    for g in cycle.generations:
        lin = g.lineage
        if not lin:
            continue
        if g.generation == 0:
            train = lin.get("train", {})
            rows.append(["g0", "–", "train large", f"trained on {', '.join(train.get('domains', []))}",
                         f"train: {train.get('samples', '?')} samples, sha {_short(train.get('sha256'))}",
                         f"{lin['large']['label']} ({_short(lin['large']['sha256'])})", "–"])
            continue
        field = "; ".join(f"{d}: {v['samples']} (joined g{v['joined']}, sha {_short(v['sha256'])})"
                          for d, v in lin.get("field", {}).items())
        experts = lin.get("experts", {})
        rows.append([f"g{g.generation}", f"{lin['parent']['label']} ({_short(lin['parent']['sha256'])})",
                     f"{lin['strategy']} {lin.get('kwargs') or ''}".strip(),
                     f"{experts.get('method')} {experts.get('student') if experts.get('method') == 'distill' else ''}: "
                     f"{', '.join(experts.get('domains', []))}",
                     field, f"{lin['large']['label']} ({_short(lin['large']['sha256'])})",
                     "advanced" if g.accepted else "kept previous"])
    return rows


def decision_rows(cycle: CycleResult) -> list[list[str]]:
    """Every gate test of every generation."""
    def p(x: float | None) -> str:
        return "–" if x is None else f"{x:.3g}"

    def interval(x: dict) -> str:
        diff = 100 * (x["accuracy_candidate"] - x["accuracy_reference"])
        if x["lower"] is None:
            return f"{diff:+.2f}"
        return f"{diff:+.2f} [{100 * x['lower']:+.2f}, {100 * x['upper']:+.2f}]"

    return [[f"g{g.generation}", x["purpose"], x["domain"], x["candidate"], x["reference"],
             _pct(x["accuracy_candidate"]), _pct(x["accuracy_reference"]), interval(x), p(x["p_value"]),
             p(x["p_adjusted"]), "yes" if x["passed"] else "no", "serves" if x["chosen"] else ""]
            for g in cycle.generations for x in g.decisions]


def rounds_cells(report: FeedbackReport) -> list[str]:
    """Engine, rounds, mean bytes and seconds per round, dropped client-rounds of a rounds strategy's
    feedback report (dashes for a strategy without rounds)."""
    rounds = report.rounds
    if not rounds:
        return ["–"] * 5
    n = len(rounds)
    return [str(report.info.get("engine", "local")), str(n), f"{sum(r.bytes_sent for r in rounds) / n:,.0f}",
            f"{sum(r.seconds for r in rounds) / n:.2f}", str(sum(len(r.failures) for r in rounds))]


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
    if "served_accuracy" in summary:
        served_rows = [[gen, *(_spread(row[d]) for d in domains)] for gen, row in summary["served_accuracy"].items()]
        tables.insert(0, (f"Served model of each domain, test accuracy % per generation{over}",
                          ["generation", *domains], served_rows))
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
                              f"{100 * report.forgetting:+.2f}", f"{report.wall_seconds:.1f}", *rounds_cells(report),
                              ("accepted" if g.accepted else "kept previous") if main else "–"])
        if steps:
            tables.append((f"Feedback steps (seed {cycle.seed})",
                           ["generation", "strategy", "forgetting on general (points)", "seconds", "engine", "rounds",
                            "bytes sent per round", "seconds per round", "dropped client-rounds", "gate"], steps))
        served = [[f"g{g.generation}", *(g.served.get(d, {}).get("label", "–") for d in domains)]
                  for g in cycle.generations if g.served]
        if served:
            tables.append((f"Which model serves each domain (seed {cycle.seed})", ["generation", *domains], served))
        decisions = decision_rows(cycle)
        if decisions:
            tables.append((f"Gate decisions (seed {cycle.seed}; accuracies % on the gate's held-out data)",
                           ["generation", "purpose", "domain", "candidate", "reference", "candidate %", "reference %",
                            "difference, points [interval at the gate's confidence]", "p", "p adjusted", "passed",
                            "chosen"], decisions))
        search = search_rows(cycle)
        if search:
            tables.append((f"Architecture search of the experts (seed {cycle.seed}; accuracy % on each domain's "
                           "validation split)", ["generation", "domain", "best configuration", "accuracy %",
                                                 "FLOPs / sample", "trials", "warm-started with"], search))
        lineage = lineage_rows(cycle)
        if lineage:
            tables.append((f"Lineage (seed {cycle.seed})",
                           ["generation", "parent", "strategy", "experts", "field data", "large model", "gate"], lineage))
    return tables


def searches(cycle: CycleResult) -> dict[int, dict[str, SearchResult]]:
    """Generation -> domain -> the architecture search of its expert (``experts.method: search``)."""
    return {g.generation: {d: SearchResult.from_dict(v) for d, v in g.lineage["experts"]["search"].items()}
            for g in cycle.generations if g.lineage.get("experts", {}).get("search")}


def search_rows(cycle: CycleResult) -> list[list[str]]:
    """One row per generation and searched domain: the best configuration and what it cost."""
    rows = []
    for g in cycle.generations:
        for d, v in g.lineage.get("experts", {}).get("search", {}).items():
            rows.append([f"g{g.generation}", d, ", ".join(f"{k}={x}" for k, x in sorted(v["best"].items())),
                         _pct(v["val_accuracy"]), f"{v['flops_per_sample']:,.0f}", str(len(v["trials"])),
                         f"{len(v['warm_start'])} configurations" if v["warm_start"] else "cold start"])
    return rows


def cycle_images(result: ExperimentResult) -> dict[str, bytes]:
    """The report's images of a run's cycles: file name -> PNG."""
    summary = result.summary()
    images: dict[str, bytes] = {f"heatmap_seed{c.seed}.png": heatmap_png(c) for c in result.cycles}
    for c in result.cycles:  # the accuracy-cost front of every searched domain, per generation
        for g, by_domain in searches(c).items():
            images[f"search_seed{c.seed}_g{g}.png"] = pareto_png(by_domain)
    if len(result.cycles[0].generations) > 1:
        images["served.png"] = served_png(result)
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
    g = c.gate
    falls = summary.get("served_falls_beyond_margin", [])
    promise = (f"Gate: {g.test} test, margin {100 * g.margin:g} points, confidence {g.confidence:g} "
               f"({g.correction} correction over domains and candidates), {'per-domain routing' if g.route else 'one model for all domains'}, "
               f"{g.holdout:g} of each validation split held out for it. Served accuracy fell by more than the margin "
               f"from one generation to the next {len(falls)} time(s)" + (": " + ", ".join(
                   f"seed {f['seed']} g{f['generation']} {f['domain']} {f['points']:+.2f}" for f in falls) if falls else "")
               + ".")
    head = (f"suite {c.suite.name}, large {c.large.module} {c.large.module_kwargs}, experts {c.experts.student}, "
            f"feedback {c.feedback.strategy}, {c.generations} generations, seeds {c.seeds}, {result.seconds} s. "
            f"Large model never fell from one generation to the next on any domain: "
            f"{'yes' if summary['never_falls'] else 'no'}. {promise}")
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
