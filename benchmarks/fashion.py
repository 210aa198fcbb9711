"""Fashion benchmark: the ``fashion`` image suite through combine, spawn and feedback (BENCHMARKS.md).

Data: Fashion-MNIST, five disjoint domains (plain, rotated, noisy, inverted, blurred) of
``--n-per-domain`` images each (train 50%, val 12.5%, test 25%, field 12.5%); see
``crossfeed.data.load_suite("fashion")``. Every torch model trains with AdamW, lr 3e-3, weight
decay 1e-2, batch 128, one thread.

- combine: members trained on the pooled training data: ``large_cnn`` (cnn2d large, dropout 0.2,
  early stopping on the pooled validation loss), ``tiny_cnn`` (cnn2d tiny), ``logistic``
  (standardised pixels, logistic regression) and ``features_head`` (a standardised logistic
  regression on the large CNN's trunk features: the large model extracts features, the small
  model classifies). Combiners (mean, weighted, caruana, stacking, and a cascade tiny -> large
  calibrated to the large model's validation accuracy) are fitted on the pooled validation data
  with the members frozen (``crossfeed.experiments._demo.combine_and_evaluate``); all scored on the pooled
  test set and per domain.
- spawn: a tiny CNN distilled from the large one (T=4, alpha=0.9, pooled field data as transfer
  data) against the same tiny CNN from scratch (the ``tiny_cnn`` member: same epochs, no early
  stopping for either); retention = accuracy / teacher accuracy.
- feedback: v0 = cnn2d large trained on the plain domain only; one cnn2d small expert per shifted
  domain trained on that domain; ``absorb`` with ``multi_teacher_kd`` and ``data_feedback`` and
  the control (continued training on the plain data), same epochs and lr; absorption per domain.
- reference: the published Fashion-MNIST figures (Xiao, Rasul & Vollgraf 2017, arXiv 1708.07747,
  and the benchmark table of github.com/zalandoresearch/fashion-mnist: logistic regression about
  0.84, CNNs 0.88-0.93) are for 60,000 training images and the official 10,000 test images. The
  table sets them beside each member's accuracy on the plain domain's test images, trained on the
  five pooled domains and trained on the plain domain alone (the large one is the feedback v0).
  ``--official`` instead trains the logistic regression and the large CNN with the published
  protocol (``benchmarks/results/fashion-official.json``).

    python benchmarks/fashion.py                  # seed 0, writes benchmarks/results/fashion.json
    python benchmarks/fashion.py --seeds 0 1 2    # three seeds
    python benchmarks/fashion.py --official       # only the published protocol (60k / 10k)
    python benchmarks/fashion.py --quick          # smoke run: small data, 1-2 epochs
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crossfeed.data import load_suite
from crossfeed.experiments._demo import LARGE, SMALL, combine_and_evaluate, evaluate_model
from crossfeed.feedback import FeedbackStrategy, absorb
from crossfeed.models import TorchClassifier
from crossfeed.models._features import feature_head
from crossfeed.spawn import Distiller

#: Published accuracies (official split: 60,000 train, 10,000 test) shown beside our plain-domain figures.
REFERENCE = {
    LARGE: "88-93 (CNNs)",
    SMALL: "88-93 (CNNs)",
    "logistic": "~84 (logistic regression)",
    "features_head": "-",
}
SOURCE = ("Xiao, Rasul & Vollgraf 2017 (arXiv 1708.07747) and the zalandoresearch/fashion-mnist benchmark table; "
          "60,000 training images, the official 10,000 test images")
FIT = {"lr": 3e-3, "weight_decay": 1e-2}
STRATEGIES = ("continued_training", "multi_teacher_kd", "data_feedback")


def cnn(size: str, epochs: int, seed: int, *, patience: int | None = None, dropout: float = 0.0) -> TorchClassifier:
    return TorchClassifier("cnn2d", module_kwargs={"size": size, "dropout": dropout}, epochs=epochs,
                           patience=patience, random_state=seed, **FIT)


def logistic(max_iter: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))


def train_members(suite, seed: int, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float]]:
    """The four members on the pooled training data, and their fit seconds."""
    X, y = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    seconds: dict[str, float] = {}
    members: dict[str, Any] = {}
    specs = {
        LARGE: lambda: cnn("large", args.epochs, seed, patience=3, dropout=0.2).fit(X, y, X_val=X_val, y_val=y_val),
        SMALL: lambda: cnn("tiny", args.small_epochs, seed).fit(X, y),
        "logistic": lambda: logistic(args.max_iter).fit(X, y),
        "features_head": lambda: feature_head(members[LARGE], LogisticRegression(max_iter=args.max_iter)).fit(X, y),
    }
    for name, fit in specs.items():
        t0 = time.perf_counter()
        members[name] = fit()
        seconds[name] = time.perf_counter() - t0
    return members, seconds


def combine_section(suite, seed: int, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    members, fit_s = train_members(suite, seed, args)
    records, cascade, _ = combine_and_evaluate(members, fit_s, suite, seed=seed)
    best_member = max((r for r in records.values() if r["kind"] == "member"), key=lambda r: r["accuracy"])
    best_comb = max((r for r in records.values() if r["kind"] == "combiner"), key=lambda r: r["accuracy"])
    out = {
        "records": records, "cascade": cascade, "best_member": best_member["name"], "best_combiner": best_comb["name"],
        "ensemble_gain_points": 100 * (best_comb["accuracy"] - best_member["accuracy"]),
    }
    return out, members


def spawn_section(suite, members: dict[str, Any], seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """A distilled tiny CNN against the same tiny CNN trained from scratch (the ``tiny_cnn`` member)."""
    X, y = suite.pooled("train")
    X_field = np.concatenate([d.X_field for d in suite])
    t0 = time.perf_counter()
    distilled = Distiller(members[LARGE], cnn("tiny", args.small_epochs, seed), temperature=4.0, alpha=0.9).fit(
        X, y, X_transfer=X_field
    ).student_
    seconds = time.perf_counter() - t0
    teacher = evaluate_model(LARGE, members[LARGE], suite, kind="teacher", fit_s=0.0)
    rows = {"teacher": teacher,
            "scratch": evaluate_model("scratch", members[SMALL], suite, kind="student", fit_s=0.0),
            "distilled": evaluate_model("distilled", distilled, suite, kind="student", fit_s=seconds)}
    for row in rows.values():
        row["retention"] = row["accuracy"] / teacher["accuracy"]
        row["param_share"] = row["params"] / teacher["params"]
        row["flops_share"] = row["flops_per_sample"] / teacher["flops_per_sample"]
        row["speedup_batch1"] = teacher["latency_batch1_s"] / row["latency_batch1_s"]
        row["speedup_batch256"] = teacher["latency_batch256_s"] / row["latency_batch256_s"]
    return rows


def plain_models(suite, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Models trained on the plain domain only (closest to the published protocol, with less data).

    The large CNN is also the feedback section's v0.
    """
    plain = suite[suite.meta["general_domain"]]
    data = (plain.X_train, plain.y_train)
    val = {"X_val": plain.X_val, "y_val": plain.y_val}
    return {
        LARGE: cnn("large", args.v0_epochs, seed, patience=3, dropout=0.2).fit(*data, **val),
        SMALL: cnn("tiny", args.small_epochs, seed).fit(*data),
        "logistic": logistic(args.max_iter).fit(*data),
    }


