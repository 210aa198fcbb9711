"""Reports of the RL cycle: heat map, curves and a markdown page naming every variant."""

from __future__ import annotations

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

from crossfeed.report import rl_curves_png, rl_heatmap_png, rl_matrix, write_rl_report  # noqa: E402

PNG = b"\x89PNG"


def test_matrix(cycle_run):
    cycle, _, _ = cycle_run
    labels, matrix = rl_matrix(cycle)
    assert labels == ["g0 general", "g1 general", "g1 expert default", "g1 expert long"]
    assert matrix.shape == (4, 3)
    assert matrix[1, 2] == cycle.generations[1].returns["general"]["longer-weak"]
    assert matrix[3, 0] == cycle.generations[1].returns["expert:long"]["default"]


def test_heatmap_is_a_png(cycle_run):
    cycle, _, _ = cycle_run
    assert rl_heatmap_png(cycle).startswith(PNG)


def test_report_names_every_variant(cycle_run, tmp_path):
    cycle, _, _ = cycle_run
    paths = write_rl_report(cycle, tmp_path / "report")
    assert set(paths) == {"markdown", "heatmap"}
    assert paths["heatmap"].read_bytes().startswith(PNG)
    text = paths["markdown"].read_text()
    assert text.startswith("# RL cycle: tiny, seed 1")
    for name in ("default", "long", "longer-weak (held out)"):
        assert f"| {name} " in text or f" {name} |" in text, name
    for label in ("g0 general", "g1 general", "g1 expert default", "g1 expert long"):
        assert f"| {label} |" in text
    assert f"{cycle.generations[1].returns['general']['longer-weak']:.1f}" in text
    assert "rl-heatmap.png" in text
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["rl-heatmap.png", "rl-report.md"]


def test_curves_are_a_png():
    curves = {
        "longer-weak": {"general": [[(0, 20.0), (512, 120.0), (1024, 300.0)], [(0, 25.0), (512, 200.0)]],
                        "scratch": [[(0, 9.0), (512, 30.0), (1024, 60.0)]]},
        "very-long": {"meta": [[(0, 50.0), (1024, 480.0)]]},
    }
    assert rl_curves_png(curves, target=475.0).startswith(PNG)
    assert rl_curves_png({"one": {"general": [[(0, 1.0)]]}}).startswith(PNG)
