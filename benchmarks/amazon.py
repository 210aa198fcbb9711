"""Text benchmark on the ``amazon`` suite (BENCHMARKS.md: combine, spawn and feedback on text).

Data: the Blitzer et al. (ACL 2007) reviews, books / dvd / electronics / kitchen, 2000 each, split
per domain 50% train, 12.5% val, 25% test, 12.5% unlabelled field data; one vocabulary, so every
model reads the same rows of word ids. Per seed:

- members, trained on the pooled training data (early stopping on the pooled val data): the large
  model, MiniLM (all-MiniLM-L6-v2, frozen, embeddings cached on disk) + a linear head; the small
  models, a bidirectional LSTM and TF-IDF (1-2 grams) + logistic regression; plus one of each per
  domain, trained on that domain only (the in-domain figures next to the published ones);
- combine: mean, weighted (simplex, calibrated), stacking over the three members and over the
  MiniLM + LSTM pair, fitted on the pooled val data with the members frozen; a cascade LSTM ->
  MiniLM whose threshold reaches MiniLM's val accuracy at the lowest FLOPs; cost to match;
- students: an LSTM distilled from MiniLM (pooled train + field data as transfer data) against
  the same LSTM from scratch: retention = student / teacher accuracy;
- feedback: MiniLM v0 trained on the general domain (books) only, one TF-IDF expert per other
  domain; every registered strategy that fits a frozen-encoder model runs through ``absorb``.

The published reference, TF-IDF + LR 5-fold in-domain (81.3 / 83.7 / 84.6 / 87.8), is reproduced
once on the same files with crossfeed's tokenizer (``reference_reproduced``) and printed in the
same table as every in-domain figure.

    python benchmarks/amazon.py            # 3 seeds; writes benchmarks/results/amazon.json
    python benchmarks/amazon.py --quick    # 1 seed, 200 reviews per domain, few epochs (smoke run)

The first run embeds the ~8000 reviews with MiniLM on the CPU (about 15 minutes on one busy
core) into ``$CROSSFEED_CACHE/embeddings``; later runs read them from there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.model_selection import StratifiedKFold, cross_val_score

from crossfeed.combine import Cascade, MeanEnsemble, StackingEnsemble, WeightedEnsemble
from crossfeed.combine._cascade_search import candidate_thresholds, cascade_outcomes
from crossfeed.combine._confidence import CONFIDENCE_RULES
from crossfeed.data import DomainSuite, load_suite
from crossfeed.data._amazon import AMAZON_REFERENCE, read_amazon_domain
from crossfeed.evaluate import cost_to_match, label_indices, normalized_auc, score_all
from crossfeed.exceptions import CrossfeedError
from crossfeed.feedback import absorb
from crossfeed.models import (
    TorchClassifier,
    count_params,
    flops_per_sample,
    measure_latency,
)
from crossfeed.models._sentence_encoder import sentence_encoder_classifier
from crossfeed.models._text import Vocabulary
from crossfeed.models._tfidf import TfidfClassifier
from crossfeed.spawn import Distiller

DATA = Path(os.environ.get("CROSSFEED_AMAZON_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "amazon")
DOMAINS = ["books", "dvd", "electronics", "kitchen"]
GENERAL = "books"
LSTM_KWARGS = {"size": "small", "max_tokens": 256}
FEEDBACK = ["continued_training", "joint_training", "data_feedback", "multi_teacher_kd", "ensemble_distill", "multitask"]


# -- models ----------------------------------------------------------------------------------
def make_lstm(suite: DomainSuite, seed: int, epochs: int) -> TorchClassifier:
    return TorchClassifier("lstm", module_kwargs={"vocab_size": suite.meta["vocab_size"], **LSTM_KWARGS},
                           epochs=epochs, lr=5e-3, batch_size=64, patience=3, random_state=seed)


def make_minilm(suite: DomainSuite, seed: int, epochs: int) -> TorchClassifier:
    return sentence_encoder_classifier(suite.meta["vocabulary"], epochs=epochs, patience=5, random_state=seed)


def fit(model: Any, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> tuple[Any, float]:
    t0 = time.perf_counter()
    if isinstance(model, TorchClassifier):
        model.fit(X, y, X_val=X_val, y_val=y_val)
    else:
        model.fit(X, y)
    return model, time.perf_counter() - t0


def train_members(suite: DomainSuite, seed: int, epochs: int) -> tuple[dict, dict, dict]:
    """Pooled members, per-domain models and their fit seconds."""
    X, y = suite.pooled("train")
    Xv, yv = suite.pooled("val")
    seconds: dict[str, float] = {}
    pooled: dict[str, Any] = {}
    for name, model in [("minilm", make_minilm(suite, seed, 4 * epochs)), ("lstm", make_lstm(suite, seed, epochs)),
                        ("tfidf", TfidfClassifier())]:
        pooled[name], seconds[name] = fit(model, X, y, Xv, yv)
        print(f"  {name}: {seconds[name]:.1f} s", flush=True)
    per_domain: dict[str, dict[str, Any]] = {}
    for d in suite:
        per_domain[d.name] = {}
        for name, model in [("minilm", make_minilm(suite, seed, 4 * epochs)), ("lstm", make_lstm(suite, seed, epochs)),
                            ("tfidf", TfidfClassifier())]:
            per_domain[d.name][name], seconds[f"{name}_{d.name}"] = fit(model, d.X_train, d.y_train, d.X_val, d.y_val)
    return pooled, per_domain, seconds


# -- measurements ----------------------------------------------------------------------------
def scores(model: Any, suite: DomainSuite) -> dict[str, Any]:
    """Pooled accuracy / NLL / ECE on the test data, and accuracy per domain."""
    probas = {d.name: model.predict_proba(d.X_test) for d in suite}
    y_test = suite.pooled("test")[1]
    pooled = score_all(label_indices(y_test, suite.classes), np.concatenate(list(probas.values())))
    domains = {d.name: float(np.mean(suite.classes[probas[d.name].argmax(1)] == d.y_test)) for d in suite}
    return {**pooled, "domains": domains}


def mean_flops(model: Any, X: np.ndarray, n: int = 32) -> float:
    """FLOPs per sample averaged over ``n`` rows (text lengths differ), with any embedding cache off."""
    module = getattr(model, "module_", None)
    cached = getattr(module, "cache", None)
    if cached is not None:
        module.cache = False
    try:
        return float(np.mean([flops_per_sample(model, X[i : i + 1]) for i in range(min(n, len(X)))]))
    finally:
        if cached is not None:
            module.cache = cached


def latencies(models: dict[str, Any], X: np.ndarray) -> dict[str, dict[str, float]]:
    """Seconds per review at batch 1 and batch 64, side by side, with the MiniLM cache off (the full cost)."""
    out = {}
    for name, model in models.items():
        minilms = [m for m in ([model] + [mm for _, mm in getattr(model, "members_", [])]) if hasattr(getattr(m, "module_", None), "cache")]
        for m in minilms:
            m.module_.cache = False
        try:
            out[name] = {
                "batch1_s": measure_latency(model, X, batch_size=1, repeats=3, max_samples=32),
                "batch64_s": measure_latency(model, X, batch_size=64, repeats=2, max_samples=64),
            }
        finally:
            for m in minilms:
                m.module_.cache = True
    return out


def reference_reproduced(folds: int = 5) -> dict[str, float]:
    """TF-IDF + LR, ``folds``-fold in-domain on all reviews of each domain, on crossfeed's word ids."""
    out = {}
    for name in DOMAINS:
        texts, y = read_amazon_domain(DATA, name)
        X = Vocabulary.build(texts).encode(texts, max_len=512)
        cv = StratifiedKFold(folds, shuffle=True, random_state=0)
        out[name] = float(np.mean(cross_val_score(TfidfClassifier(), X, y, cv=cv)))
    return out


