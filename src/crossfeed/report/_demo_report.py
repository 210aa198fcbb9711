"""Markdown and HTML reports of the demo, with an accuracy-versus-cost plot."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossfeed._cache import atomic_write_bytes
from crossfeed.cycle import ExperimentResult
from crossfeed.report._cycle_report import cycle_images, cycle_tables
from crossfeed.report._markup import (
    html_image,
    html_page,
    html_table,
    markdown_table,
    png_bytes,
    pyplot,
)
from crossfeed.report._results import DemoResult


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def accuracy_cost_png(result: DemoResult) -> bytes:
    """PNG of every member and combiner (accuracy vs FLOPs per sample) with the cascade's test curve."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=110)
    if result.curve:
        ax.plot(result.curve["flops"], [100 * a for a in result.curve["accuracy"]], "-", color="tab:gray",
                lw=1.2, label="cascade, every threshold (test)")
    placed: list[float] = []  # FLOPs of points already labelled; neighbours get stacked labels
    for rec in sorted(result.records, key=lambda r: (r["flops_per_sample"], -r["accuracy"])):
        x, y = rec["flops_per_sample"], 100 * rec["accuracy"]
        marker = "o" if rec["kind"] == "member" else "s"
        ax.scatter(x, y, marker=marker, s=40, zorder=3)
        crowd = sum(1 for other in placed if abs(other - x) <= 0.25 * x)
        placed.append(x)
        ax.annotate(rec["name"], (x, y), textcoords="offset points", xytext=(6, 4 - 11 * crowd), fontsize=8,
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "gray"} if crowd else None)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per sample (log scale)")
    ax.set_ylabel("pooled test accuracy (%)")
    ax.set_title(f"{result.meta.get('suite', '')}: accuracy versus cost")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return png_bytes(fig)


def _tables(result: DemoResult) -> list[tuple[str, list[str], list[list[str]]]]:
    domains = result.meta.get("domains", [])
    main_rows = [
        [r["name"], r["kind"], _pct(r["accuracy"]), f"{r['nll']:.3f}", f"{r['ece']:.3f}", f"{r['params']:,}",
         f"{r['flops_per_sample']:,.0f}", f"{1e6 * r['latency_batch1_s']:.0f}", f"{1e6 * r['latency_batch256_s']:.1f}"]
        for r in result.records
    ]
    domain_rows = [[r["name"]] + [_pct(r["domains"][d]["accuracy"]) for d in domains] for r in result.records]
    c = result.cascade
    cascade_rows = [
        ["members (cheap first)", " -> ".join(c["members"])],
        ["deferral rule, threshold", f"{c['rule']}, {c['threshold']:.3f}"],
        ["cascade accuracy / large accuracy (test)", f"{_pct(c['accuracy'])} / {_pct(c['large_accuracy'])} ({c['gap_points']:+.2f} points)"],
        ["escalated to the large model", _pct(c["escalation_rate"]) + "%"],
        ["FLOPs, fraction of the large model", f"{c['flops_fraction']:.3f}"],
        ["measured latency fraction, batch 1 / batch 256", f"{c['latency_fraction_batch1']:.2f} / {c['latency_fraction_batch256']:.2f}"],
        ["cost to match (within 0.1 point, test curve), FLOPs fraction",
         "not reached" if c["cost_to_match_flops_fraction"] is None else f"{c['cost_to_match_flops_fraction']:.3f}"],
        ["normalised area under the accuracy-cost curve", "n/a" if c["normalized_auc"] is None else f"{c['normalized_auc']:.3f}"],
    ]
    tables = [
        ("Members and combiners (pooled test set)",
         ["model", "kind", "accuracy %", "NLL", "ECE", "params", "FLOPs/sample", "latency b1 (µs/sample)", "latency b256 (µs/sample)"],
         main_rows),
        ("Accuracy per domain (%)", ["model", *domains], domain_rows),
        ("Cascade: small model first, large model only when unsure", ["", ""], cascade_rows),
    ]
    if result.spawn:
        keys = list(result.spawn[0])
        tables.append(("Spawn: one small expert per domain",
                       keys, [[_fmt(row[k]) for k in keys] for row in result.spawn]))
    return tables


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _gain_line(result: DemoResult) -> str:
    members = [r for r in result.records if r["kind"] == "member"]
    combiners = [r for r in result.records if r["kind"] == "combiner"]
    best_m = max(members, key=lambda r: r["accuracy"])
    best_c = max(combiners, key=lambda r: r["accuracy"])
    return (f"Best combiner: **{best_c['name']}** {_pct(best_c['accuracy'])}% vs best member **{best_m['name']}** "
            f"{_pct(best_m['accuracy'])}%: ensemble gain {100 * (best_c['accuracy'] - best_m['accuracy']):+.2f} points.")


def _as_run(result: DemoResult) -> ExperimentResult:
    """The demo's cycle as a one-seed run, for the cycle report's tables and images."""
    return ExperimentResult(None, [result.cycle], None, 0.0)


def render_markdown(result: DemoResult, cycle_images: Sequence[str] = ()) -> str:
    m = result.meta
    lines = [f"# crossfeed demo — {m.get('suite')}", "",
             f"seed {m.get('seed')}, device {m.get('device')}, {m.get('seconds')} s, "
             f"torch {m.get('versions', {}).get('torch')}, {m.get('machine', {}).get('platform')}", "",
             _gain_line(result), "", "![accuracy versus cost](accuracy_cost.png)", ""]
    for table in _tables(result):
        lines += markdown_table(*table)
    if result.cycle is not None:
        lines += ["# Feedback: the experts teach the large model, two generations", ""]
        lines += [f"![{name}]({name})" for name in cycle_images] + [""]
        for table in cycle_tables(_as_run(result)):
            lines += markdown_table(*table)
    return "\n".join(lines)


def render_html(result: DemoResult, png: bytes) -> str:
    m = result.meta
    body = [f"<p>seed {m.get('seed')}, device {html.escape(str(m.get('device')))}, {m.get('seconds')} s</p>",
            f"<p>{html.escape(_gain_line(result)).replace('**', '')}</p>",
            html_image(png, "accuracy versus cost"),
            *(html_table(*table) for table in _tables(result))]
    if result.cycle is not None:
        run = _as_run(result)
        body += ["<h1>Feedback: the experts teach the large model, two generations</h1>",
                 *(html_image(img, name) for name, img in cycle_images(run).items()),
                 *(html_table(*t) for t in cycle_tables(run))]
    return html_page(f"crossfeed demo — {m.get('suite')}", body)


def write_demo_report(result: DemoResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``accuracy_cost.png`` into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    png = accuracy_cost_png(result)
    paths = {"png": out / "accuracy_cost.png", "md": out / "report.md", "html": out / "report.html"}
    atomic_write_bytes(paths["png"], png)
    images = cycle_images(_as_run(result)) if result.cycle is not None else {}
    for name, image in images.items():
        atomic_write_bytes(out / name, image)
        paths[name] = out / name
    atomic_write_bytes(paths["md"], render_markdown(result, list(images)).encode())
    atomic_write_bytes(paths["html"], render_html(result, png).encode())
    return paths
