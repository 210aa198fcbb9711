"""Architecture search with warm start across domains (leave one domain out), on mnist1d or fashion.

For each seed, every one of the 5 domains gets a cold search: Optuna's TPE sampler (seeded) over
``ArchitectureSpace.default("cnn1d")`` (2-4 blocks of 8/16/32/64 channels, kernel 3/5/7, hidden
32/64/128), each trial a cnn1d trained on the domain's train split for 15 epochs (lr 3e-3, batch
128, seeded with the seed) and scored on its validation split. Then, for each target domain, a
warm search of as many trials that first evaluates ``warm_start_configs`` (the top ``--k`` = 2
configurations) of the OTHER four domains' cold searches of the same seed (with ``--prior N``: the
N configurations ``prior_configs`` rates best from those searches, the meta-learned prior). A trial
is one distinct configuration (since commit 12cad58; before it, 16-22% of these runs' trials were
repeats the sampler proposed again and that were retrained and counted).

Per target: the cold search's best validation accuracy, the trials it needed to reach it, the
trials the warm search needed to reach that accuracy (None: never), their ratio (cold / warm; a
warm search that never reaches it counts as 0 in the summaries), and the test accuracy of each
search's best configuration (retrained on the train split with the same seed, scored on the test
split). Goal ``warm_reaches_cold_best_in_half_the_trials``: the median ratio over seeds is >= 2,
per domain, and over all (seed, domain) pairs overall.

Defaults: 3 seeds, 20 trials per search, 2000 samples per domain (train 1000, val 250, test 500),
15 epochs. Chosen so the full run (3 seeds x 5 domains x 2 searches x 20 trials) takes about
15-20 minutes on one core: one trial took 0.4-3 s (median about 1.5 s) there.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/nas.py   # writes results/nas-mnist1d.json and
                                                                # results/nas-mnist1d-pareto.png (seed 0)
    python benchmarks/nas.py --quick                          # 1 seed, 400 per domain, 4 trials, 2 epochs
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/nas.py --suite fashion --architecture mlp
                                                                # results/nas-fashion.json: the preset MLP
                                                                # space (1-3 layers, width 32-256, dropout)
                                                                # on the 784 pixels of each fashion domain
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import RESULTS, machine, summary, write

from crossfeed._cache import atomic_write_bytes
from crossfeed.data import load_suite
from crossfeed.report import pareto_png
from crossfeed.spawn import ArchitectureSpace, SearchResult, prior_configs, search_architecture, warm_start_configs

GOAL = "warm_reaches_cold_best_in_half_the_trials"


def test_accuracy(space: ArchitectureSpace, params: dict[str, Any], domain: Any, seed: int) -> float:
    model = space.estimator(params, random_state=seed).fit(domain.X_train, domain.y_train)
    return float(np.mean(model.predict(domain.X_test) == domain.y_test))


def run_seed(seed: int, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, SearchResult]]]:
    suite = load_suite(args.suite, seed=seed, n_per_domain=args.n_per_domain)
    space = ArchitectureSpace.default(args.architecture, epochs=args.epochs)
    cold: dict[str, SearchResult] = {}
    seconds: dict[str, float] = {}
    for domain in suite.domains:
        t0 = time.perf_counter()
        cold[domain.name] = search_architecture(space, domain, n_trials=args.trials, seed=seed)
        seconds[domain.name] = time.perf_counter() - t0
        print(f"seed {seed} cold {domain.name}: best {cold[domain.name].best['accuracy']:.3f} "
              f"in {seconds[domain.name]:.0f} s", flush=True)
    records: dict[str, dict[str, Any]] = {}
    searches: dict[str, dict[str, SearchResult]] = {}
    for domain in suite.domains:
        name = domain.name
        sources = [cold[o] for o in cold if o != name]
        if args.prior:
            configs = prior_configs(sources, space, n=args.prior, seed=seed)
        else:
            configs = warm_start_configs(sources, k=args.k)
        t0 = time.perf_counter()
        warm = search_architecture(space, domain, n_trials=args.trials, seed=seed, warm_start=configs)
        warm_seconds = time.perf_counter() - t0
        best = cold[name].best["accuracy"]
        cold_needed = cold[name].trials_to_reach(best)
        warm_needed = warm.trials_to_reach(best)
        t0 = time.perf_counter()
        cold_test = test_accuracy(space, cold[name].best["params"], domain, seed)
        warm_test = test_accuracy(space, warm.best["params"], domain, seed)
        records[name] = {
            "cold_best_accuracy": best, "warm_best_accuracy": warm.best["accuracy"],
            "cold_trials_to_best": cold_needed, "warm_trials_to_cold_best": warm_needed,
            "ratio": None if warm_needed is None else cold_needed / warm_needed,
            "n_enqueued": sum(t["enqueued"] for t in warm.trials),
            "cold_best_params": cold[name].best["params"], "warm_best_params": warm.best["params"],
            "cold_test_accuracy": cold_test, "warm_test_accuracy": warm_test,
            "cold_best_flops": cold[name].best["flops_per_sample"], "warm_best_flops": warm.best["flops_per_sample"],
            "cold_seconds": seconds[name], "warm_seconds": warm_seconds,
            "retrain_seconds": time.perf_counter() - t0,
            "cold": cold[name].to_dict(), "warm": warm.to_dict(),
        }
        searches[name] = {"cold": cold[name], "warm": warm}
        print(f"seed {seed} warm {name}: cold best {best:.3f} at trial {cold_needed}, warm reached it at "
              f"{warm_needed} ({len(configs)} enqueued); test cold {cold_test:.3f} warm {warm_test:.3f}", flush=True)
    return {"seed": seed, "records": records}, searches


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians with (min, max) over seeds per domain, the goal per domain and overall."""
    domains = list(runs[0]["records"])
    keys = ("cold_best_accuracy", "warm_best_accuracy", "cold_trials_to_best", "cold_test_accuracy",
            "warm_test_accuracy", "cold_seconds", "warm_seconds")
    per_domain: dict[str, Any] = {}
    all_ratios: list[float] = []
    for name in domains:
        recs = [r["records"][name] for r in runs]
        ratios = [0.0 if rec["ratio"] is None else rec["ratio"] for rec in recs]  # never reached: 0
        all_ratios += ratios
        reached = [rec["warm_trials_to_cold_best"] for rec in recs if rec["warm_trials_to_cold_best"] is not None]
        row = {k: summary([rec[k] for rec in recs]) for k in keys}
        row["ratio"] = summary(ratios)
        row["warm_trials_to_cold_best"] = summary(reached) if reached else None
        row["warm_never_reached"] = len(recs) - len(reached)
        row[GOAL] = bool(row["ratio"]["median"] >= 2.0)
        per_domain[name] = row
    overall = {
        "ratio": summary(all_ratios),
        "share_of_pairs_with_ratio_at_least_2": float(np.mean([r >= 2.0 for r in all_ratios])),
        GOAL: bool(np.median(all_ratios) >= 2.0),
        "domains_meeting_goal": [n for n in domains if per_domain[n][GOAL]],
    }
    return {"per_domain": per_domain, "overall": overall}


