"""Plot of architecture searches: validation accuracy against FLOPs per sample, with the Pareto front."""

from __future__ import annotations

from collections.abc import Mapping

from crossfeed.exceptions import ValidationError
from crossfeed.report._markup import png_bytes, pyplot
from crossfeed.spawn import SearchResult, pareto_front

__all__ = ["pareto_png"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def pareto_png(results_by_domain: Mapping[str, SearchResult | Mapping[str, SearchResult]]) -> bytes:
    """PNG of one panel per domain: every completed trial as a point (validation accuracy against
    FLOPs per sample, log scale) and the Pareto front (accuracy high, FLOPs low) as a step line.

    Parameters
    ----------
    results_by_domain : domain -> a :class:`~crossfeed.spawn.SearchResult`, or domain -> label ->
        result (e.g. ``{"cold": ..., "warm": ...}``), each label in its own colour; the front in a
        panel is the one of all its trials together.

    Example
    -------
    >>> r = SearchResult(({"number": 0, "params": {}, "accuracy": 0.8, "flops_per_sample": 1e4},
    ...                   {"number": 1, "params": {}, "accuracy": 0.9, "flops_per_sample": 1e5}))
    >>> pareto_png({"default": r})[:4]
    b'\\x89PNG'
    """
    if not results_by_domain:
        raise ValidationError("results_by_domain is empty; pass at least one domain's SearchResult")
    plt = pyplot()
    n = len(results_by_domain)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=110, squeeze=False)
    for ax, (domain, value) in zip(axes.flat, results_by_domain.items()):
        groups = {"trials": value} if isinstance(value, SearchResult) else dict(value)
        points: list[tuple[float, float]] = []
        for colour, (label, result) in zip(_COLOURS * 10, groups.items()):
            if not isinstance(result, SearchResult):
                raise ValidationError(
                    f"results_by_domain[{domain!r}][{label!r}] must be a SearchResult; got {type(result).__name__}"
                )
            done = result.completed
            flops = [t["flops_per_sample"] for t in done]
            acc = [t["accuracy"] for t in done]
            points += zip(flops, acc)
            ax.scatter(flops, acc, s=14, alpha=0.6, color=colour, label=f"{label} ({len(done)})")
        if points:
            front = [points[i] for i in pareto_front([a for _, a in points], [f for f, _ in points])]
            ax.step([f for f, _ in front], [a for _, a in front], where="post", color="black", lw=1.2,
                    marker="o", markersize=6, markerfacecolor="none", label=f"Pareto front ({len(front)})")
        ax.set_xscale("log")
        ax.set_title(domain)
        ax.set_xlabel("FLOPs per sample")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return png_bytes(fig)
