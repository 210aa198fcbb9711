"""The main job, ``crossfeed demo``: large and small models on the mnist1d suite, combined.

Data flow (see DESIGN.md): suite of 5 shifted domains -> large CNN on the pooled training data
-> small models (tiny CNN, MLP, logistic regression) -> combiners fitted on the pooled validation
data with the members frozen (``prefit=True``) -> every model and combiner evaluated on every
domain and pooled, with its cost -> optional spawn section -> ``results.json``, ``report.md``,
``report.html``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crossfeed._cache import atomic_write_bytes
from crossfeed._progress import Progress, SilentProgress
from crossfeed.combine import (
    CONFIDENCE_RULES,
    Cascade,
    MeanEnsemble,
    Router,
    StackingEnsemble,
    WeightedEnsemble,
    candidate_thresholds,
    cascade_outcomes,
)
from crossfeed.config import config_from_dict
from crossfeed.cycle import run_cycle
from crossfeed.data import DomainSuite, load_suite
from crossfeed.evaluate import cost_to_match, label_indices, normalized_auc, prediction_accuracy, score_all
from crossfeed.models import TorchClassifier, count_params, flops_per_sample, measure_latency
from crossfeed.report import DemoResult, write_demo_report
from crossfeed.spawn import spawn_section

logger = logging.getLogger(__name__)

LARGE, SMALL = "large_cnn", "tiny_cnn"

#: The feedback cycle of the demo (``examples/demo.yaml`` is the same config, checked by a test):
#: a general large model trained on the general domain only; each generation, one fine-tuned copy
#: of it per shifted domain (the experts), merged back by TIES and distilled (the best data-free
#: strategy in benchmarks/feedback.py), with multi-teacher distillation compared beside it.
DEMO_CYCLE: dict[str, Any] = {
    "name": "demo",
    "seeds": [0],
    "device": "cpu",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 4000}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "large", "dropout": 0.2}, "epochs": 20, "lr": 0.002,
              "train_on": "general"},
    "experts": {"method": "finetune", "finetune_epochs": 10},
    "feedback": {"strategy": "merge", "kwargs": {"method": "ties"}, "epochs": 15, "lr": 0.001,
                 "compare": [{"strategy": "multi_teacher_kd", "kwargs": {"temperature": 2.0, "alpha": 0.9}}]},
    "generations": 2,
}


def demo_cycle_config(*, seed: int = 0, device: str = "cpu", n_per_domain: int = 4000, epochs: int = 20):
    """The demo's cycle as an :class:`~crossfeed.experiments.ExperimentConfig`, with the demo's settings."""
    data = json.loads(json.dumps(DEMO_CYCLE))
    data.update(seeds=[seed], device=device)
    data["suite"]["kwargs"]["n_per_domain"] = n_per_domain
    data["large"]["epochs"] = epochs
    return config_from_dict(data, source="demo")


def _members(seed: int, device: str, progress: Progress, epochs: int) -> dict[str, Any]:
    def torch_model(name: str, kwargs: dict[str, Any], arch: str = "cnn1d", lr: float = 2e-3) -> TorchClassifier:
        return TorchClassifier(
            arch, module_kwargs=kwargs, epochs=epochs, lr=lr, weight_decay=1e-2, patience=4,
            device=device, random_state=seed, callback=progress.training(name, epochs),
        )

    return {
        LARGE: torch_model(LARGE, {"size": "large", "dropout": 0.2}),
        SMALL: torch_model(SMALL, {"size": "tiny"}, lr=3e-3),
        "mlp": torch_model("mlp", {"hidden": (256, 128), "dropout": 0.1}, arch="mlp"),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    }


def train_members(
    suite: DomainSuite, *, seed: int = 0, device: str = "cpu", epochs: int = 20, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train the demo's members on the pooled training data; returns them and their fit seconds."""
    progress = progress or SilentProgress()
    X_train, y_train = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    members = _members(seed, device, progress, epochs)
    fit_seconds: dict[str, float] = {}
    for name, model in members.items():
        progress.stage(f"training {name}")
        t0 = time.perf_counter()
        if isinstance(model, TorchClassifier):
            model.fit(X_train, y_train, X_val=X_val, y_val=y_val)
        else:
            model.fit(X_train, y_train)
        fit_seconds[name] = time.perf_counter() - t0
    return members, fit_seconds


