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

Field-size curve (``--field-sizes``): how much each strategy of setting (b) absorbs when the
field data is scarce. v0 and the experts are trained once per seed on the full suite (by default
``n_per_domain = 8 x`` the largest size, so that every domain holds that many field samples); then
every strategy of setting (b) runs with only the first ``n`` field samples of each shifted domain
(as the cycle's field batches take them), for each ``n``. ``multi_teacher_kd`` and
``ensemble_distill`` also run with the scarce-field top-up switched off (``field_share: 0``).

    python benchmarks/feedback.py            # 3 seeds, writes benchmarks/results/feedback.json
    python benchmarks/feedback.py --quick    # 1 seed, small data, few epochs (smoke run)
    python benchmarks/feedback.py --field-sizes 50 200 1000   # 3 seeds, results/feedback-field-sizes.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write

from crossfeed.data import DomainSuite, load_suite
from crossfeed.exceptions import CrossfeedError
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
#: The field-size curve also runs these with the scarce-field top-up switched off.
NO_TOP_UP: dict[str, tuple[str, dict[str, Any], str]] = {
    "multi_teacher_kd (domain known), no top-up": ("multi_teacher_kd", {"domain_known": True, "field_share": 0.0},
                                                   "distilled"),
    "ensemble_distill, no top-up": ("ensemble_distill", {"field_share": 0.0}, "distilled"),
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


def _setup(seed: int, n_per_domain: int, epochs: int,
           same_arch: bool = True) -> tuple[DomainSuite, Any, dict[str, Any], dict[str, float]]:
    """The suite, v0 (general domain only), both kinds of experts (only the distilled ones without
    ``same_arch``), and the seconds each took."""
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
    if not same_arch:
        return suite, v0, experts, seconds
    t0 = time.perf_counter()
    experts["same_arch"] = {n: finetune(v0, suite[n], epochs=epochs, random_state=seed + i) for i, n in enumerate(shifted)}
    seconds["experts_same_arch"] = time.perf_counter() - t0
    return suite, v0, experts, seconds


def _accuracies(suite: DomainSuite, v0: Any, experts: dict[str, Any]) -> dict[str, Any]:
    return {
        "experts": {kind: {n: float(np.mean(m.predict(suite[n].X_test) == suite[n].y_test)) for n, m in e.items()}
                    for kind, e in experts.items()},
        "v0": {d.name: float(np.mean(v0.predict(d.X_test) == d.y_test)) for d in suite},
    }


def run_seed(seed: int, n_per_domain: int, epochs: int, only: set[str] | None) -> dict[str, Any]:
    suite, v0, experts, seconds = _setup(seed, n_per_domain, epochs)
    shifted = [n for n in suite.names if n != suite.general_domain]
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
    out.update(_accuracies(suite, v0, experts))
    return out


def first_field(suite: DomainSuite, n: int, domains: list[str]) -> DomainSuite:
    """``suite`` with only the first ``n`` field samples of ``domains`` (the others as they are)."""
    out = []
    for d in suite:
        if d.name in domains:
            if d.X_field is None or len(d.X_field) < n:
                raise SystemExit(f"domain {d.name!r} has {0 if d.X_field is None else len(d.X_field)} field samples, "
                                 f"fewer than {n}; raise --n-per-domain (the field split is 1/8 of it)")
            d = dataclasses.replace(d, X_field=d.X_field[:n], y_field=None if d.y_field is None else d.y_field[:n])
        out.append(d)
    return DomainSuite.from_domains(suite.name, out, meta=suite.meta)


def run_field_sizes(seed: int, n_per_domain: int, epochs: int, sizes: list[int],
                    only: set[str] | None) -> dict[str, Any]:
    """Every strategy of setting (b) (and the no-top-up variants) at each field size, one seed."""
    suite, v0, experts, seconds = _setup(seed, n_per_domain, epochs)
    shifted = [n for n in suite.names if n != suite.general_domain]
    settings = {"epochs": epochs, "lr": 1e-3, "random_state": seed}
    out: dict[str, Any] = {"seed": seed, "setup_seconds": seconds, "sizes": {}, "refused": {}}
    for size in sizes:
        scarce = first_field(suite, size, shifted)
        rows: dict[str, Any] = {}
        for label, (name, kwargs, kind) in {**DATA_FREE, **NO_TOP_UP}.items():
            if only and name not in only:
                continue
            try:
                _, report = absorb(v0, experts[kind], scarce, name, **settings, params=kwargs)
            except CrossfeedError as exc:  # e.g. ewc: too few field samples to show every class
                out["refused"].setdefault(str(size), {})[label] = str(exc)
                print(f"  seed {seed} field {size} {label}: refused ({type(exc).__name__})", flush=True)
                continue
            rows[label] = {**_report_row(report), "field_rows_added": report.info.get("field_rows_added")}
            if label in UNTRAINED:
                _, report = absorb(v0, experts[kind], scarce, name, **{**settings, "epochs": 0}, params=kwargs)
                rows[f"{label}, no training"] = _report_row(report)
            print(f"  seed {seed} field {size} {label}: pooled absorption {_pooled(rows[label], shifted):.3f}", flush=True)
        out["sizes"][str(size)] = rows
    out.update(_accuracies(suite, v0, experts))
    return out


def _pooled(row: dict[str, Any], shifted: list[str]) -> float:
    """The experts' summed lead taken over: sum of gains / sum of leads, over the domains where the expert leads."""
    lead = [d for d in shifted if row["domains"][d]["absorption"] is not None]
    if not lead:
        return float("nan")
    gain = sum(row["domains"][d]["acc_v1"] - row["domains"][d]["acc_v0"] for d in lead)
    return gain / sum(row["domains"][d]["acc_expert"] - row["domains"][d]["acc_v0"] for d in lead)


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
    parser.add_argument("--n-per-domain", type=int, default=None,
                        help="samples per domain (default 4000; with --field-sizes 8 x the largest size)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--only", nargs="*", help="strategy names to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 800 samples per domain, 3 epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    parser.add_argument("--field-sizes", type=int, nargs="+", metavar="N",
                        help="run the field-size curve of setting (b) instead: N field samples per shifted domain")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.n_per_domain, args.epochs = [0], 800, 3
    if args.field_sizes:
        if args.quick:
            args.field_sizes = [n for n in args.field_sizes if 8 * n <= args.n_per_domain] or [20, 50]
        field_curve(args)
        return
    args.n_per_domain = args.n_per_domain or 4000
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


def field_curve(args: argparse.Namespace) -> None:
    """The field-size curve: every strategy of setting (b) at each of ``args.field_sizes``."""
    sizes = sorted(set(args.field_sizes))
    n_per_domain = args.n_per_domain or 8 * max(sizes)
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        runs.append(run_field_sizes(seed, n_per_domain, args.epochs, sizes, set(args.only) if args.only else None))
    suite = load_suite("mnist1d", seed=args.seeds[0], n_per_domain=n_per_domain)
    general = suite.meta["general_domain"]
    shifted = [n for n in suite.names if n != general]
    curve: dict[str, Any] = {}
    for size in sizes:
        # a strategy that refused this size on some seed is listed under "refused", not summarised
        done = [label for label in runs[0]["sizes"][str(size)] if all(label in r["sizes"][str(size)] for r in runs)]
        size_runs = [{"a": {}, "b": {label: r["sizes"][str(size)][label] for label in done}, "c": {}} for r in runs]
        table = _summarise(size_runs, shifted, general)
        for label in done:
            table[f"(b) {label}"]["pooled_absorption"] = summary(
                [_pooled(r["sizes"][str(size)][label], shifted) for r in runs])
        curve[str(size)] = table
    payload = {
        "benchmark": "feedback-field-sizes", "suite": "mnist1d", "seeds": args.seeds, "n_per_domain": n_per_domain,
        "field_sizes": sizes, "general_training_rows": len(suite[general].X_train), "epochs": args.epochs,
        "machine": machine(), "seconds": round(time.perf_counter() - start, 1),
        "general_domain": general, "shifted_domains": shifted,
        "v0": {d: summary([r["v0"][d] for r in runs]) for d in suite.names},
        "experts": {kind: {d: summary([r["experts"][kind][d] for r in runs]) for d in shifted}
                    for kind in runs[0]["experts"]},
        "curve": curve, "runs": runs,
    }
    for label in dict.fromkeys(label for size in sizes for label in curve[str(size)]):
        cells = "  ".join(f"{size}: {curve[str(size)][label]['pooled_absorption']['median']:+.3f}"
                          if label in curve[str(size)] else f"{size}: refused" for size in sizes)
        print(f"{label:55s} pooled absorption {cells}")
    name = "feedback-field-sizes" + ("-quick" if args.quick else "-partial" if args.only else "")
    print(f"wrote {write(name, payload)} in {payload['seconds']} s")


if __name__ == "__main__":
    main()
