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


def test_quick_run_writes_json_plots_and_goals():
    name = "rl-cartpole-quick-test"  # gitignored (*-quick*)
    files = [BENCHMARKS / "results" / f"{name}{suffix}" for suffix in (".json", "-heatmap.png", "-curves.png")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        for extra in ([], ["--summarise-only"]):  # the second call recomputes the summary from the runs
            done = subprocess.run([sys.executable, "rl.py", "--quick", "--seeds", "0", "--jobs", "1", "--name", name,
                                   *extra], cwd=BENCHMARKS, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
        data = json.loads(files[0].read_text())
        assert all(f.read_bytes().startswith(b"\x89PNG") for f in files[1:])
        assert set(data["summary"]["goals"]) == {"general_reaches_90pct_of_each_expert",
                                                 "adapts_in_25pct_of_scratch_interactions",
                                                 "adapts_in_25pct_of_scratch_interactions_to_the_same_return"}
        run = data["runs"][0]
        held = [v["name"] for v in data["variants"]["held_out"]]
        assert set(run["held_out"]) == set(held)
        assert set(run["held_out"][held[0]]) == {"scratch", "general", "general_warmup", "meta_init", "pooled"}
        # every curve starts at 0 interactions and never goes past its budget
        for h in held:
            for start, entry in run["held_out"][h].items():
                budget = data["budgets"]["scratch" if start == "scratch" else "adapt"]
                xs = [x for x, _ in entry["curve"]]
                assert xs[0] == 0 and xs == sorted(xs) and xs[-1] <= budget + 1024
    finally:
        for f in files:
            f.unlink(missing_ok=True)