# -- sections --------------------------------------------------------------------------------
def combine_section(pooled: dict[str, Any], suite: DomainSuite, seed: int) -> dict[str, Any]:
    Xv, yv = suite.pooled("val")
    trio = list(pooled.items())
    pair = [("minilm", pooled["minilm"]), ("lstm", pooled["lstm"])]
    combiners = {}
    for tag, members in (("", trio), ("_minilm_lstm", pair)):
        combiners[f"mean{tag}"] = MeanEnsemble(members, prefit=True)
        combiners[f"weighted{tag}"] = WeightedEnsemble(members, prefit=True, calibrate=True, random_state=seed)
        combiners[f"stacking{tag}"] = StackingEnsemble(members, prefit=True, random_state=seed)
    out = {}
    for name, comb in combiners.items():
        t0 = time.perf_counter()
        comb.fit(Xv, yv)
        out[name] = {**scores(comb, suite), "fit_seconds": time.perf_counter() - t0}
    return out


def cascade_section(pooled: dict[str, Any], records: dict[str, Any], suite: DomainSuite, seed: int,
                    timing: bool) -> dict[str, Any]:
    """Cascade LSTM -> MiniLM: accuracy, FLOPs, cost to match MiniLM, normalised AUC (and latency)."""
    small, large = pooled["lstm"], pooled["minilm"]
    Xv, yv = suite.pooled("val")
    Xt, yt = suite.pooled("test")
    flops = {"lstm": mean_flops(small, Xt), "minilm": mean_flops(large, Xt)}
    target = float(np.mean(large.predict(Xv) == yv))
    cascade = Cascade([("lstm", small), ("minilm", large)], costs=[flops["lstm"], flops["minilm"]],
                      target_accuracy=target, prefit=True, random_state=seed).fit(Xv, yv)
    _, stage = cascade.predict_with_stages(Xt)
    cascade_acc = float(np.mean(cascade.predict(Xt) == yt))

    y_idx = label_indices(yt, suite.classes)
    probas = [small.predict_proba(Xt), large.predict_proba(Xt)]
    test_scores = np.stack([CONFIDENCE_RULES[cascade.rule](p) for p in probas])
    correct = np.stack([p.argmax(1) == y_idx for p in probas])
    grid = candidate_thresholds(CONFIDENCE_RULES[cascade.rule](small.predict_proba(Xv)), 200)
    thresholds = np.column_stack([grid, np.full(len(grid), -np.inf)])
    acc, cost, _ = cascade_outcomes(test_scores, correct, np.array([flops["lstm"], flops["minilm"]]), thresholds)
    a_small, a_large = records["lstm"]["accuracy"], records["minilm"]["accuracy"]
    match = cost_to_match(cost, acc, reference_accuracy=a_large, reference_cost=flops["minilm"])
    auc = normalized_auc(cost, acc, small=(flops["lstm"], a_small), large=(flops["lstm"] + flops["minilm"], a_large)) \
        if a_large > a_small else None
    info = {
        "accuracy": cascade_acc, "minilm_accuracy": a_large, "lstm_accuracy": a_small,
        "gap_points": 100 * (cascade_acc - a_large), "escalation_rate": float(np.mean(stage > 0)),
        "flops_per_sample": {**flops, "cascade": float(cascade.expected_cost(Xt))},
        "flops_fraction": float(cascade.expected_cost(Xt)) / flops["minilm"],
        "cost_to_match_flops_fraction": match.fraction, "cost_to_match_accuracy": match.accuracy,
        "best_curve_accuracy": float(acc.max()), "normalized_auc": auc,
    }
    if timing:
        lat = latencies({"lstm": small, "minilm": large, "cascade": cascade}, Xt)
        info["latency"] = lat
        for b in ("batch1_s", "batch64_s"):
            info[f"latency_fraction_{b[:-2]}"] = lat["cascade"][b] / lat["minilm"][b]
            info[f"lstm_speedup_{b[:-2]}"] = lat["minilm"][b] / lat["lstm"][b]
    return info