def reference_section(suite, runs_combine: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """Plain-domain test accuracy of each member trained on the pooled domains and on the plain domain alone."""
    test = suite[suite.meta["general_domain"]]
    out = {}
    for name, record in runs_combine["records"].items():
        if record["kind"] != "member":
            continue
        row = {"pooled_training": record["domains"]["plain"]["accuracy"]}
        if name in plain:
            row["plain_training"] = float(np.mean(plain[name].predict(test.X_test) == test.y_test))
        out[name] = row
    return out


def feedback_section(suite, v0: TorchClassifier, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One expert per shifted domain, then each strategy and the control teach ``v0`` (plain-only large CNN)."""
    general = suite[suite.meta["general_domain"]]
    t0 = time.perf_counter()
    experts = {
        d.name: cnn("small", args.v0_epochs, seed + 1, patience=3).fit(d.X_train, d.y_train, X_val=d.X_val, y_val=d.y_val)
        for d in suite if d.name != general.name
    }
    out: dict[str, Any] = {"experts_seconds": time.perf_counter() - t0, "strategies": {}}
    for name in STRATEGIES:
        strategy = FeedbackStrategy() if name == "continued_training" else name
        _, report = absorb(v0, experts, suite, strategy, epochs=args.absorb_epochs, lr=1e-3, random_state=seed)
        out["strategies"][name] = {
            "domains": {d: vars(f) for d, f in report.domains.items()},
            "mean_acc_v0": report.mean("acc_v0"), "mean_acc_v1": report.mean("acc_v1"),
            "mean_acc_expert": report.mean("acc_expert"),
            "mean_absorption": float(np.mean([f.absorption for n, f in report.domains.items()
                                              if n != report.general_domain and f.absorption is not None])),
            "forgetting": report.forgetting, "wall_seconds": report.wall_seconds,
            "info": {k: v for k, v in report.info.items() if isinstance(v, dict)},
        }
    return out


def official_section(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The published protocol: train on the official 60,000 images, test on the official 10,000."""
    from crossfeed.data._fashion import load_fashion_official

    X, y, X_test, y_test = load_fashion_official()
    out = {}
    for name, model in ((LARGE, cnn("large", args.official_epochs, seed, dropout=0.2)),
                        ("logistic", logistic(args.max_iter))):
        t0 = time.perf_counter()
        model.fit(X, y)
        out[name] = {"accuracy": float(np.mean(model.predict(X_test) == y_test)), "fit_seconds": time.perf_counter() - t0}
        print(f"seed {seed}, published protocol, {name}: {out[name]['accuracy']:.4f} "
              f"({out[name]['fit_seconds']:.0f} s)", flush=True)
    return out


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    suite = load_suite("fashion", seed=seed, n_per_domain=args.n_per_domain)
    run: dict[str, Any] = {"seed": seed, "seconds": {}, "cpu_seconds": {}}

    def timed(section: str, fn: Any, *a: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn(*a)
        run["seconds"][section], run["cpu_seconds"][section] = time.perf_counter() - t0, time.process_time() - c0
        return result

    run["combine"], members = timed("combine", combine_section, suite, seed, args)
    run["spawn"] = timed("spawn", spawn_section, suite, members, seed, args)
    plain = timed("plain_models", plain_models, suite, seed, args)
    run["reference"] = reference_section(suite, run["combine"], plain)
    run["feedback"] = timed("feedback", feedback_section, suite, plain[LARGE], seed, args)
    return run


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians with the spread over seeds of every figure the tables print."""
    rec_keys = ("accuracy", "nll", "ece", "params", "flops_per_sample", "latency_batch1_s", "latency_batch256_s",
                "fit_seconds")
    combine = {}
    for name, first in runs[0]["combine"]["records"].items():
        rows = [r["combine"]["records"][name] for r in runs]
        combine[name] = {k: summary([row[k] for row in rows]) for k in rec_keys}
        combine[name]["kind"] = first["kind"]
        combine[name]["plain_accuracy"] = summary([row["domains"]["plain"]["accuracy"] for row in rows])
    cascade_keys = ("accuracy", "large_accuracy", "gap_points", "escalation_rate", "flops_fraction",
                    "latency_fraction_batch1", "latency_fraction_batch256", "cost_to_match_flops_fraction",
                    "normalized_auc")
    cascade = {k: summary([r["combine"]["cascade"][k] for r in runs if r["combine"]["cascade"][k] is not None])
               for k in cascade_keys if any(r["combine"]["cascade"][k] is not None for r in runs)}
    spawn_keys = ("accuracy", "retention", "param_share", "flops_share", "speedup_batch1", "speedup_batch256")
    spawn = {name: {k: summary([r["spawn"][name][k] for r in runs]) for k in spawn_keys} for name in runs[0]["spawn"]}
    feedback = {}
    for strat in STRATEGIES:
        per = [r["feedback"]["strategies"][strat] for r in runs]
        feedback[strat] = {k: summary([p[k] for p in per]) for k in
                           ("mean_acc_v0", "mean_acc_v1", "mean_acc_expert", "mean_absorption", "forgetting")}
        feedback[strat]["domains"] = {
            d: {k: summary([p["domains"][d][k] for p in per]) for k in ("acc_v0", "acc_expert", "acc_v1", "absorption")
                if all(p["domains"][d][k] is not None for p in per)}
            for d in per[0]["domains"]
        }
    reference = {name: {k: summary([r["reference"][name][k] for r in runs]) for k in row}
                 for name, row in runs[0]["reference"].items()}
    gain = summary([r["combine"]["ensemble_gain_points"] for r in runs])
    return {"combine": combine, "cascade": cascade, "ensemble_gain_points": gain, "spawn": spawn, "feedback": feedback,
            "reference": reference}


def _m(s: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    if s["n"] == 1:
        return f"{scale * s['median']:.{digits}f}"
    return f"{scale * s['median']:.{digits}f} [{scale * s['min']:.{digits}f}, {scale * s['max']:.{digits}f}]"


def markdown(table: dict[str, Any]) -> str:
    head = ("| member | trained on the 5 pooled domains: plain test acc % | trained on plain only: plain test acc % "
            "| published (60k train, official 10k test) % |")
    lines = [head, "|---" * 4 + "|"]
    for name, row in table["reference"].items():
        plain_only = _m(row["plain_training"]) if "plain_training" in row else "-"
        lines.append(f"| {name} | {_m(row['pooled_training'])} | {plain_only} | {REFERENCE[name]} |")
    lines += ["", "| model | kind | pooled test acc % | plain test acc % | NLL | ECE | params | FLOPs/sample |",
              "|---" * 8 + "|"]
    for name, row in table["combine"].items():
        lines.append(f"| {name} | {row['kind']} | {_m(row['accuracy'])} | {_m(row['plain_accuracy'])} | "
                     f"{row['nll']['median']:.3f} | {row['ece']['median']:.3f} | {row['params']['median']:,.0f} | "
                     f"{row['flops_per_sample']['median'] / 1e6:.2f}M |")
    c = table["cascade"]
    lines += ["", f"ensemble gain (best combiner - best member): {_m(table['ensemble_gain_points'], 1.0, 2)} points",
              f"cascade tiny -> large: accuracy {_m(c['accuracy'])}% vs large {_m(c['large_accuracy'])}%, escalates "
              f"{_m(c['escalation_rate'])}%, FLOPs {_m(c['flops_fraction'])}% of the large model's, "
              f"latency b1 {_m(c['latency_fraction_batch1'])}% / b256 {_m(c['latency_fraction_batch256'])}%"
              + (f"; cost to match (within 0.1 pt): {_m(c['cost_to_match_flops_fraction'])}% of FLOPs"
                 if "cost_to_match_flops_fraction" in c else "; cost to match: never within 0.1 pt"),
              "", "| student | accuracy % | retention % | params share % | FLOPs share % | speed-up b1 | speed-up b256 |",
              "|---" * 7 + "|"]
    for name, row in table["spawn"].items():
        lines.append(f"| {name} | {_m(row['accuracy'])} | {_m(row['retention'])} | {_m(row['param_share'])} | "
                     f"{_m(row['flops_share'])} | {_m(row['speedup_batch1'], 1.0, 2)}x | {_m(row['speedup_batch256'], 1.0, 2)}x |")
    domains = [d for d in table["feedback"]["multi_teacher_kd"]["domains"] if d != "plain"]
    lines += ["", "| feedback | " + " | ".join(f"{d} v0 -> v1 (expert), absorption" for d in domains)
              + " | mean absorption | forgetting (plain) pts |", "|---" * (len(domains) + 3) + "|"]
    for strat, row in table["feedback"].items():
        cells = []
        for d in domains:
            r = row["domains"][d]
            ab = _m(r["absorption"], 1.0, 2) if "absorption" in r else "-"
            cells.append(f"{_m(r['acc_v0'])} -> {_m(r['acc_v1'])} ({_m(r['acc_expert'])}), {ab}")
        lines.append(f"| {strat} | " + " | ".join(cells) + f" | {_m(row['mean_absorption'], 1.0, 2)} | "
                     f"{_m(row['forgetting'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-per-domain", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=8, help="large CNN (early stopping, patience 3)")
    parser.add_argument("--small-epochs", type=int, default=15, help="tiny CNN, scratch and distilled (no early stopping)")
    parser.add_argument("--v0-epochs", type=int, default=15, help="feedback v0 and experts (early stopping)")
    parser.add_argument("--absorb-epochs", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=300, help="logistic regressions (lbfgs)")
    parser.add_argument("--official", action="store_true", help="run only the published protocol (60k train / 10k test)")
    parser.add_argument("--official-epochs", type=int, default=2, help="large CNN epochs in --official")
    parser.add_argument("--quick", action="store_true", help="one seed, 400 images per domain, 1-2 epochs")
    args = parser.parse_args()
    if args.quick:  # with --official: 1 epoch and 50 lbfgs iterations on the full 60k
        args.seeds, args.n_per_domain, args.epochs, args.small_epochs = [0], 400, 1, 2
        args.v0_epochs, args.absorb_epochs, args.max_iter, args.official_epochs = 2, 1, 50, 1
    torch.set_num_threads(1)
    # lbfgs is capped at --max-iter iterations on purpose (time budget); its warning is noise here.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    if args.official:
        return run_official(args)
    t_start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs.append(run_seed(seed, args))
        comb = runs[-1]["combine"]
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s, best member {comb['best_member']}, best combiner "
              f"{comb['best_combiner']}, gain {comb['ensemble_gain_points']:+.2f} points", flush=True)
    table = aggregate(runs)
    payload = {
        "benchmark": "fashion", "suite": "fashion", "command": _command(args), "settings": vars(args),
        "reference": {"source": SOURCE, "figures_percent": REFERENCE}, "machine": machine(),
        "seconds": time.perf_counter() - t_start, "cpu_seconds": time.process_time(), "table": table, "runs": runs,
    }
    path = write("fashion-quick" if args.quick else "fashion", payload)
    print(markdown(table))
    print(f"total {payload['seconds']:.0f} s ({payload['cpu_seconds']:.0f} s CPU); wrote {path}")


def run_official(args: argparse.Namespace) -> None:
    """The published protocol only: official 60,000 training and 10,000 test images."""
    t_start = time.perf_counter()
    runs = [{"seed": seed, **official_section(seed, args)} for seed in args.seeds]
    table = {name: {k: summary([r[name][k] for r in runs]) for k in ("accuracy", "fit_seconds")}
             for name in (LARGE, "logistic")}
    payload = {
        "benchmark": "fashion-official", "command": _command(args), "settings": vars(args),
        "reference": {"source": SOURCE, "figures_percent": REFERENCE}, "machine": machine(),
        "seconds": time.perf_counter() - t_start, "cpu_seconds": time.process_time(), "table": table, "runs": runs,
    }
    path = write("fashion-official-quick" if args.quick else "fashion-official", payload)
    print("| model | official test acc % | published % | fit s |\n|---|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | {_m(row['accuracy'])} | {REFERENCE[name]} | {row['fit_seconds']['median']:.0f} |")
    print(f"total {payload['seconds']:.0f} s ({payload['cpu_seconds']:.0f} s CPU); wrote {path}")


def _command(args: argparse.Namespace) -> str:
    parts = ["python benchmarks/fashion.py"]
    if args.quick:
        parts.append("--quick")
    elif args.seeds != [0]:
        parts.append("--seeds " + " ".join(map(str, args.seeds)))
    if args.official:
        parts.append("--official")
    return " ".join(parts)

if __name__ == "__main__":
    main()
