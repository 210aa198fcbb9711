"""Combine benchmark on the mnist1d suite (BENCHMARKS.md §combine).

For each seed: the demo's members (large CNN, tiny CNN, MLP, logistic regression) are trained on
the pooled training data; every combiner is fitted on the pooled validation data with the members
frozen; everything is scored on the pooled test set. The peer is scikit-learn's StackingClassifier
and soft VotingClassifier over the same frozen members (``sklearn.frozen.FrozenEstimator``), fitted
on the same validation data, timed side by side in the same run.

    python benchmarks/combine.py            # 3 seeds, writes benchmarks/results/combine.json
    python benchmarks/combine.py --quick    # 1 seed, small data (smoke run)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import machine, summary, write
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from crossfeed.data import load_suite
from crossfeed.evaluate import label_indices, score_all
from crossfeed.experiments._demo import LARGE, combine_and_evaluate, train_members


def run_seed(seed: int, n_per_domain: int, epochs: int) -> dict[str, Any]:
    suite = load_suite("mnist1d", seed=seed, n_per_domain=n_per_domain)
    X_val, y_val = suite.pooled("val")
    X_test, y_test = suite.pooled("test")
    members, fit_s = train_members(suite, seed=seed, epochs=epochs)
    records, cascade, _ = combine_and_evaluate(members, fit_s, suite, seed=seed)

    frozen = [(name, FrozenEstimator(m)) for name, m in members.items()]
    peers = {
        "sklearn_stacking": StackingClassifier(frozen, final_estimator=LogisticRegression(max_iter=1000), cv=5),
        "sklearn_voting_soft": VotingClassifier(frozen, voting="soft"),
    }
    y_idx = label_indices(y_test, suite.classes)
    for name, peer in peers.items():
        t0 = time.perf_counter()
        peer.fit(X_val, y_val)
        seconds = time.perf_counter() - t0
        records[name] = {"name": name, "kind": "peer", "fit_seconds": seconds, **score_all(y_idx, peer.predict_proba(X_test))}

    best_member = max((r for r in records.values() if r["kind"] == "member"), key=lambda r: r["accuracy"])
    best_comb = max((r for r in records.values() if r["kind"] == "combiner"), key=lambda r: r["accuracy"])
    return {
        "seed": seed,
        "records": records,
        "cascade": cascade,
        "best_member": best_member["name"],
        "best_combiner": best_comb["name"],
        "ensemble_gain_points": 100 * (best_comb["accuracy"] - best_member["accuracy"]),
        "large_accuracy": records[LARGE]["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-domain", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="one seed, 800 samples per domain, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_per_domain, args.epochs = [0], 800, 3

    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs.append(run_seed(seed, args.n_per_domain, args.epochs))
        print(f"seed {seed}: {time.perf_counter() - t0:.1f} s, gain {runs[-1]['ensemble_gain_points']:+.2f} points")

    names = list(runs[0]["records"])
    table = {}
    for name in names:
        rows = [r["records"][name] for r in runs]
        table[name] = {key: summary([row[key] for row in rows]) for key in ("accuracy", "nll", "ece", "fit_seconds", "flops_per_sample", "latency_batch1_s", "latency_batch256_s") if key in rows[0]}
        table[name]["kind"] = rows[0]["kind"]
    cascade_keys = ("accuracy", "gap_points", "escalation_rate", "flops_fraction", "latency_fraction_batch1",
                    "latency_fraction_batch256", "cost_to_match_flops_fraction", "normalized_auc")
    cascade = {k: summary([r["cascade"][k] for r in runs if r["cascade"][k] is not None]) for k in cascade_keys}
    payload = {
        "benchmark": "combine", "suite": "mnist1d", "seeds": args.seeds, "n_per_domain": args.n_per_domain,
        "epochs": args.epochs, "machine": machine(), "table": table, "cascade": cascade,
        "ensemble_gain_points": summary([r["ensemble_gain_points"] for r in runs]),
        "runs": runs,
    }
    path = write("combine-quick" if args.quick else "combine", payload)

    print(f"\n{'model':22s} {'kind':9s} {'acc % (median [min, max])':28s} {'NLL':>6s} {'ECE':>6s} {'fit s':>7s}")
    for name, row in table.items():
        acc = row["accuracy"]
        print(f"{name:22s} {row['kind']:9s} {100 * acc['median']:6.2f} [{100 * acc['min']:.2f}, {100 * acc['max']:.2f}]       "
              f"{row['nll']['median']:6.3f} {row['ece']['median']:6.3f} {row['fit_seconds']['median']:7.3f}")
    print("cascade:", {k: round(v["median"], 4) for k, v in cascade.items()})
    print("wrote", path)


if __name__ == "__main__":
    main()