def fit_combiners(
    members: dict[str, Any], X_val: np.ndarray, y_val: np.ndarray, X_cost: np.ndarray, *, seed: int = 0
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every combiner on validation data with the members frozen; returns them and their fit seconds.

    The cascade runs the tiny CNN first and escalates to the large CNN, with its threshold set to
    reach the large model's validation accuracy at the lowest expected FLOPs; ``cascade_certified``
    is the same pair with a threshold certified by Learn then Test (accuracy loss <= 0.5 point
    against the large CNN with probability >= 0.9, or the large CNN alone when nothing cheaper
    can be certified); ``router`` sends each sample to one member, learned on the validation data.
    """
    pairs = list(members.items())
    flops = {name: flops_per_sample(m, X_cost) for name, m in pairs}
    large_val_acc = prediction_accuracy(members[LARGE], X_val, y_val)
    combiners: dict[str, Any] = {
        "mean": MeanEnsemble(pairs, prefit=True),
        "weighted": WeightedEnsemble(pairs, prefit=True, calibrate=True, random_state=seed),
        "caruana": WeightedEnsemble(pairs, method="caruana", prefit=True, random_state=seed),
        "stacking": StackingEnsemble(pairs, prefit=True, random_state=seed),
        "cascade": Cascade(
            [(SMALL, members[SMALL]), (LARGE, members[LARGE])], costs=[flops[SMALL], flops[LARGE]],
            target_accuracy=large_val_acc, prefit=True, random_state=seed,
        ),
        "cascade_certified": Cascade(
            [(SMALL, members[SMALL]), (LARGE, members[LARGE])], costs=[flops[SMALL], flops[LARGE]],
            epsilon=0.005, delta=0.1, prefit=True, random_state=seed,
        ),
        "router": Router(pairs, costs=[flops[name] for name, _ in pairs], target_accuracy=large_val_acc, prefit=True,
                         random_state=seed),
    }
    seconds = {}
    for name, comb in combiners.items():
        t0 = time.perf_counter()
        comb.fit(X_val, y_val)
        seconds[name] = time.perf_counter() - t0
    return combiners, seconds


def combine_and_evaluate(
    members: dict[str, Any], fit_seconds: dict[str, float], suite: DomainSuite, *, seed: int = 0
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, list[float]]]:
    """Fit every combiner over the frozen members on the pooled validation data, then evaluate every
    member and combiner on every domain.

    Returns ``(records by name, cascade summary, cascade test curve)``; ``fit_seconds``
    holds the members' fit times (the combiners' are added to the records).
    """
    X_val, y_val = suite.pooled("val")
    X_test, _ = suite.pooled("test")
    combiners, comb_seconds = fit_combiners(members, X_val, y_val, X_test, seed=seed)
    seconds = {**fit_seconds, **comb_seconds}
    records = {
        name: evaluate_model(name, model, suite, kind="member" if name in members else "combiner", fit_s=seconds[name])
        for name, model in [*members.items(), *combiners.items()]
    }
    cascade_info, curve = cascade_summary(combiners["cascade"], members, suite, list(records.values()))
    return records, cascade_info, curve


def run_demo(
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    device: str = "cpu",
    n_per_domain: int = 4000,
    epochs: int = 20,
    spawn: bool = True,
    feedback: bool = True,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the main job and, when ``out_dir`` is given, write results.json, report.md and report.html.

    Parameters
    ----------
    out_dir : folder for the outputs (created), or None to only return the result.
    seed : seeds the data, the models and the combiners.
    device : "cpu", "cuda" or "auto" for the torch models.
    n_per_domain : samples generated per mnist1d domain.
    epochs : maximum training epochs of the torch models (early stopping on validation loss).
    spawn : also spawn one small distilled, fine-tuned expert per domain (needs ``crossfeed.spawn``).
    feedback : also run the feedback cycle (:data:`DEMO_CYCLE`): a large model trained on the general
        domain, experts per shifted domain teaching it, two generations, every model on every domain.
    """
    progress = progress or SilentProgress()
    t_start = time.perf_counter()
    progress.stage("generating the mnist1d suite")
    suite = load_suite("mnist1d", seed=seed, n_per_domain=n_per_domain)

    members, fit_seconds = train_members(suite, seed=seed, device=device, epochs=epochs, progress=progress)
    progress.stage("fitting the combiners on the validation data (members frozen), evaluating every model")
    by_name, cascade_info, curve = combine_and_evaluate(members, fit_seconds, suite, seed=seed)
    records = list(by_name.values())

    spawn_rows: list[dict[str, Any]] = []
    if spawn:
        progress.stage("spawning one distilled, fine-tuned expert per domain")
        spawn_rows = _spawn_section(members[LARGE], suite, seed)

    cycle = None
    if feedback:
        config = demo_cycle_config(seed=seed, device=device, n_per_domain=n_per_domain, epochs=epochs)
        cycle = run_cycle(config, seed, suite=suite, progress=progress)

    meta = {
        "suite": suite.name, "domains": suite.names, "seed": seed, "device": device, "n_per_domain": n_per_domain,
        "epochs": epochs, "seconds": round(time.perf_counter() - t_start, 2),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__},
    }
    result = DemoResult(records=records, cascade=cascade_info, spawn=spawn_rows, meta=meta, curve=curve, cycle=cycle)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "results.json", json.dumps(result.to_dict(), indent=2).encode())
        write_demo_report(result, out)
    return result


