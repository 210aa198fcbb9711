"""Serving benchmark: cascades that keep their promise, a learned router, small models that are fast.

For each suite (mnist1d, fashion) and seed:

1. Members, all trained on the pooled training data (AdamW, lr 3e-3, weight decay 1e-2, one
   thread): the large CNN (early stopping on the pooled validation loss), a linear model and a
   tiny CNN from scratch, and students distilled from the large CNN on its predictions for the
   pooled field data (T=4, alpha=0.9; ``crossfeed.spawn.Distiller`` with ``X_transfer``): the
   candidates for a first stage. On mnist1d the ``_fm`` students are the same networks taught
   also on 100,000 mixup rows of the training and field inputs that the large model labels
   (``Distiller(mixup=100_000)``: function matching, Beyer et al. 2022, arXiv 2106.05237).
2. Combiners fitted on the pooled validation data with the members frozen, scored on the pooled
   test set: the round-1 cascade (tiny -> large, threshold calibrated to the large model's
   validation accuracy); the same calibration with the best student first; an automatic ladder
   over the whole pool (``stages="auto"``); certified ladders (``epsilon`` in 0.001, 0.005,
   0.01, ``delta`` 0.1: Learn then Test); the learned router over the pool (inputs, and inputs
   plus the cheapest member's probabilities). Per method: accuracy gap to the large model
   (points), FLOPs fraction, share of samples the large model runs on, measured latency
   through the serving path (ONNX Runtime sessions, ``crossfeed.serving``) as a fraction of the
   large model's on the same path, batch 1 and batch 256, interleaved in one run.
   The test-curve oracle: the cheapest thresholds of the same ladder within 0.1 point of the
   large model on the test set itself (labels used: a bound, not a method).
3. Promised vs achieved risk: the members' probabilities on validation + test are pooled and
   re-split ``--resplits`` times (calibration as large as the validation set, the rest as test);
   a certified ladder is fitted on each calibration part: how often the test loss exceeds
   ``epsilon`` (promised: at most ``delta``), against the calibrated cascade.
4. Students on the serving path: the large model and each student as ONNX Runtime sessions,
   float and int8 (static QDQ, ``crossfeed.serving.quantize_onnx``), batch 1 and 256; speed-up
   = large float latency / model latency; retention = accuracy / large accuracy; beside them the
   torch ``predict_proba`` path (what round 1 measured).

    python benchmarks/serving.py                       # both suites, 3 seeds: benchmarks/results/serving.json
    python benchmarks/serving.py --suites mnist1d      # one suite: serving-mnist1d.json
    python benchmarks/serving.py --quick               # smoke run: small data, 1 seed, few epochs
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine, span, summary, write
from sklearn.base import BaseEstimator, ClassifierMixin

from crossfeed.combine import Cascade, Router, candidate_thresholds, cascade_outcomes
from crossfeed.data import load_suite
from crossfeed.evaluate import apgr, cost_to_match
from crossfeed.models import TorchClassifier, count_params, flops_per_sample, measure_latency
from crossfeed.serving import OnnxModel, ServedCascade, quantize_onnx
from crossfeed.spawn import Distiller

FIT = {"lr": 3e-3, "weight_decay": 1e-2}
LARGE = "large"
#: Per suite: the architecture, the large model, the scratch pool and the distilled students.
SUITES: dict[str, dict[str, Any]] = {
    "mnist1d": {
        "arch": "cnn1d", "large": {"size": "large", "dropout": 0.2}, "epochs": 20, "small_epochs": 20,
        "scratch": {"linear": ("linear", {}), "tiny": ("cnn1d", {"size": "tiny"})},
        "students": {"student5": {"channels": [12, 12, 12], "hidden": 64},
                     "student10": {"channels": [20, 20, 20], "hidden": 64},
                     # the same students, taught also on 100,000 mixup rows the large model labels
                     "student5_fm": {"channels": [12, 12, 12], "hidden": 64, "mixup": 100_000},
                     "student10_fm": {"channels": [20, 20, 20], "hidden": 64, "mixup": 100_000}},
    },
    "fashion": {
        "arch": "cnn2d", "large": {"size": "large", "dropout": 0.2}, "epochs": 8, "small_epochs": 15,
        "scratch": {"linear": ("linear", {}), "tiny": ("cnn2d", {"size": "tiny"})},
        "students": {"student_tiny": {"size": "tiny"}, "student_mid": {"channels": [12, 24], "hidden": 48},
                     "student_small": {"size": "small"}},
    },
}
EPSILONS = (0.001, 0.005, 0.01)
DELTA = 0.1


class Lookup(ClassifierMixin, BaseEstimator):
    """A frozen member of the re-split study: column 0 of X is the sample's row in ``table``."""

    def __init__(self, table: np.ndarray | None = None, classes: np.ndarray | None = None) -> None:
        self.table = table
        self.classes = classes

    def fit(self, X: Any = None, y: Any = None) -> Lookup:
        self.classes_ = np.asarray(self.classes)
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.table[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def train_pool(suite, spec: dict[str, Any], seed: int, epochs: int, small_epochs: int) -> tuple[dict, dict]:
    X, y = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    X_field = np.concatenate([d.X_field for d in suite])
    seconds: dict[str, float] = {}
    models: dict[str, TorchClassifier] = {}
    t0 = time.perf_counter()
    models[LARGE] = TorchClassifier(spec["arch"], module_kwargs=spec["large"], epochs=epochs, patience=3,
                                    random_state=seed, **FIT).fit(X, y, X_val=X_val, y_val=y_val)
    seconds[LARGE] = time.perf_counter() - t0
    for name, (arch, kwargs) in spec["scratch"].items():
        t0 = time.perf_counter()
        models[name] = TorchClassifier(arch, module_kwargs=kwargs, epochs=small_epochs, random_state=seed,
                                       **FIT).fit(X, y)
        seconds[name] = time.perf_counter() - t0
    for name, kwargs in spec["students"].items():
        t0 = time.perf_counter()
        module_kwargs = {k: v for k, v in kwargs.items() if k != "mixup"}
        template = TorchClassifier(spec["arch"], module_kwargs=module_kwargs, epochs=small_epochs, random_state=seed,
                                   **FIT)
        models[name] = Distiller(models[LARGE], template, temperature=4.0, alpha=0.9,
                                 mixup=kwargs.get("mixup", 0)).fit(X, y, X_transfer=X_field).student_
        seconds[name] = time.perf_counter() - t0
    return models, seconds


def best_student(models: dict[str, Any], X_val: np.ndarray, y_val: np.ndarray, students: list[str]) -> str:
    return max(students, key=lambda n: float(np.mean(models[n].predict(X_val) == y_val)))


def combiners(models: dict[str, Any], flops: dict[str, float], X_val, y_val, seed: int, student: str) -> dict:
    """Every serving method, fitted on the validation data with the members frozen."""
    large_val = float(np.mean(models[LARGE].predict(X_val) == y_val))
    pool = [(n, m) for n, m in models.items()]
    costs = [flops[n] for n, _ in pool]
    pair = lambda first: dict(members=[(first, models[first]), (LARGE, models[LARGE])],  # noqa: E731
                              costs=[flops[first], flops[LARGE]])
    methods: dict[str, Any] = {
        "cascade tiny->large (round 1)": Cascade(**pair("tiny"), target_accuracy=large_val, prefit=True,
                                                 random_state=seed),
        "cascade best student->large": Cascade(**pair(student), target_accuracy=large_val, prefit=True,
                                               random_state=seed),
        "ladder auto": Cascade(pool, costs=costs, stages="auto", target_accuracy=large_val, prefit=True,
                               random_state=seed),
    }
    for eps in EPSILONS:
        methods[f"certified eps={eps:g}"] = Cascade(pool, costs=costs, stages="auto", epsilon=eps, delta=DELTA,
                                                    prefit=True, random_state=seed)
    methods["router"] = Router(pool, costs=costs, target_accuracy=large_val, prefit=True, random_state=seed)
    methods["router first_stage"] = Router(pool, costs=costs, target_accuracy=large_val, features="first_stage",
                                           prefit=True, random_state=seed)
    fit_s = {}
    for name, m in methods.items():
        t0 = time.perf_counter()
        m.fit(X_val, y_val)
        fit_s[name] = time.perf_counter() - t0
    return methods, fit_s


def stage_names(method: Any) -> list[str]:
    if isinstance(method, Cascade):
        return [method.members[i][0] for i in method.order_]
    return [n for n, _ in method.members]


def oracle_fraction(method: Cascade, X_test, y_test, large_acc: float, large_flops: float) -> float | None:
    """Cheapest FLOPs fraction of the method's ladder within 0.1 point of the large model on the test set itself."""
    members = [method.members_[i][1] for i in method.order_]
    if len(members) == 1:
        return 1.0
    probas = np.stack([m.predict_proba(X_test) for m in members])
    y_idx = np.searchsorted(method.classes_, y_test)
    scores = probas.max(axis=2)
    correct = probas.argmax(axis=2) == y_idx[None, :]
    costs = method.costs_[method.order_]
    grids = [candidate_thresholds(scores[k], 50) for k in range(len(members) - 1)]
    mesh = np.array(np.meshgrid(*grids, indexing="ij")).reshape(len(grids), -1).T
    if mesh.shape[0] > 20_000:  # 4 stages: a coarser grid
        grids = [candidate_thresholds(scores[k], 20) for k in range(len(members) - 1)]
        mesh = np.array(np.meshgrid(*grids, indexing="ij")).reshape(len(grids), -1).T
    points = np.column_stack([mesh, np.full(len(mesh), -np.inf)])
    acc, cost, _ = cascade_outcomes(scores, correct, costs, points)
    match = cost_to_match(cost, acc, reference_accuracy=large_acc, reference_cost=large_flops)
    return match.fraction


def served(method: Any, onnx: dict[str, OnnxModel]) -> Any:
    """The method on the serving path: its stages as ONNX Runtime sessions."""
    if isinstance(method, Cascade):
        names = stage_names(method)
        temps = None if method.temperatures_ is None else np.asarray(method.temperatures_)[method.order_]
        return ServedCascade([(n, onnx[n]) for n in names], thresholds=method.thresholds_, rule=method.rule,
                             temperatures=temps, costs=method.costs_[method.order_]).fit()
    return None  # the router runs its members through their own predict_proba (ONNX members below)


def large_call_rate(method: Any, X) -> float:
    if isinstance(method, Cascade):
        _, stage = method.predict_with_stages(X)
        return float(np.mean(stage == len(method.order_) - 1)) if stage_names(method)[-1] == LARGE else 0.0
    _, chosen = method.predict_with_members(X)
    return float(np.mean(chosen == [n for n, _ in method.members].index(LARGE)))


def latencies(models: dict[str, Any], X: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """Interleaved medians of seconds per sample at batch 1 (64 samples) and batch 256 (512 samples)."""
    out: dict[str, dict[str, list[float]]] = {n: {"b1": [], "b256": []} for n in models}
    for model in models.values():  # warm-up
        measure_latency(model, X, batch_size=1, repeats=1, max_samples=16)
    for _ in range(repeats):
        for name, model in models.items():
            out[name]["b1"].append(measure_latency(model, X, batch_size=1, repeats=1, max_samples=64))
            out[name]["b256"].append(measure_latency(model, X, batch_size=256, repeats=1, max_samples=512))
    return {n: {k: float(np.median(v)) for k, v in d.items()} for n, d in out.items()}


def resplit_study(models, X_val, y_val, X_test, y_test, classes, seed: int, n_resplits: int) -> dict[str, Any]:
    """Promised vs achieved risk over re-splits of validation + test (members frozen)."""
    X_all = np.concatenate([X_val, X_test])
    y_all = np.concatenate([y_val, y_test])
    tables = {n: m.predict_proba(X_all) for n, m in models.items()}
    flops = {n: flops_per_sample(m, X_val[:2]) for n, m in models.items()}
    lookups = [(n, Lookup(tables[n], classes).fit()) for n in models]
    costs = [flops[n] for n in models]
    idx = np.arange(len(y_all))[:, None]
    rng = np.random.default_rng(1000 + seed)
    n_cal = len(y_val)
    rows: dict[str, list[dict[str, float]]] = {f"certified eps={e:g}": [] for e in EPSILONS}
    rows["calibrated (target = large validation accuracy)"] = []
    large_correct = tables[LARGE].argmax(axis=1) == np.searchsorted(classes, y_all)
    quiet = logging.getLogger("crossfeed.combine")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the fallbacks are counted below, not logged 40 times
    for r in range(n_resplits):
        perm = rng.permutation(len(y_all))
        cal, test = perm[:n_cal], perm[n_cal:]
        large_test = float(large_correct[test].mean())
        fits = {f"certified eps={e:g}": Cascade(lookups, costs=costs, stages="auto", max_stages=3, epsilon=e,
                                                delta=DELTA, prefit=True, random_state=r) for e in EPSILONS}
        fits["calibrated (target = large validation accuracy)"] = Cascade(
            lookups, costs=costs, stages="auto", max_stages=3, target_accuracy=float(large_correct[cal].mean()),
            prefit=True, random_state=r)
        for name, c in fits.items():
            c.fit(idx[cal], y_all[cal])
            acc = float(np.mean(c.predict(idx[test]) == y_all[test]))
            rows[name].append({"drop": large_test - acc, "flops_fraction": c.expected_cost(idx[test]) / flops[LARGE],
                               "fallback": bool(c.certificate_ is not None and c.certificate_.fallback)})
    quiet.setLevel(level)
    out = {}
    for name, rs in rows.items():
        drops = np.array([r["drop"] for r in rs])
        eps = float(name.split("=")[1]) if "eps=" in name else None
        out[name] = {
            "epsilon": eps, "delta": DELTA if eps is not None else None, "n_resplits": n_resplits,
            "violation_rate": None if eps is None else float(np.mean(drops > eps)),
            "violation_rate_0.1pt": float(np.mean(drops > 0.001)),
            "drop_median": float(np.median(drops)), "drop_p90": float(np.quantile(drops, 0.9)),
            "flops_fraction_median": float(np.median([r["flops_fraction"] for r in rs])),
            "fallback_rate": float(np.mean([r["fallback"] for r in rs])),
        }
    return out


def run_seed(suite_name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    spec = SUITES[suite_name]
    kwargs = {"n_per_domain": args.n_per_domain}
    suite = load_suite(suite_name, seed=seed, **kwargs)
    X_val, y_val = suite.pooled("val")
    X_test, y_test = suite.pooled("test")
    X_train, _ = suite.pooled("train")
    epochs = 2 if args.quick else spec["epochs"]
    small_epochs = 2 if args.quick else spec["small_epochs"]
    t0 = time.perf_counter()
    models, fit_seconds = train_pool(suite, spec, seed, epochs, small_epochs)
    train_s = time.perf_counter() - t0
    flops = {n: flops_per_sample(m, X_test[:2]) for n, m in models.items()}
    acc = {n: float(np.mean(m.predict(X_test) == y_test)) for n, m in models.items()}
    student = best_student(models, X_val, y_val, list(spec["students"]))
    methods, comb_s = combiners(models, flops, X_val, y_val, seed, student)

    with tempfile.TemporaryDirectory() as tmp:
        onnx: dict[str, OnnxModel] = {}
        int8: dict[str, OnnxModel] = {}
        int8_report: dict[str, dict[str, float]] = {}
        for name, model in models.items():
            onnx[name] = OnnxModel.from_model(model, Path(tmp) / f"{name}.onnx", example_X=X_test[:256])
            rep = quantize_onnx(onnx[name], Path(tmp) / f"{name}.int8.onnx", calibration_X=X_train[:512])
            int8[name] = OnnxModel.load(rep.path)
            int8_report[name] = {"max_abs_diff": rep.max_abs_diff, "agreement": rep.agreement,
                                 "file_bytes": rep.file_size_bytes}
        serving = {f"{n} (onnx)": m for n, m in onnx.items()}
        serving |= {f"{n} (onnx int8)": m for n, m in int8.items()}
        serving |= {f"{n} (torch)": m for n, m in models.items()}
        served_methods = {name: served(m, onnx) for name, m in methods.items()}
        serving |= {f"{name} (served)": s for name, s in served_methods.items() if s is not None}
        # the router over the ONNX members: same routing, fast members
        for name, m in methods.items():
            if isinstance(m, Router):
                fast = Router([(n, onnx[n]) for n, _ in m.members], costs=list(m.costs_), features=m.features,
                              target_accuracy=m.target_accuracy, prefit=True, random_state=seed).fit(X_val, y_val)
                served_methods[name] = fast
                serving[f"{name} (served)"] = fast
        lat = latencies(serving, X_test, args.repeats)
        parity = {n: float(np.max(np.abs(onnx[n].predict_proba(X_test) - models[n].predict_proba(X_test))))
                  for n in models}
        int8_acc = {n: float(np.mean(int8[n].predict(X_test) == y_test)) for n in models}

    large_b1, large_b256 = lat[f"{LARGE} (onnx)"]["b1"], lat[f"{LARGE} (onnx)"]["b256"]
    records: dict[str, dict[str, Any]] = {}
    for name, m in methods.items():
        test_acc = float(np.mean(m.predict(X_test) == y_test))
        rec: dict[str, Any] = {
            "stages": stage_names(m), "accuracy": test_acc, "gap_points": 100 * (test_acc - acc[LARGE]),
            "flops_fraction": m.expected_cost(X_test) / flops[LARGE],
            "large_call_rate": large_call_rate(m, X_test), "fit_seconds": comb_s[name],
            "validation_accuracy": float(m.validation_accuracy_), "within_0.1pt": test_acc >= acc[LARGE] - 0.001,
        }
        if f"{name} (served)" in lat:
            rec["latency_fraction_b1"] = lat[f"{name} (served)"]["b1"] / large_b1
            rec["latency_fraction_b256"] = lat[f"{name} (served)"]["b256"] / large_b256
            agree = served_methods[name].predict(X_test) == m.predict(X_test)
            rec["served_agreement"] = float(np.mean(agree))
        if isinstance(m, Cascade):
            rec["oracle_flops_fraction"] = oracle_fraction(m, X_test, y_test, acc[LARGE], flops[LARGE])
            if m.certificate_ is not None:
                rec["certificate"] = m.certificate_.to_dict()
                rec["promised_epsilon"] = m.epsilon
                rec["achieved_drop"] = acc[LARGE] - test_acc
                rec["kept_promise"] = acc[LARGE] - test_acc <= m.epsilon
        records[name] = rec
    # APGR of the router and of the confidence cascade on the same pool, on test curves
    weak = max(acc[n] for n in models if n != LARGE)
    for name in ("router", "ladder auto"):
        rec = records[name]
        rec["apgr"] = test_apgr(methods[name], X_test, y_test, weak, acc[LARGE])

    students = {}
    for name in models:
        students[name] = {
            "accuracy": acc[name], "retention": acc[name] / acc[LARGE], "params": count_params(models[name]),
            "param_share": count_params(models[name]) / count_params(models[LARGE]),
            "flops_share": flops[name] / flops[LARGE], "onnx_parity": parity[name],
            "int8_accuracy": int8_acc[name], "int8": int8_report[name], "fit_seconds": fit_seconds[name],
            **{f"latency_{path}_{b}_us": 1e6 * lat[f"{name} ({path.replace('_', ' ')})"][b]
               for path in ("onnx", "onnx_int8", "torch") for b in ("b1", "b256")},
        }
        s = students[name]
        s["speedup_onnx_b1"] = lat[f"{LARGE} (onnx)"]["b1"] / lat[f"{name} (onnx)"]["b1"]
        s["speedup_onnx_b256"] = lat[f"{LARGE} (onnx)"]["b256"] / lat[f"{name} (onnx)"]["b256"]
        s["speedup_int8_b1"] = lat[f"{LARGE} (onnx)"]["b1"] / lat[f"{name} (onnx int8)"]["b1"]
        s["int8_vs_float_b1"] = lat[f"{name} (onnx)"]["b1"] / lat[f"{name} (onnx int8)"]["b1"]
        s["int8_vs_float_b256"] = lat[f"{name} (onnx)"]["b256"] / lat[f"{name} (onnx int8)"]["b256"]
        s["speedup_torch_b1"] = lat[f"{LARGE} (torch)"]["b1"] / lat[f"{name} (torch)"]["b1"]
        s["onnx_vs_torch_b1"] = lat[f"{name} (torch)"]["b1"] / lat[f"{name} (onnx)"]["b1"]
    resplits = resplit_study(models, X_val, y_val, X_test, y_test, models[LARGE].classes_, seed, args.resplits)
    return {"seed": seed, "best_student": student, "large_accuracy": acc[LARGE], "train_seconds": train_s,
            "flops": flops, "methods": records, "students": students, "resplits": resplits}


def test_apgr(method: Any, X_test, y_test, weak: float, strong: float) -> float:
    """APGR (RouteLLM) of a method's operating points evaluated on the test set."""
    rates, accs = [], []
    if isinstance(method, Router):
        original = method.lam_
        for lam in np.unique(method.curve_["lam"]):
            method.lam_ = float(lam)
            rates.append(large_call_rate(method, X_test))
            accs.append(float(np.mean(method.predict(X_test) == y_test)))
        method.lam_ = original
    else:
        original = method.thresholds_.copy()
        for th in method.curve_["thresholds"]:
            method.thresholds_ = np.asarray(th, dtype=float)
            rates.append(large_call_rate(method, X_test))
            accs.append(float(np.mean(method.predict(X_test) == y_test)))
        method.thresholds_ = original
    return apgr(rates, accs, weak_accuracy=weak, strong_accuracy=strong)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def table(section: str) -> dict[str, dict[str, Any]]:
        out = {}
        for name, first in runs[0][section].items():
            out[name] = {}
            for key in first:
                vals = [r[section].get(name, {}).get(key) for r in runs]
                if all(isinstance(v, bool) for v in vals):
                    out[name][key] = f"{sum(vals)}/{len(vals)}"
                elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
                    out[name][key] = summary(vals)
        return out
    return {"methods": table("methods"), "students": table("students"), "resplits": table("resplits")}


def _fmt(s: dict[str, float] | None, scale: float = 1.0, digits: int = 2, *, cost: bool = False) -> str:
    """``median [min, max]`` cut, never rounded to look better: up for a ``cost`` (lower is better)."""
    return span(s, scale, digits, lower_is_better=cost) if s else "-"


def markdown(suite: str, agg: dict[str, Any]) -> str:
    lines = [f"### {suite}", "", "| method | gap to large (points) | FLOPs fraction | large-model calls | "
             "latency fraction b1 / b256 (served) | oracle FLOPs fraction | within 0.1 point |", "|---" * 7 + "|"]
    for name, r in agg["methods"].items():
        lines.append(
            f"| {name} | {_fmt(r.get('gap_points'))} | {_fmt(r.get('flops_fraction'), digits=3, cost=True)} | "
            f"{_fmt(r.get('large_call_rate'), 100, 1, cost=True)}% | {_fmt(r.get('latency_fraction_b1'), cost=True)} / "
            f"{_fmt(r.get('latency_fraction_b256'), cost=True)} | "
            f"{_fmt(r.get('oracle_flops_fraction'), digits=3, cost=True)} | {r.get('within_0.1pt', '-')} |")
    lines += ["", "| model | retention % | params share % | speed-up b1 onnx / int8 / torch | int8 vs float b1 / b256 |",
              "|---" * 5 + "|"]
    for name, s in agg["students"].items():
        lines.append(
            f"| {name} | {_fmt(s['retention'], 100, 1)} | {_fmt(s['param_share'], 100, 1, cost=True)} | "
            f"{_fmt(s['speedup_onnx_b1'])} / {_fmt(s['speedup_int8_b1'])} / {_fmt(s['speedup_torch_b1'])} | "
            f"{_fmt(s['int8_vs_float_b1'])} / {_fmt(s['int8_vs_float_b256'])} |")
    lines += ["", "| re-split study | violation rate (promised <= delta) | drop > 0.1 point | median drop (points) | "
              "median FLOPs fraction |", "|---" * 5 + "|"]
    for name, r in agg["resplits"].items():
        lines.append(f"| {name} | {_fmt(r.get('violation_rate'), digits=3, cost=True)} | "
                     f"{_fmt(r.get('violation_rate_0.1pt'), digits=3, cost=True)} | "
                     f"{_fmt(r.get('drop_median'), 100, cost=True)} | "
                     f"{_fmt(r.get('flops_fraction_median'), digits=3, cost=True)} |")
    return "\n".join(lines)


def plot(path: Path, suite: str, run: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, s in run["students"].items():
        ax.scatter(s["flops_share"], 100 * s["accuracy"], marker="s", color="grey")
        ax.annotate(name, (s["flops_share"], 100 * s["accuracy"]), fontsize=7)
    for name, r in run["methods"].items():
        ax.scatter(r["flops_fraction"], 100 * r["accuracy"], label=name)
    ax.axhline(100 * run["large_accuracy"], color="black", lw=0.8, ls="--", label="large model")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per sample / large model's")
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"{suite}, seed {run['seed']}: accuracy vs cost")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-domain", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--resplits", type=int, default=40, help="re-splits of the promised-vs-achieved study")
    parser.add_argument("--quick", action="store_true", help="one seed, 400 samples per domain, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_per_domain, args.repeats, args.resplits = [0], 400, 2, 4
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    for suite in args.suites:
        runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            runs.append(run_seed(suite, seed, args))
            print(f"{suite} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        results[suite] = {"aggregate": aggregate(runs), "runs": runs}
        print(markdown(suite, results[suite]["aggregate"]), flush=True)
    name = "serving-quick" if args.quick else ("serving" if len(args.suites) == len(SUITES)
                                                else "serving-" + "-".join(args.suites))
    command = "python benchmarks/serving.py" + (" --quick" if args.quick else "") + (
        "" if len(args.suites) == len(SUITES) else " --suites " + " ".join(args.suites))
    payload = {
        "benchmark": "serving", "command": command, "suites": args.suites, "seeds": args.seeds,
        "n_per_domain": args.n_per_domain, "repeats": args.repeats, "resplits": args.resplits,
        "epsilons": EPSILONS, "delta": DELTA, "settings": {s: SUITES[s] for s in args.suites}, "fit": FIT,
        "machine": machine(), "seconds": time.perf_counter() - t_start, "results": results,
    }
    path = write(name, payload)
    for suite in args.suites:
        plot(path.with_name(f"{name}-{suite}.png"), suite, results[suite]["runs"][0])
    print(f"total {payload['seconds']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
