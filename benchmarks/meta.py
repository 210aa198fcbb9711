"""Meta-learning benchmark: leave one domain out, adapt in k shots per class (k = 1, 5, 10, 50).

The protocol of ``benchmarks/forest.py`` (same suites and ``SUITE_KWARGS``, every domain the target
once, the same ``sample_shots(target.y_train, k, default_rng(1000 + seed))`` shots per k in the
same order, the target's test split), so rows match the meta forest's on (suite, seed, target, k).
For every suite, seed and target, five initialisations of the same small network:

- *pooled*: trained on the other domains' labelled training data, pooled;
- *v0*: trained on the general domain only (not for the general domain as target: it saw it);
- *reptile*: the pooled model meta-trained by the ``reptile`` strategy over the other domains;
- *fomaml*: the pooled model meta-trained by the ``maml`` strategy (first order) over them;
- *scratch*: random weights.

Each is adapted to the target's k shots by :func:`crossfeed.feedback.adapt_k_shot`: the
same ``steps`` full-batch SGD steps (per suite, in ``FULL``) at the same learning rate for every
initialisation. The learning rate is chosen once per suite, before the run, on another data draw
(suite seed 99): there the domain ``SELECT_DOMAIN`` is held out, every initialisation is adapted
on its 10 shots per class with each rate of the grid, and the rate with the best mean validation accuracy (never a test
split, never a benchmark seed's data) is used everywhere. Test accuracy of the target.

    python benchmarks/meta.py                  # mnist1d and fashion, seeds 0 1 2 -> results/meta-<suite>.json
    python benchmarks/meta.py --suites mnist1d --seeds 0
    python benchmarks/meta.py --quick          # smoke run: one seed, fewer epochs and rounds

``summary``: per k and method, per seed the mean over the targets, then the median [min, max] over
seeds (v0 over the four shifted targets only); ``summary_shifted_targets`` the same over the four
shifted targets for every method (like for like with v0). ``vs_forest``: per k, the median
[min, max] of ``meta_forest`` (results/forest.json, if present) next to that of the better of the
two neural meta-inits (the one with the higher median).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from _common import RESULTS, machine, summary, write
from forest import SHOTS, SUITE_KWARGS

from crossfeed.data import Domain, DomainSuite, load_suite
from crossfeed.feedback import TrainSettings, absorb, adapt_k_shot
from crossfeed.feedback.maml import MAML
from crossfeed.feedback.reptile import Reptile
from crossfeed.models import TorchClassifier, build_module, fitted_copy, sample_shots

ARCH = {"mnist1d": ("cnn1d", {"size": "small"}), "fashion": ("cnn2d", {"size": "small"})}
METHODS = ("pooled", "v0", "reptile", "fomaml", "scratch")
META = ("reptile", "fomaml")
LR_GRID = (0.01, 0.03, 0.1)
SELECT_SEED, SELECT_DOMAIN, SELECT_K = 99, 1, 10  # suite seed, index of the held-out domain, shots
# per suite: epochs of pooled / v0, the meta-training, and the adaptation steps (fashion's CNN costs
# ~10x mnist1d's per sample, so it gets fewer epochs, rounds and steps to keep the run near 25 min)
FULL = {
    "mnist1d": {"epochs": 10, "steps": 20, "reptile": {"rounds": 5, "step_size": 0.5}, "reptile_lr": 1e-3,
                "maml": {"rounds": 40, "inner_steps": 5, "inner_lr": 0.1, "support_shots": 5, "query_shots": 10},
                "maml_lr": 0.05},
    "fashion": {"epochs": 4, "steps": 10, "reptile": {"rounds": 3, "step_size": 0.5}, "reptile_lr": 1e-3,
                "maml": {"rounds": 15, "inner_steps": 5, "inner_lr": 0.1, "support_shots": 5, "query_shots": 10},
                "maml_lr": 0.05},
}
QUICK = {name: {**cfg, "epochs": 1, "steps": 2, "reptile": {"rounds": 1, "step_size": 0.5},
                "maml": {**cfg["maml"], "rounds": 2}} for name, cfg in FULL.items()}


def flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1)


def fit(suite_name: str, domains: list[Domain], epochs: int, seed: int) -> TorchClassifier:
    """The suite's small network trained on the pooled labelled training data of ``domains``."""
    arch, kwargs = ARCH[suite_name]
    X = np.concatenate([flat(d.X_train) for d in domains])
    y = np.concatenate([d.y_train for d in domains])
    return TorchClassifier(arch, module_kwargs=kwargs, epochs=epochs, lr=3e-3, random_state=seed).fit(X, y)