def students_section(pooled: dict[str, Any], suite: DomainSuite, seed: int, epochs: int) -> dict[str, Any]:
    X, y = suite.pooled("train")
    Xv, yv = suite.pooled("val")
    X_field = np.concatenate([d.X_field for d in suite])
    teacher = pooled["minilm"]
    t0 = time.perf_counter()
    student = Distiller(teacher, make_lstm(suite, seed, epochs), temperature=2.0, alpha=0.5).fit(
        X, y, X_val=Xv, y_val=yv, X_transfer=X_field).student_
    seconds = time.perf_counter() - t0
    acc = {"teacher": scores(teacher, suite)["accuracy"], "scratch": scores(pooled["lstm"], suite)["accuracy"],
           "distilled": scores(student, suite)["accuracy"]}
    return {
        "accuracy": acc, "distill_seconds": seconds,
        "retention_scratch": acc["scratch"] / acc["teacher"], "retention_distilled": acc["distilled"] / acc["teacher"],
        "param_share": count_params(student) / count_params(teacher),
    }


def feedback_section(suite: DomainSuite, per_domain: dict, seed: int, epochs: int) -> dict[str, Any]:
    g = suite[GENERAL]
    v0, _ = fit(make_minilm(suite, seed, 4 * epochs), g.X_train, g.y_train, g.X_val, g.y_val)
    experts = {name: models["tfidf"] for name, models in per_domain.items() if name != GENERAL}
    out = {}
    for strategy in FEEDBACK:
        try:
            _, report = absorb(v0, experts, suite, strategy, epochs=10, random_state=seed)
        except CrossfeedError as exc:  # a strategy that does not fit a frozen-encoder model: say why
            out[strategy] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        shifted = [n for n in report.domains if n != GENERAL]
        absorptions = [report.domains[n].absorption for n in shifted if report.domains[n].absorption is not None]
        out[strategy] = {
            "domains": {n: vars(f) for n, f in report.domains.items()},
            "mean_acc_v0": report.mean("acc_v0"), "mean_acc_v1": report.mean("acc_v1"),
            "mean_acc_expert": report.mean("acc_expert"),
            "mean_absorption": float(np.mean(absorptions)) if absorptions else None,
            "forgetting": report.forgetting, "wall_seconds": report.wall_seconds,
        }
    return out


