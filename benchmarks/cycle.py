"""Cycle benchmark: three generations of spawn -> specialise -> feed back, from one config.

Runs ``crossfeed run`` on an example config (three seeds, three generations) and records, per seed
and generation, every model's test accuracy on every domain, whether the gate accepted the new
large model, and whether the large model's accuracy ever fell from one generation to the next.

    python benchmarks/cycle.py examples/multi_teacher_kd.yaml   # writes benchmarks/results/cycle-multi_teacher_kd.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, write

from crossfeed.experiments import config_to_dict, load_config, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = run_experiment(config, out)
    falls = []
    for cycle in result.cycles:
        m = cycle.large_matrix()
        for g in range(1, m.shape[0]):
            for j, d in enumerate(cycle.domains):
                if m[g, j] < m[g - 1, j]:
                    falls.append({"seed": cycle.seed, "generation": g, "domain": d, "points": 100 * (m[g, j] - m[g - 1, j])})
    payload = {
        "benchmark": "cycle", "config_file": str(args.config), "config": config_to_dict(config),
        "machine": machine(), "seconds": round(time.perf_counter() - start, 1),
        "summary": result.summary(), "falls": falls,
        "accepted": {c.seed: [g.accepted for g in c.generations[1:]] for c in result.cycles},
        "mean_large_accuracy": {c.seed: np.mean(c.large_matrix(), axis=1).tolist() for c in result.cycles},
        "seeds": [c.to_dict() for c in result.cycles],
    }
    print(f"falls: {falls}")
    print(f"wrote {write(f'cycle-{config.name}', payload)} in {payload['seconds']} s")


if __name__ == "__main__":
    main()
