"""Reports: markdown and HTML with plots, for the demo and for ``crossfeed run``."""

from crossfeed.report._cycle_report import (
    absorption_png,
    accuracy_matrix,
    cycle_images,
    cycle_tables,
    decision_rows,
    heatmap_png,
    lineage_rows,
    served_png,
    write_experiment_report,
)
from crossfeed.report._demo_report import (
    accuracy_cost_png,
    render_html,
    render_markdown,
    write_demo_report,
)
from crossfeed.report._results import DemoResult
from crossfeed.report._rl_report import rl_curves_png, rl_heatmap_png, rl_matrix, write_rl_report
from crossfeed.report._search_report import pareto_png

__all__ = [
    "DemoResult",
    "absorption_png",
    "accuracy_cost_png",
    "accuracy_matrix",
    "cycle_images",
    "cycle_tables",
    "decision_rows",
    "heatmap_png",
    "lineage_rows",
    "pareto_png",
    "render_html",
    "render_markdown",
    "rl_curves_png",
    "rl_heatmap_png",
    "rl_matrix",
    "served_png",
    "write_demo_report",
    "write_experiment_report",
    "write_rl_report",
]
