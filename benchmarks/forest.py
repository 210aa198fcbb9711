"""Meta decision forest benchmark: leave one domain out, adapt in k shots per class.

For every suite, seed and target domain: a ``MetaForest`` grows on the other domains (its leaf
prior strength and fresh-tree mixture meta-learnt across them, per k), then adapts to k labelled
samples per class of the target (k = 1, 5, 10, 50). Test accuracy on the target, against:

- *source forest*: the same forest, not adapted (zero-shot);
- *leaf refit only*: the adaptation with the fresh-tree weight forced to 0;
- *scratch*: an ``ExtraTreesClassifier`` (200 trees) grown on the k shots alone.

    python benchmarks/forest.py                     # mnist1d and fashion, seeds 0 1 2 -> benchmarks/results/forest.json
    python benchmarks/forest.py --suites mnist1d --seeds 0

fashion uses ``n_per_domain=2000`` (1400 train samples per domain) to keep the run near 20 minutes
on one core; mnist1d its default.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.ensemble import ExtraTreesClassifier

from crossfeed.data import load_suite
from crossfeed.models import MetaForest, sample_shots

SHOTS = (1, 5, 10, 50)
SUITE_KWARGS = {"mnist1d": {}, "fashion": {"n_per_domain": 2000}}


def flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1)


def one(suite_name: str, seed: int) -> list[dict[str, Any]]:
    suite = load_suite(suite_name, seed=seed, **SUITE_KWARGS[suite_name])
    rows = []
    for target in suite.domains:
        sources = [d for d in suite.domains if d.name != target.name]
        X = np.concatenate([flat(d.X_train) for d in sources])
        y = np.concatenate([d.y_train for d in sources])
        domains = np.concatenate([[d.name] * len(d.y_train) for d in sources])
        t = time.perf_counter()
        forest = MetaForest(random_state=seed).fit(X, y, domains=domains)
        fit_s = time.perf_counter() - t
        Xt, yt = flat(target.X_test), target.y_test
        source_acc = float(forest.score(Xt, yt))
        rng = np.random.default_rng(1000 + seed)
        for k in SHOTS:
            shots = sample_shots(target.y_train, k, rng)
            Xk, yk = flat(target.X_train[shots]), target.y_train[shots]
            t = time.perf_counter()
            adapted = forest.adapt(Xk, yk)
            adapt_s = time.perf_counter() - t
            refit_only = copy.copy(forest)
            refit_only.mixture, refit_only.adaptation_table_ = 0.0, {
                s: {**v, "mixture": 0.0} for s, v in forest.adaptation_table_.items()}
            scratch = ExtraTreesClassifier(200, random_state=seed).fit(Xk, yk)
            rows.append({
                "suite": suite_name, "seed": seed, "target": target.name, "k": k, "source_forest": source_acc,
                "meta_forest": float(adapted.score(Xt, yt)), "leaf_refit_only": float(refit_only.adapt(Xk, yk).score(Xt, yt)),
                "scratch": float((scratch.predict(Xt) == yt).mean()), "chosen": adapted.adapted_with_,
                "fit_seconds": fit_s, "adapt_seconds": adapt_s, "table": forest.adaptation_table_,
            })
        print(f"{suite_name} seed {seed} {target.name}: fit {fit_s:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=["mnist1d", "fashion"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="forest")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = [r for s in args.suites for seed in args.seeds for r in one(s, seed)]
    methods = ("source_forest", "leaf_refit_only", "meta_forest", "scratch")
    table: dict[str, Any] = {}
    for s in args.suites:
        table[s] = {}
        for k in SHOTS:
            mine = [r for r in rows if r["suite"] == s and r["k"] == k]
            # per seed, the mean over target domains; then the median [min, max] over seeds
            per_seed = {m: [float(np.mean([r[m] for r in mine if r["seed"] == seed])) for seed in args.seeds] for m in methods}
            table[s][str(k)] = {m: summary(v) for m, v in per_seed.items()}
            table[s][str(k)]["meta_forest_beats_scratch"] = f"{sum(r['meta_forest'] > r['scratch'] for r in mine)} of {len(mine)}"
    payload = {"benchmark": "forest", "machine": machine(), "suites": args.suites, "seeds": args.seeds,
               "suite_kwargs": {s: SUITE_KWARGS[s] for s in args.suites}, "shots": list(SHOTS),
               "summary": table, "rows": rows, "seconds": time.perf_counter() - start}
    path = write(args.name, payload)
    print(f"wrote {path} in {payload['seconds']:.0f} s")


if __name__ == "__main__":
    main()
