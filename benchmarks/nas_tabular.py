"""Architecture search warm starts, replayed on a table of every configuration (a tabular benchmark).

``nas.py`` runs each search once per seed: one draw of the sampler per (domain, seed), so its ratio
("trials the cold search needed to reach its best / trials the warm search needed to reach it")
turns on single draws and single validation rows. Here every configuration of the space is trained
once per (domain, seed) with exactly the scorer ``search_architecture`` uses
(``crossfeed.spawn.trial_scorer``: same training seed, same splits, same accuracy), and the
searches are then replayed on that table with ``crossfeed.spawn.tpe_search``: the same trials a
real search would run, for as many sampler seeds as wanted, at no training cost (the idea of
NAS-Bench-101, Ying et al. 2019). ``--verify`` checks one real search against its replay.

Two stages:

    # 1. the table: every configuration x domain for one data seed (mnist1d cnn1d: 108 x 5 trainings,
    #    about 27 minutes on one core while another build ran on the other; fashion mlp: 36 x 5, about
    #    3 minutes); one JSON per seed under results/nas-table/
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/nas_tabular.py build --suite mnist1d --seed 0

    # 2. the replay: per data seed and sampler seed, each domain's cold search, then for each target
    #    domain one warm search per warm-start strategy from the other four domains' cold searches
    python benchmarks/nas_tabular.py replay --suite mnist1d --sampler-seeds 10 --verify

Warm-start strategies (each given the other domains' cold searches of the same sampler seed):
``top2`` = ``warm_start_configs(k=2)`` (what ``nas.py`` and the cycle use: each source's two best);
``prior5`` = ``prior_configs(n=5)`` (a random forest on the sources' trials, accuracies as quantiles
within each search, rates every configuration: the meta-learned prior); ``top1+prior`` = each
source's best, then the prior's best-rated configurations not among them, 5 in all.

Per (data seed, sampler seed, target) and strategy: the ratio as in ``nas.py`` (a warm search that
never reaches the cold search's best counts 0). Goal: the median ratio over all pairs >= 2 (and per
domain). Also the mean best-so-far validation accuracy after t trials, cold and warm, averaged over
every replay (the curve a reader of NAS papers expects), and the trials the mean warm curve needs to
reach the mean cold curve's value at the full budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, machine, summary, write

from crossfeed._cache import atomic_write_bytes
from crossfeed.data import load_suite
from crossfeed.exceptions import ValidationError
from crossfeed.spawn import (
    ArchitectureSpace,
    prior_configs,
    search_architecture,
    tpe_search,
    trial_scorer,
    warm_start_configs,
)

TABLES = RESULTS / "nas-table"
ARCHITECTURE = {"mnist1d": "cnn1d", "fashion": "mlp"}
GOAL = "warm_reaches_cold_best_in_half_the_trials"


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def table_path(suite: str, seed: int, n_per_domain: int) -> Path:
    return TABLES / f"{suite}-n{n_per_domain}-seed{seed}.json"


def space_of(args: argparse.Namespace) -> ArchitectureSpace:
    return ArchitectureSpace.default(ARCHITECTURE[args.suite], epochs=args.epochs)


# -- stage 1: the table ---------------------------------------------------------------------
def build(args: argparse.Namespace) -> None:
    space = space_of(args)
    suite = load_suite(args.suite, seed=args.seed, n_per_domain=args.n_per_domain)
    t_start = time.perf_counter()
    table: dict[str, dict[str, Any]] = {}
    for domain in suite.domains:
        score = trial_scorer(space, domain, seed=args.seed)
        rows: dict[str, Any] = {}
        t0 = time.perf_counter()
        for params in space.configurations():
            t1 = time.perf_counter()
            try:
                row = dict(score(params))
            except ValidationError as exc:  # a configuration that does not build: a failed trial, as in a search
                row = {"error": str(exc)}
            row["seconds"] = time.perf_counter() - t1
            rows[config_key(params)] = row
        table[domain.name] = rows
        best = max(r.get("accuracy", -1) for r in rows.values())
        print(f"seed {args.seed} {domain.name}: {len(rows)} configurations in {time.perf_counter() - t0:.0f} s, "
              f"best {best:.3f}", flush=True)
    payload = {"benchmark": "nas-table", "suite": args.suite, "seed": args.seed, "n_per_domain": args.n_per_domain,
               "space": space.to_dict(), "command": " ".join(["python benchmarks/nas_tabular.py", *sys.argv[1:]]),
               "machine": machine(), "seconds": time.perf_counter() - t_start, "table": table}
    path = table_path(args.suite, args.seed, args.n_per_domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(payload, indent=1).encode())
    print(f"wrote {path} in {payload['seconds']:.0f} s")


# -- stage 2: the replay --------------------------------------------------------------------
def lookup(rows: dict[str, dict[str, Any]]) -> Any:
    """A scorer that reads the table instead of training (``tpe_search``'s ``score``)."""

    def score(params: dict[str, Any]) -> dict[str, Any]:
        row = rows[config_key(params)]
        if "error" in row:
            raise ValidationError(row["error"])
        return row

    return score


def warm_configs(strategy: str, sources: list[Any], space: ArchitectureSpace, seed: int) -> list[dict[str, Any]]:
    if strategy == "top2":
        return warm_start_configs(sources, k=2)
    if strategy == "prior5":
        return prior_configs(sources, space, n=5, seed=seed)
    if strategy == "top1+prior":
        first = warm_start_configs(sources, k=1)
        keys = {config_key(c) for c in first}
        rest = [c for c in prior_configs(sources, space, n=5 + len(first), seed=seed) if config_key(c) not in keys]
        return (first + rest)[:5]
    raise ValueError(strategy)


STRATEGIES = ("top2", "prior5", "top1+prior")


def best_so_far(result: Any, trials: int) -> list[float]:
    curve, best = [], -1.0
    for t in result.trials[:trials]:
        if t.get("accuracy") is not None:
            best = max(best, t["accuracy"])
        curve.append(best)
    return curve + [best] * (trials - len(curve))  # a space smaller than the budget: flat after its end


def replay_seed(table: dict[str, Any], space: ArchitectureSpace, sampler: int, trials: int) -> dict[str, Any]:
    names = list(table)
    cold = {d: tpe_search(space, lookup(table[d]), n_trials=trials, seed=sampler) for d in names}
    pairs = {}
    for target in names:
        sources = [cold[o] for o in names if o != target]
        best = cold[target].best["accuracy"]
        row: dict[str, Any] = {"cold_best": best, "cold_trials_to_best": cold[target].trials_to_reach(best),
                               "cold_curve": best_so_far(cold[target], trials),
                               "table_best": max(r.get("accuracy", -1.0) for r in table[target].values())}
        for strategy in STRATEGIES:
            configs = warm_configs(strategy, sources, space, sampler)
            warm = tpe_search(space, lookup(table[target]), n_trials=trials, seed=sampler, warm_start=configs)
            needed = warm.trials_to_reach(best)
            row[strategy] = {"warm_trials_to_cold_best": needed, "warm_best": warm.best["accuracy"],
                             "ratio": 0.0 if needed is None else row["cold_trials_to_best"] / needed,
                             "enqueued": configs, "curve": best_so_far(warm, trials)}
        pairs[target] = row
    return pairs


def mean_curve_speedup(cold: np.ndarray, warm: np.ndarray) -> float:
    """Budget / trials the mean warm curve needs to reach the mean cold curve's value at the budget."""
    reached = np.nonzero(warm >= cold[-1] - 1e-12)[0]
    return 0.0 if reached.size == 0 else len(cold) / (int(reached[0]) + 1)


def summarise_replays(pairs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for strategy in STRATEGIES:
        per_domain, everything = {}, []
        for name in names + ["overall"]:
            rows = [p for p in pairs if name == "overall" or p["target"] == name]
            ratios = [p[strategy]["ratio"] for p in rows]
            cold_curve = np.mean([p["cold_curve"] for p in rows], axis=0)
            warm_curve = np.mean([p[strategy]["curve"] for p in rows], axis=0)
            per_domain[name] = {
                "ratio": summary(ratios), "share_at_least_2": float(np.mean([r >= 2.0 for r in ratios])),
                "never": int(sum(p[strategy]["warm_trials_to_cold_best"] is None for p in rows)), "pairs": len(rows),
                GOAL: bool(np.median(ratios) >= 2.0),
                "mean_cold_curve": cold_curve.tolist(), "mean_warm_curve": warm_curve.tolist(),
                "mean_curve_speedup": mean_curve_speedup(cold_curve, warm_curve),
                "mean_best_gap": float(np.mean([p[strategy]["warm_best"] - p["cold_best"] for p in rows])),
            }
            if name == "overall":
                everything = ratios
        out[strategy] = {"per_domain": per_domain, "overall_median_ratio": float(np.median(everything))}
    return out


def table_stats(tables: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per domain, over data seeds: how far its best configuration stands above the median one, how
    many configurations tie with its best, and how alike its ranking of the whole space is to the
    other domains' (mean Spearman correlation): what a warm start from other domains can use."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for table in tables.values():
        names = list(table)
        keys = list(table[names[0]])
        acc = np.array([[table[n][k].get("accuracy", np.nan) for k in keys] for n in names])
        for i, name in enumerate(names):
            rhos = [spearmanr(acc[i], acc[j], nan_policy="omit")[0] for j in range(len(names)) if j != i]
            row = out.setdefault(name, {"best_minus_median": [], "tied_with_best": [], "mean_spearman_to_others": []})
            row["best_minus_median"].append(float(np.nanmax(acc[i]) - np.nanmedian(acc[i])))
            row["tied_with_best"].append(int(np.sum(acc[i] >= np.nanmax(acc[i]) - 1e-12)))
            row["mean_spearman_to_others"].append(float(np.mean(rhos)))
    return {name: {k: summary(v) for k, v in row.items()} for name, row in out.items()}


def replay(args: argparse.Namespace) -> None:
    space = space_of(args)
    t_start = time.perf_counter()
    tables = {}
    for seed in args.seeds:
        data = json.loads(table_path(args.suite, seed, args.n_per_domain).read_text())
        if data["space"] != space.to_dict():
            raise SystemExit(f"the seed-{seed} table is of another space: {data['space']}")
        tables[seed] = data["table"]
    verified = None
    if args.verify:  # one real search must run exactly the replayed trials
        seed = args.seeds[0]
        domain = load_suite(args.suite, seed=seed, n_per_domain=args.n_per_domain).domains[0]
        real = search_architecture(space, domain, n_trials=args.trials, seed=seed)
        again = tpe_search(space, lookup(tables[seed][domain.name]), n_trials=args.trials, seed=seed)
        same = [(t["params"], t["accuracy"]) for t in real.trials] == [(t["params"], t["accuracy"]) for t in again.trials]
        verified = {"seed": seed, "domain": domain.name, "same_trials_and_accuracies": same}
        print(f"verify: real search on {domain.name} seed {seed} == replay: {same}", flush=True)
        if not same:
            raise SystemExit("the replay does not reproduce the real search; the table is stale")
    pairs = []
    for seed in args.seeds:
        for j in range(args.sampler_seeds):
            sampler = seed + 100 * j  # j = 0: the sampler seed a real search of this data seed uses
            for target, row in replay_seed(tables[seed], space, sampler, args.trials).items():
                pairs.append({"data_seed": seed, "sampler_seed": sampler, "target": target, **row})
        print(f"data seed {seed}: {args.sampler_seeds} sampler seeds replayed", flush=True)
    names = list(tables[args.seeds[0]])
    table = summarise_replays(pairs, names)
    name = args.name or f"nas-tabular-{args.suite}"
    payload = {"benchmark": "nas-tabular", "suite": args.suite, "space": space.to_dict(), "seeds": args.seeds,
               "sampler_seeds_per_data_seed": args.sampler_seeds, "trials": args.trials,
               "n_per_domain": args.n_per_domain, "strategies": list(STRATEGIES), "goal": GOAL,
               "command": " ".join(["python benchmarks/nas_tabular.py", *sys.argv[1:]]),
               "tables": [str(table_path(args.suite, s, args.n_per_domain).relative_to(RESULTS.parent))
                          for s in args.seeds],
               "verified": verified, "machine": machine(), "seconds": time.perf_counter() - t_start,
               "table_stats": table_stats(tables), "table": table, "pairs": pairs}
    path = write(name, payload)
    print(markdown(table, names))
    for name, row in payload["table_stats"].items():
        print(f"{name}: best - median {row['best_minus_median']['median']:.3f}, tied with best "
              f"{row['tied_with_best']['median']:.0f}, mean Spearman to the others {row['mean_spearman_to_others']['median']:.2f}")
    print(f"total {payload['seconds']:.0f} s; wrote {path}")


def markdown(table: dict[str, Any], names: list[str]) -> str:
    def fmt(s: dict[str, float]) -> str:
        return f"{s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"

    lines = ["| target | " + " | ".join(f"{s}: ratio (share >= 2, never) / mean-curve speed-up" for s in STRATEGIES)
             + " |", "|---" * (1 + len(STRATEGIES)) + "|"]
    for name in names + ["overall"]:
        cells = []
        for s in STRATEGIES:
            row = table[s]["per_domain"][name]
            cells.append(f"{fmt(row['ratio'])} ({row['share_at_least_2']:.2f}, {row['never']}/{row['pairs']}) / "
                         f"{row['mean_curve_speedup']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    b = sub.add_parser("build", help="train every configuration on every domain for one data seed")
    b.add_argument("--seed", type=int, required=True)
    r = sub.add_parser("replay", help="replay cold and warm searches on the tables")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data seeds (tables must exist)")
    r.add_argument("--sampler-seeds", type=int, default=10, help="sampler seeds per data seed")
    r.add_argument("--trials", type=int, default=20)
    r.add_argument("--verify", action="store_true", help="check one real search against its replay")
    r.add_argument("--name", default=None)
    for p in (b, r):
        p.add_argument("--suite", default="mnist1d", choices=sorted(ARCHITECTURE))
        p.add_argument("--n-per-domain", type=int, default=2000)
        p.add_argument("--epochs", type=int, default=15)
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"build": build, "replay": replay}[args.stage](args)


if __name__ == "__main__":
    main()
