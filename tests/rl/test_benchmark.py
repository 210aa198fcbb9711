"""benchmarks/rl.py runs end to end at tiny budgets (``--quick``) and writes what the README reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


GOALS = {"general_reaches_90pct_of_each_expert", "adapts_in_25pct_of_scratch_interactions",
         "adapts_in_25pct_of_scratch_interactions_to_the_same_return"}


def run_benchmark(name: str, *args: str, timeout: int) -> tuple[dict, list[Path]]:
    """Run rl.py (then its --summarise-only pass, which recomputes the summary from the runs)."""
    files = [BENCHMARKS / "results" / f"{name}{suffix}" for suffix in (".json", "-heatmap.png", "-curves.png")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in ([], ["--summarise-only"]):
        done = subprocess.run([sys.executable, "rl.py", *args, "--seeds", "0", "--jobs", "1", "--name", name, *extra],
                              cwd=BENCHMARKS, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-2000:]
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files[1:])
    return json.loads(files[0].read_text()), files


def check_held_out(data: dict, starts: set[str], step: int) -> None:
    run = data["runs"][0]
    held = [v["name"] for v in data["variants"]["held_out"]]
    assert set(run["held_out"]) == set(held)
    assert set(data["summary"]["goals"]) == GOALS
    for h in held:
        assert set(run["held_out"][h]) == {"scratch", *starts}
        # every curve starts at 0 interactions and never goes past its budget
        for start, entry in run["held_out"][h].items():
            budget = data["budgets"]["scratch" if start == "scratch" else "adapt"]
            xs = [x for x, _ in entry["curve"]]
            assert xs[0] == 0 and xs == sorted(xs) and xs[-1] <= budget + step


@pytest.mark.parametrize(("protocol", "starts"), [("brief", {"general", "meta_init"}),
                                                   ("full", {"general", "general_warmup", "meta_init", "pooled"})])
def test_quick_run_writes_json_plots_and_goals(protocol, starts):
    name = f"rl-cartpole-quick-test-{protocol}"  # gitignored (*-quick*)
    try:
        data, files = run_benchmark(name, "--quick", "--protocol", protocol, timeout=300)
        assert data["protocol"] == protocol and data["generations"] == {"brief": 1, "full": 2}[protocol]
        check_held_out(data, starts, step=1024)
    finally:
        for f in BENCHMARKS.joinpath("results").glob(f"{name}*"):
            f.unlink()


@pytest.mark.slow
def test_full_protocol_at_the_suite_budgets_one_seed():
    """The published protocol at cartpole's own budgets, one seed (about 6.5 minutes on one core)."""
    name = "rl-cartpole-quick-test-full-budgets"  # gitignored (*-quick*)
    try:
        data, _ = run_benchmark(name, "--protocol", "full", timeout=1800)
        check_held_out(data, {"general", "general_warmup", "meta_init", "pooled"}, step=5120)
        assert data["budgets"]["general"] == 100_000 and not data["quick"]
        # the distilled general policy keeps >= 90% of the experts on the train variants (the README's goal 1)
        assert data["summary"]["goals"]["general_reaches_90pct_of_each_expert"]["met"]
    finally:
        for f in BENCHMARKS.joinpath("results").glob(f"{name}*"):
            f.unlink()
