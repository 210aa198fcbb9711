"""Reports: markdown and HTML with plots."""

from crossfeed.report._demo_report import accuracy_cost_png, render_html, render_markdown, write_demo_report

__all__ = ["accuracy_cost_png", "render_html", "render_markdown", "write_demo_report"]