def evaluate_model(name: str, model: Any, suite: DomainSuite, *, kind: str, fit_s: float) -> dict[str, Any]:
    X_test, y_test = suite.pooled("test")
    classes = suite.classes
    # The pooled test set is the domains' test sets in order: predict each once, pool the outputs.
    probas = {d.name: model.predict_proba(d.X_test) for d in suite}
    per_domain = {d.name: score_all(label_indices(d.y_test, classes), probas[d.name]) for d in suite}
    pooled = score_all(label_indices(y_test, classes), np.concatenate(list(probas.values())))
    flops = model.expected_cost(X_test) if isinstance(model, Cascade | Router) else flops_per_sample(model, X_test)
    return {
        "name": name,
        "kind": kind,
        "accuracy": pooled["accuracy"],
        "nll": pooled["nll"],
        "ece": pooled["ece"],
        "domains": per_domain,
        "params": count_params(model),
        "flops_per_sample": float(flops),
        "latency_batch1_s": measure_latency(model, X_test, batch_size=1, repeats=3),
        "latency_batch256_s": measure_latency(model, X_test, batch_size=256, repeats=3, max_samples=1024),
        "fit_seconds": fit_s,
    }


def cascade_summary(
    cascade: Cascade, members: dict[str, Any], suite: DomainSuite, records: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The calibrated cascade against the large model, plus the accuracy-vs-cost curve on the test data."""
    X_test, y_test = suite.pooled("test")
    y_idx = label_indices(y_test, suite.classes)
    X_val, y_val = suite.pooled("val")
    by_name = {r["name"]: r for r in records}
    large, small, casc = by_name[LARGE], by_name[SMALL], by_name["cascade"]
    _, stage = cascade.predict_with_stages(X_test)

    # The curve every threshold of the small stage traces on the test data (thresholds from validation quantiles).
    stages = [members[SMALL], members[LARGE]]
    probas_test = [m.predict_proba(X_test) for m in stages]
    scores = np.stack([CONFIDENCE_RULES[cascade.rule](p) for p in probas_test])
    correct = np.stack([p.argmax(1) == y_idx for p in probas_test])
    val_scores = CONFIDENCE_RULES[cascade.rule](members[SMALL].predict_proba(X_val))
    grid = np.unique(np.concatenate([candidate_thresholds(val_scores, 200), [cascade.thresholds_[0]]]))
    thresholds = np.column_stack([grid, np.full(len(grid), -np.inf)])
    acc, cost, esc = cascade_outcomes(scores, correct, np.asarray(cascade.costs_)[cascade.order_], thresholds)
    match = cost_to_match(cost, acc, reference_accuracy=large["accuracy"], reference_cost=large["flops_per_sample"])
    auc = normalized_auc(
        cost, acc, small=(small["flops_per_sample"], small["accuracy"]),
        large=(small["flops_per_sample"] + large["flops_per_sample"], large["accuracy"]),
    ) if large["accuracy"] > small["accuracy"] else None
    info = {
        "members": [SMALL, LARGE],
        "rule": cascade.rule,
        "threshold": float(cascade.thresholds_[0]),
        "target_accuracy_val": float(cascade.target_accuracy_),
        "accuracy": casc["accuracy"],
        "large_accuracy": large["accuracy"],
        "gap_points": 100 * (casc["accuracy"] - large["accuracy"]),
        "escalation_rate": float(np.mean(stage > 0)),
        "flops_fraction": casc["flops_per_sample"] / large["flops_per_sample"],
        "latency_fraction_batch1": casc["latency_batch1_s"] / large["latency_batch1_s"],
        "latency_fraction_batch256": casc["latency_batch256_s"] / large["latency_batch256_s"],
        "cost_to_match_flops_fraction": match.fraction,
        "cost_to_match_accuracy": match.accuracy,
        "normalized_auc": auc,
    }
    order = np.argsort(cost)
    curve = {"flops": cost[order].tolist(), "accuracy": acc[order].tolist(), "escalation_rate": esc[order].tolist()}
    return info, curve


def _spawn_section(large: TorchClassifier, suite: DomainSuite, seed: int) -> list[dict[str, Any]]:
    return list(spawn_section(large, suite, seed))