def meta_train(pooled: TorchClassifier, sources: list[Domain], strategy: Any, settings: TrainSettings) -> TorchClassifier:
    """``pooled`` meta-trained by ``strategy`` with every source domain a task (through ``absorb``)."""
    sub = DomainSuite.from_domains("sources", sources, meta={"general_domain": sources[0].name})
    experts = {d.name: pooled for d in sources[1:]}  # only the domain names matter to these strategies
    return absorb(pooled, experts, sub, strategy, settings, keep_weaker_experts=True)[0]


def scratch(suite_name: str, like: TorchClassifier, seed: int) -> TorchClassifier:
    """Random weights of the same network, wrapped as a fitted classifier."""
    arch, kwargs = ARCH[suite_name]
    torch.manual_seed(seed)
    return fitted_copy(like, build_module(arch, int(like.n_features_in_), len(like.classes_), **kwargs))


def initialisations(suite_name: str, suite: DomainSuite, target: Domain, seed: int, cfg: dict[str, Any],
                    v0: TorchClassifier) -> tuple[dict[str, TorchClassifier | None], dict[str, float]]:
    """The five initialisations for ``target`` and the seconds each took to train."""
    sources = [d for d in suite.domains if d.name != target.name]
    seconds, inits = {}, {}
    t = time.perf_counter()
    inits["pooled"] = fit(suite_name, sources, cfg["epochs"], seed)
    seconds["pooled"] = time.perf_counter() - t
    inits["v0"] = None if target.name == suite.general_domain else v0
    strategies = {"reptile": (Reptile(**cfg["reptile"]), TrainSettings(epochs=1, lr=cfg["reptile_lr"], seed=seed)),
                  "fomaml": (MAML(**cfg["maml"]), TrainSettings(epochs=1, lr=cfg["maml_lr"], seed=seed))}
    for name, (strategy, settings) in strategies.items():
        t = time.perf_counter()
        inits[name] = meta_train(inits["pooled"], sources, strategy, settings)
        seconds[name] = time.perf_counter() - t
    inits["scratch"] = scratch(suite_name, inits["pooled"], seed)
    return inits, seconds


def adapted_accuracy(init: TorchClassifier | None, Xk: np.ndarray, yk: np.ndarray, X: np.ndarray, y: np.ndarray,
                     steps: int, lr: float) -> float | None:
    if init is None:
        return None
    return float(adapt_k_shot(init, Xk, yk, steps, lr).score(X, y))


