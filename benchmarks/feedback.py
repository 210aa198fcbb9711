"""Feedback benchmark on the mnist1d suite (issue 4, BENCHMARKS.md §feedback).

For each seed: the large model v0 (cnn1d large) is trained on the general domain ("default") only;
each of the four shifted domains gets an expert spawned from v0 (a tiny CNN distilled from v0 on
the pooled labelled data and the domain's field data, then fine-tuned on the domain:
``crossfeed.spawn.spawn_experts``) and, for the strategies that need the large model's
architecture (weight merging, transplanting), a copy of v0 fine-tuned on the domain.

Settings:
- (a) pooled labelled data: ``joint_training`` on every domain's labelled training data, the upper
  reference (not feedback: the domains' labels leave them);
- (b) data-free: every strategy with all experts at once; the large model sees the general
  domain's data, the unlabelled field data of the shifted domains and the experts' outputs;
- (c) sequential: the domains arrive one after another (``absorb_sequence``), each strategy keeps
  one instance across the steps; forgetting of an absorbed domain = its accuracy right after its
  step minus at the end.

Reported per strategy: per-domain accuracy before/after and absorption = (v1 - v0) / (expert - v0),
forgetting on the general domain (points), wall seconds of the feedback step; medians with
[min, max] over seeds. Every absorb runs the same epochs and learning rate.

    python benchmarks/feedback.py            # 3 seeds, writes benchmarks/results/feedback.json
    python benchmarks/feedback.py --quick    # 1 seed, small data, few epochs (smoke run)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write

from crossfeed.data import load_suite
from crossfeed.feedback import absorb, absorb_sequence
from crossfeed.models import TorchClassifier
from crossfeed.spawn import finetune, spawn_experts

#: Setting (b): label -> (strategy, kwargs, experts: "distilled" small experts or "same_arch" fine-tuned copies).
DATA_FREE: dict[str, tuple[str, dict[str, Any], str]] = {
    "control (continued training)": ("continued_training", {}, "distilled"),
    "multi_teacher_kd (domain known)": ("multi_teacher_kd", {"domain_known": True}, "distilled"),
    "multi_teacher_kd (domain unknown)": ("multi_teacher_kd", {"domain_known": False}, "distilled"),
    "multi_teacher_kd (fine-tuned copies as experts)": ("multi_teacher_kd", {}, "same_arch"),
    "data_feedback": ("data_feedback", {"threshold": 0.8}, "distilled"),
    "ensemble_distill": ("ensemble_distill", {}, "distilled"),
    "multitask": ("multitask", {}, "distilled"),
    "transfer_init": ("transfer_init", {}, "same_arch"),
    "merge: average": ("merge", {"method": "average"}, "same_arch"),
    "merge: task arithmetic": ("merge", {"method": "task_arithmetic"}, "same_arch"),
    "merge: TIES": ("merge", {"method": "ties"}, "same_arch"),
    "ewc": ("ewc", {}, "distilled"),
    "lwf": ("lwf", {}, "distilled"),
    "replay": ("replay", {}, "distilled"),
}
#: Merging is also measured without any training (epochs 0): the merged weights as they are.
UNTRAINED = {"merge: average", "merge: task arithmetic", "merge: TIES"}
#: Setting (c): label -> (strategy, kwargs).
SEQUENTIAL: dict[str, tuple[str, dict[str, Any]]] = {
    "sequential_kd (no protection)": ("sequential_kd", {}),
    "multi_teacher_kd (general data every step)": ("multi_teacher_kd", {}),
    "data_feedback": ("data_feedback", {"threshold": 0.8}),
    "ewc": ("ewc", {}),
    "lwf": ("lwf", {}),
    "replay": ("replay", {}),
}


def _report_row(report: Any) -> dict[str, Any]:
    return {
        "domains": {d: {"acc_v0": r.acc_v0, "acc_expert": r.acc_expert, "acc_v1": r.acc_v1, "absorption": r.absorption}
                    for d, r in report.domains.items()},
        "forgetting": report.forgetting,
        "seconds": report.wall_seconds,
    }


def _sequence_row(report: Any) -> dict[str, Any]:
    domains = list(report.steps[0].domains)
    return {
        "order": report.order,
        "final": {d: report.accuracy(d) for d in domains},
        "initial": {d: report.initial(d) for d in domains},
        "forgetting": {d: report.forgetting(d) for d in [report.general_domain, *report.order]},
        "absorption": {d: report.absorption(d) for d in report.order},
        "mean_forgetting": report.mean_forgetting(),
        "seconds": report.wall_seconds,
    }


def run_seed(seed: int, n_per_domain: int, epochs: int, only: set[str] | None) -> dict[str, Any]:
    suite = load_suite("mnist1d", seed=seed, n_per_domain=n_per_domain)
    general = suite[suite.meta["general_domain"]]
    shifted = [n for n in suite.names if n != general.name]
    t0 = time.perf_counter()
    v0 = TorchClassifier("cnn1d", module_kwargs={"size": "large", "dropout": 0.2}, epochs=2 * epochs, lr=2e-3,
                         weight_decay=1e-2, patience=5, random_state=seed)
    v0.fit(general.X_train, general.y_train, X_val=general.X_val, y_val=general.y_val)
    seconds = {"v0": time.perf_counter() - t0}
    t0 = time.perf_counter()
    experts = {
        "distilled": spawn_experts(v0, suite, student="cnn1d:tiny", epochs=epochs, finetune_epochs=epochs,
                                   domains=shifted, random_state=seed),
    }
    seconds["experts_distilled"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    experts["same_arch"] = {n: finetune(v0, suite[n], epochs=epochs, random_state=seed + i) for i, n in enumerate(shifted)}
    seconds["experts_same_arch"] = time.perf_counter() - t0
    settings = {"epochs": epochs, "lr": 1e-3, "random_state": seed}

    out: dict[str, Any] = {"seed": seed, "setup_seconds": seconds, "a": {}, "b": {}, "c": {}}
    _, report = absorb(v0, experts["distilled"], suite, "joint_training", **settings)
    out["a"]["joint_training"] = _report_row(report)
    for label, (name, kwargs, kind) in DATA_FREE.items():
        if only and name not in only:
            continue
        _, report = absorb(v0, experts[kind], suite, name, **settings, params=kwargs)
        out["b"][label] = _report_row(report)
        if label in UNTRAINED:
            _, report = absorb(v0, experts[kind], suite, name, **{**settings, "epochs": 0}, params=kwargs)
            out["b"][f"{label}, no training"] = _report_row(report)
        print(f"  seed {seed} (b) {label}: mean shifted {np.mean([out['b'][label]['domains'][d]['acc_v1'] for d in shifted]):.4f}",
              flush=True)
    for label, (name, kwargs) in SEQUENTIAL.items():
        if only and name not in only:
            continue
        _, seq = absorb_sequence(v0, experts["distilled"], suite, name, order=shifted, **settings, params=kwargs)
        out["c"][label] = _sequence_row(seq)
        print(f"  seed {seed} (c) {label}: mean forgetting {out['c'][label]['mean_forgetting']:.4f}", flush=True)
    out["experts"] = {kind: {n: float(np.mean(m.predict(suite[n].X_test) == suite[n].y_test)) for n, m in e.items()}
                      for kind, e in experts.items()}
    out["v0"] = {d.name: float(np.mean(v0.predict(d.X_test) == d.y_test)) for d in suite}
    return out


def _summarise(runs: list[dict[str, Any]], shifted: list[str], general: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for setting in ("a", "b"):
        for label in runs[0][setting]:
            rows = [r[setting][label] for r in runs]
            per_domain = {}
            for d in [general, *shifted]:
                v1 = [row["domains"][d]["acc_v1"] for row in rows]
                gain = [row["domains"][d]["acc_v1"] - row["domains"][d]["acc_v0"] for row in rows]
                absorption = [row["domains"][d]["absorption"] for row in rows if row["domains"][d]["absorption"] is not None]
                per_domain[d] = {"acc_v1": summary(v1), "gain": summary(gain),
                                 "absorption": summary(absorption) if absorption else None}
            mean_shifted = [np.mean([row["domains"][d]["acc_v1"] for d in shifted]) for row in rows]
            raised = all(per_domain[d]["gain"]["median"] > per_domain[d]["acc_v1"]["max"] - per_domain[d]["acc_v1"]["min"]
                         and per_domain[d]["gain"]["min"] > 0 for d in shifted)
            forgetting = [row["forgetting"] for row in rows]
            table[f"({setting}) {label}"] = {
                "setting": setting, "domains": per_domain, "mean_shifted_accuracy": summary(mean_shifted),
                "forgetting": summary(forgetting), "seconds": summary([row["seconds"] for row in rows]),
                "raises_every_shifted_domain_beyond_spread": bool(raised),
                "forgets_less_than_1_point": bool(max(forgetting) < 0.01),
                "absorption_at_least_1_everywhere": bool(all(
                    per_domain[d]["absorption"] is not None and per_domain[d]["absorption"]["min"] >= 1 for d in shifted)),
            }
    for label in runs[0]["c"]:
        rows = [r["c"][label] for r in runs]
        table[f"(c) {label}"] = {
            "setting": "c",
            "final_mean_shifted_accuracy": summary([np.mean([row["final"][d] for d in shifted]) for row in rows]),
            "mean_forgetting": summary([row["mean_forgetting"] for row in rows]),
            "general_forgetting": summary([row["forgetting"][general] for row in rows]),
            "absorption": {d: summary([row["absorption"][d] for row in rows if row["absorption"][d] is not None])
                           for d in shifted if any(row["absorption"][d] is not None for row in rows)},
            "seconds": summary([row["seconds"] for row in rows]),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-domain", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--only", nargs="*", help="strategy names to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 800 samples per domain, 3 epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.n_per_domain, args.epochs = [0], 800, 3
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        runs.append(run_seed(seed, args.n_per_domain, args.epochs, set(args.only) if args.only else None))
    suite = load_suite("mnist1d", seed=args.seeds[0], n_per_domain=args.n_per_domain)
    general = suite.meta["general_domain"]
    shifted = [n for n in suite.names if n != general]
    payload = {
        "benchmark": "feedback", "suite": "mnist1d", "seeds": args.seeds, "n_per_domain": args.n_per_domain,
        "epochs": args.epochs, "machine": machine(), "seconds": round(time.perf_counter() - start, 1),
        "general_domain": general, "shifted_domains": shifted,
        "v0": {d: summary([r["v0"][d] for r in runs]) for d in suite.names},
        "experts": {kind: {d: summary([r["experts"][kind][d] for r in runs]) for d in shifted}
                    for kind in runs[0]["experts"]},
        "table": _summarise(runs, shifted, general), "runs": runs,
    }
    name = "feedback-quick" if args.quick else ("feedback" if not args.only else "feedback-partial")
    print(f"wrote {write(name, payload)} in {payload['seconds']} s")


if __name__ == "__main__":
    main()