def run_seed(seed: int, n_per_domain: int | None, epochs: int, timing: bool) -> dict[str, Any]:
    suite = load_suite("amazon", seed=seed, directory=DATA, n_per_domain=n_per_domain)
    pooled, per_domain, seconds = train_members(suite, seed, epochs)
    records = {name: {**scores(m, suite), "fit_seconds": seconds[name], "params": count_params(m)} for name, m in pooled.items()}
    in_domain = {d: {name: float(np.mean(m.predict(suite[d].X_test) == suite[d].y_test)) for name, m in models.items()}
                 for d, models in per_domain.items()}
    combiners = combine_section(pooled, suite, seed)
    best_member = max(records, key=lambda n: records[n]["accuracy"])
    best_combiner = max(combiners, key=lambda n: combiners[n]["accuracy"])
    pair_best = max((n for n in combiners if n.endswith("_minilm_lstm")), key=lambda n: combiners[n]["accuracy"])
    print("  combine done", flush=True)
    cascade = cascade_section(pooled, records, suite, seed, timing)
    print("  cascade done", flush=True)
    students = students_section(pooled, suite, seed, epochs)
    print("  students done", flush=True)
    feedback = feedback_section(suite, per_domain, seed, epochs)
    return {
        "seed": seed, "members": records, "in_domain": in_domain, "combiners": combiners,
        "best_member": best_member, "best_combiner": best_combiner,
        "ensemble_gain_points": 100 * (combiners[best_combiner]["accuracy"] - records[best_member]["accuracy"]),
        "minilm_lstm_best": pair_best,
        "minilm_lstm_gain_points": 100 * (combiners[pair_best]["accuracy"]
                                          - max(records["minilm"]["accuracy"], records["lstm"]["accuracy"])),
        "cascade": cascade, "students": students, "feedback": feedback, "fit_seconds": seconds,
    }


# -- report ----------------------------------------------------------------------------------
def _med(values: list[float | None]) -> dict[str, float] | None:
    """Median and spread over the seeds that have the value (timings: the first seed only)."""
    present = [v for v in values if v is not None]
    return summary(present) if present else None