def select_lr(suite_name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The adaptation learning rate of the grid with the best mean validation accuracy on another draw."""
    suite = load_suite(suite_name, seed=SELECT_SEED, **SUITE_KWARGS[suite_name])
    held_out = suite.domains[SELECT_DOMAIN]
    v0 = fit(suite_name, [suite[suite.general_domain]], cfg["epochs"], SELECT_SEED)
    inits, _ = initialisations(suite_name, suite, held_out, SELECT_SEED, cfg, v0)
    shots = sample_shots(held_out.y_train, SELECT_K, np.random.default_rng(SELECT_SEED))
    Xk, yk, Xv, yv = flat(held_out.X_train[shots]), held_out.y_train[shots], flat(held_out.X_val), held_out.y_val
    table = {str(lr): {m: adapted_accuracy(inits[m], Xk, yk, Xv, yv, cfg["steps"], lr) for m in METHODS} for lr in LR_GRID}
    mean = {lr: float(np.mean([a for a in table[str(lr)].values() if a is not None])) for lr in LR_GRID}
    best = max(LR_GRID, key=lambda lr: mean[lr])
    return {"lr": best, "suite_seed": SELECT_SEED, "held_out": held_out.name, "k": SELECT_K, "split": "validation",
            "grid": list(LR_GRID), "mean_validation_accuracy": {str(k): v for k, v in mean.items()},
            "validation_accuracy": table}


def one(suite_name: str, seed: int, cfg: dict[str, Any], lr: float) -> list[dict[str, Any]]:
    suite = load_suite(suite_name, seed=seed, **SUITE_KWARGS[suite_name])
    v0 = fit(suite_name, [suite[suite.general_domain]], cfg["epochs"], seed)
    rows = []
    for target in suite.domains:
        inits, seconds = initialisations(suite_name, suite, target, seed, cfg, v0)
        Xt, yt = flat(target.X_test), target.y_test
        zero_shot = {m: None if inits[m] is None else float(inits[m].score(Xt, yt)) for m in METHODS}
        rng = np.random.default_rng(1000 + seed)
        for k in SHOTS:
            shots = sample_shots(target.y_train, k, rng)
            Xk, yk = flat(target.X_train[shots]), target.y_train[shots]
            t = time.perf_counter()
            accs = {m: adapted_accuracy(inits[m], Xk, yk, Xt, yt, cfg["steps"], lr) for m in METHODS}
            rows.append({"suite": suite_name, "seed": seed, "target": target.name, "k": k, **accs,
                         "zero_shot": zero_shot, "train_seconds": seconds,
                         "adapt_seconds": time.perf_counter() - t})
        print(f"{suite_name} seed {seed} {target.name}: " + " ".join(f"{m} {s:.0f} s" for m, s in seconds.items()),
              flush=True)
    return rows


def summarise(rows: list[dict[str, Any]], seeds: list[int], targets: set[str] | None = None) -> dict[str, Any]:
    """Per k and method: per seed the mean over target domains, then the median [min, max] over seeds."""
    table: dict[str, Any] = {}
    for k in SHOTS:
        mine = [r for r in rows if r["k"] == k and (targets is None or r["target"] in targets)]
        table[str(k)] = {}
        for m in METHODS:
            per_seed = [[r[m] for r in mine if r["seed"] == s and r[m] is not None] for s in seeds]
            if all(per_seed):
                table[str(k)][m] = summary([float(np.mean(v)) for v in per_seed])
        for m in META:
            table[str(k)][f"{m}_beats_pooled"] = f"{sum(r[m] > r['pooled'] for r in mine)} of {len(mine)}"
    return table


def vs_forest(suite_name: str, table: dict[str, Any]) -> dict[str, Any] | None:
    """Per k: the meta forest's median [min, max] (results/forest.json) next to the better neural meta-init's."""
    path = RESULTS / "forest.json"
    if not path.exists():
        return None
    forest = json.loads(path.read_text())
    if suite_name not in forest.get("summary", {}):
        return None
    out = {"forest_commit": forest.get("machine", {}).get("commit"), "forest_seeds": forest.get("seeds")}
    for k in SHOTS:
        best = max(META, key=lambda m: table[str(k)][m]["median"])
        out[str(k)] = {"meta_forest": forest["summary"][suite_name][str(k)]["meta_forest"],
                       "best_neural_meta_init": best, best: table[str(k)][best]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=["mnist1d", "fashion"], choices=sorted(ARCH))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 1 epoch, 2 meta rounds, 2 steps")
    parser.add_argument("--name", default="meta", help="results/<name>-<suite>.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs, seeds = (QUICK, [0]) if args.quick else (FULL, args.seeds)
    for suite_name in args.suites:
        cfg = configs[suite_name]
        start, cpu_start = time.perf_counter(), time.process_time()
        selection = select_lr(suite_name, cfg)
        print(f"{suite_name}: adaptation lr {selection['lr']} ({selection['mean_validation_accuracy']})", flush=True)
        rows = [r for seed in seeds for r in one(suite_name, seed, cfg, selection["lr"])]
        general = load_suite(suite_name, seed=seeds[0], **SUITE_KWARGS[suite_name]).general_domain
        shifted = {r["target"] for r in rows} - {general}
        table = summarise(rows, seeds)
        payload = {"benchmark": "meta", "machine": machine(), "suite": suite_name, "seeds": seeds,
                   "suite_kwargs": SUITE_KWARGS[suite_name], "shots": list(SHOTS), "quick": args.quick,
                   "architecture": ARCH[suite_name], "config": cfg, "adaptation": {"steps": cfg["steps"], **selection},
                   "summary": table, "summary_shifted_targets": summarise(rows, seeds, shifted),
                   "vs_forest": vs_forest(suite_name, table), "rows": rows, "seconds": time.perf_counter() - start,
                   "cpu_seconds": time.process_time() - cpu_start}
        path = write(f"{args.name}{'-quick' if args.quick else ''}-{suite_name}", payload)
        print(f"wrote {path} in {payload['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
