"""Cycle benchmark: generations of spawn -> specialise -> feed back, from one config.

Runs the cycle of an example config and records, per seed and generation, every model's test
accuracy on every domain, what the gate decided (which model serves each domain, with p-values),
whether the large model went on, and every fall of test accuracy from one generation to the next:
of the *served* model of each domain (what users get; the gate's promise is "no fall beyond the
margin") and of the large model alone.

    python benchmarks/cycle.py examples/merge.yaml                       # writes benchmarks/results/cycle-merge.json
    python benchmarks/cycle.py examples/merge.yaml --served              # 3 generations x 3 seeds, the config's gate:
                                                                         # benchmarks/results/cycle-served-merge.json
    python benchmarks/cycle.py examples/fashion.yaml --served --no-compare

``--served`` sets 3 generations and seeds 0 1 2 (``--generations`` / ``--seeds`` change that);
``--no-compare`` drops the config's ``compare`` strategies (reported only: they never change the
cycle's path) to save time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, write

from crossfeed.config import config_from_dict
from crossfeed.experiments import config_to_dict, load_config, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--served", action="store_true", help="3 generations x seeds 0 1 2; JSON cycle-served-<name>")
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--no-compare", action="store_true", help="drop the config's compare strategies")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = config_to_dict(load_config(args.config))
    if args.served:
        data["generations"], data["seeds"] = 3, [0, 1, 2]
    if args.generations is not None:
        data["generations"] = args.generations
    if args.seeds is not None:
        data["seeds"] = args.seeds
    if args.no_compare:
        data["feedback"]["compare"] = []
    config = config_from_dict(data, source=str(args.config))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = run_experiment(config, out)
    margin = config.gate.margin
    falls, served_falls, served_beyond, switches = [], [], [], []
    for cycle in result.cycles:
        falls += cycle.falls("large", margin=0.0)
        served_falls += cycle.falls("served", margin=0.0)
        served_beyond += cycle.falls("served", margin=margin)
        for g in cycle.generations[1:]:
            switches += [{"seed": cycle.seed, "generation": g.generation, "domain": x["domain"], "to": x["candidate"],
                          "from": x["reference"], "p_adjusted": x["p_adjusted"]} for x in g.decisions if x["chosen"]]
    shifted = [j for j, d in enumerate(result.cycles[0].domains) if d != result.cycles[0].general_domain]
    payload = {
        "benchmark": "cycle", "config_file": str(args.config), "config": config_to_dict(config),
        "machine": machine(), "seconds": round(time.perf_counter() - start, 1),
        "summary": result.summary(), "margin": margin, "confidence": config.gate.confidence,
        "served_falls_beyond_margin": served_beyond, "served_falls": served_falls, "falls": falls,
        "switches": switches,
        "accepted": {c.seed: [g.accepted for g in c.generations[1:]] for c in result.cycles},
        "mean_large_accuracy": {c.seed: np.mean(c.large_matrix(), axis=1).tolist() for c in result.cycles},
        "mean_served_accuracy": {c.seed: np.mean(c.served_matrix(), axis=1).tolist() for c in result.cycles},
        "mean_shifted_served_accuracy": {c.seed: np.mean(c.served_matrix()[:, shifted], axis=1).tolist()
                                         for c in result.cycles},
        "mean_shifted_large_accuracy": {c.seed: np.mean(c.large_matrix()[:, shifted], axis=1).tolist()
                                        for c in result.cycles},
        "mean_composed_accuracy": {c.seed: [float(np.mean([g.accuracy["composed"][d] for d in c.domains]))
                                            for g in c.generations if "composed" in g.accuracy]
                                   for c in result.cycles} if config.gate.compose else None,
        "seeds": [c.to_dict() for c in result.cycles],
    }
    print(f"served falls beyond {100 * margin:g} points: {served_beyond}")
    print(f"served falls (any): {len(served_falls)}; large-model falls (any): {len(falls)}")
    name = f"cycle-served-{config.name}" if args.served else f"cycle-{config.name}"
    print(f"wrote {write(name, payload)} in {payload['seconds']} s")


if __name__ == "__main__":
    main()