def aggregate(runs: list[dict[str, Any]], reproduced: dict[str, float] | None) -> dict[str, Any]:
    per_domain: dict[str, dict[str, Any]] = {}
    for d in DOMAINS:
        row: dict[str, Any] = {"reference_tfidf_5fold": AMAZON_REFERENCE["tfidf_lr_5fold"][d] / 100,
                               "blitzer_2007": AMAZON_REFERENCE["blitzer_2007"][d] / 100}
        if reproduced is not None:
            row["reproduced_tfidf_5fold"] = reproduced[d]
        for name in ("tfidf", "lstm", "minilm"):
            row[f"{name}_in_domain"] = _med([r["in_domain"][d][name] for r in runs])
        for name in ("minilm", "lstm", "tfidf"):
            row[f"{name}_pooled"] = _med([r["members"][name]["domains"][d] for r in runs])
        for name in runs[0]["combiners"]:
            row[name] = _med([r["combiners"][name]["domains"][d] for r in runs])
        per_domain[d] = row
    pooled = {name: {k: _med([r["members"][name][k] for r in runs]) for k in ("accuracy", "nll", "ece", "fit_seconds")}
              for name in runs[0]["members"]}
    pooled.update({name: {k: _med([r["combiners"][name][k] for r in runs]) for k in ("accuracy", "nll", "ece")}
                   for name in runs[0]["combiners"]})
    cascade_keys = sorted({k for r in runs for k, v in r["cascade"].items() if isinstance(v, (int, float)) or v is None})
    feedback = {}
    for strategy, first in runs[0]["feedback"].items():
        if "error" in first:
            feedback[strategy] = {"error": first["error"]}
            continue
        feedback[strategy] = {k: _med([r["feedback"][strategy][k] for r in runs])
                              for k in ("mean_acc_v0", "mean_acc_v1", "mean_acc_expert", "mean_absorption", "forgetting", "wall_seconds")}
    return {
        "per_domain": per_domain, "pooled": pooled,
        "ensemble_gain_points": _med([r["ensemble_gain_points"] for r in runs]),
        "minilm_lstm_gain_points": _med([r["minilm_lstm_gain_points"] for r in runs]),
        "cascade": {k: _med([r["cascade"].get(k) for r in runs]) for k in cascade_keys},
        "students": {k: _med([r["students"][k] for r in runs]) for k in ("retention_scratch", "retention_distilled", "param_share")},
        "feedback": feedback,
    }


def print_tables(agg: dict[str, Any]) -> None:
    cols = ["reference_tfidf_5fold", "reproduced_tfidf_5fold", "tfidf_in_domain", "lstm_in_domain", "minilm_in_domain",
            "tfidf_pooled", "lstm_pooled", "minilm_pooled", "mean_minilm_lstm", "weighted", "stacking"]
    print("\nin-domain test accuracy (%), median over seeds; reference = published TF-IDF + LR 5-fold")
    print("| domain | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for d, row in agg["per_domain"].items():
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append("-" if v is None else f"{100 * (v['median'] if isinstance(v, dict) else v):.1f}")
        print(f"| {d} | " + " | ".join(cells) + " |")
    print("\npooled test accuracy (%):", {k: round(100 * v["accuracy"]["median"], 2) for k, v in agg["pooled"].items()})
    print("ensemble gain (points):", agg["ensemble_gain_points"], " MiniLM+LSTM gain:", agg["minilm_lstm_gain_points"])
    print("cascade:", {k: round(v["median"], 4) for k, v in agg["cascade"].items() if v})
    print("students:", {k: round(v["median"], 4) for k, v in agg["students"].items()})
    for s, v in agg["feedback"].items():
        print(f"feedback {s}:", v if "error" in v else {k: round(x["median"], 4) for k, x in v.items() if x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--n-per-domain", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10, help="LSTM epochs (MiniLM heads get 4x, both early-stopped)")
    parser.add_argument("--timing", choices=["first", "none"], default="first",
                        help="measure latencies on the first seed (default) or not at all")
    parser.add_argument("--quick", action="store_true", help="200 reviews per domain, 2 epochs, no 5-fold reference")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.n_per_domain, args.epochs = args.n_per_domain or 200, 2
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    reproduced = None if args.quick else reference_reproduced()
    runs: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        print(f"seed {seed}", flush=True)
        runs.append(run_seed(seed, args.n_per_domain, args.epochs, timing=(i == 0 and args.timing == "first")))
        print(f"seed {seed}: {time.perf_counter() - t0:.1f} s, gain {runs[-1]['ensemble_gain_points']:+.2f} points", flush=True)
        agg = aggregate(runs, reproduced)
        payload = {
            "benchmark": "amazon", "suite": "amazon", "seeds": seeds[: i + 1], "n_per_domain": args.n_per_domain,
            "epochs": args.epochs, "lstm": LSTM_KWARGS, "general_domain": GENERAL, "machine": machine(),
            "reference": AMAZON_REFERENCE, "reference_reproduced": reproduced, **agg, "runs": runs,
        }
        path = write("amazon-quick" if args.quick else "amazon", payload)  # after every seed: nothing is lost
    print_tables(agg)
    print("wrote", path)


if __name__ == "__main__":
    main()