def markdown_table(table: dict[str, Any]) -> str:
    def fmt(s: dict[str, float] | None, digits: int = 2) -> str:
        if s is None:
            return "never"
        return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"

    lines = ["| domain | cold best val acc | cold trials to best | warm trials to cold best | ratio | goal | "
             "test acc cold / warm |", "|---" * 7 + "|"]
    for name, row in table["per_domain"].items():
        lines.append(f"| {name} | {fmt(row['cold_best_accuracy'], 3)} | {fmt(row['cold_trials_to_best'], 0)} | "
                     f"{fmt(row['warm_trials_to_cold_best'], 0)} (never: {row['warm_never_reached']}) | "
                     f"{fmt(row['ratio'])} | {'met' if row[GOAL] else 'not met'} | "
                     f"{row['cold_test_accuracy']['median']:.3f} / {row['warm_test_accuracy']['median']:.3f} |")
    o = table["overall"]
    lines.append(f"| overall | | | | {fmt(o['ratio'])} | {'met' if o[GOAL] else 'not met'} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="mnist1d", choices=["mnist1d", "fashion"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20, help="trials per search (warm-start ones included)")
    parser.add_argument("--n-per-domain", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of every trial")
    parser.add_argument("--k", type=int, default=2, help="configurations enqueued from each other domain's search")
    parser.add_argument("--prior", type=int, default=0,
                        help="warm-start with the N configurations prior_configs rates best (the meta-learned "
                             "prior) instead of each other domain's --k best; 0: the --k best")
    parser.add_argument("--architecture", default="cnn1d", choices=["cnn1d", "mlp"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="one seed, 400 samples per domain, 4 trials, 2 epochs")
    parser.add_argument("--name", default=None, help="JSON name (default nas-<suite>, nas-<suite>-quick with --quick)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_per_domain, args.trials, args.epochs = [0], 400, 4, 2
    torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    runs, plotted = [], None
    for seed in args.seeds:
        run, searches = run_seed(seed, args)
        runs.append(run)
        plotted = plotted or searches
    table = summarise(runs)
    name = args.name or f"nas-{args.suite}" + ("-quick" if args.quick else "")
    command = " ".join(["OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/nas.py", *sys.argv[1:]])
    payload = {
        "benchmark": "nas", "suite": args.suite, "architecture": args.architecture, "command": command, "seeds": args.seeds, "trials": args.trials,
        "n_per_domain": args.n_per_domain, "k": args.k, "prior": args.prior, "goal": GOAL,
        "space": ArchitectureSpace.default(args.architecture, epochs=args.epochs).to_dict(),
        "sampler": "optuna TPESampler(seed=seed)", "machine": machine(),
        "seconds": time.perf_counter() - t_start, "table": table, "runs": runs,
    }
    path = write(name, payload)
    png = RESULTS / f"{name}-pareto.png"
    atomic_write_bytes(png, pareto_png(plotted))
    print(markdown_table(table))
    print(f"total {payload['seconds']:.0f} s; wrote {path} and {png} (seed {args.seeds[0]})")


if __name__ == "__main__":
    main()
