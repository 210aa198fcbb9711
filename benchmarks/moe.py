"""Mixture-of-experts benchmark (issue 12, technique #8): one servable model from the large model and the experts.

Per suite and seed: v0 (the large CNN) trains on the general domain only; each shifted domain
gets two kinds of expert: a small CNN distilled from v0 and fine-tuned on the domain
(``spawn_experts``, the cheap kind) and a fine-tuned copy of v0 (``finetune``, the kind weight
merging needs). Then, with the members frozen:

- ``moe top-1`` / ``moe top-2``: ``crossfeed.combine.compose_experts`` over v0 and the experts,
  a tiny-CNN gate trained on every domain's labelled validation split (mixture likelihood) and
  on every domain's field data with its domain's member as the target (the general domain's
  validation rows go to v0), with the load-balancing term (weight 0.01);
- ``wemoe``: ``crossfeed.combine.weight_ensemble`` of the fine-tuned copies (every linear layer
  routed, routers trained on the validation splits); ``task arithmetic`` is the same network
  with untrained routers (lam 0.3), its starting point.

Reported per method: accuracy per domain (test split), the gap to each domain's expert on its
own domain and to v0 on the general domain (goal: no gap below -1 point), FLOPs per sample as
routed (``mixture_flops_per_sample``) over v0's, batch-1 latency of ``predict_proba`` over v0's
(measured side by side in one process), the routing shares, and that the composed model
survives ``save_model`` / ``load_model`` and ONNX export (largest probability difference).
Medians with [min, max] over seeds.

    python benchmarks/moe.py --suite mnist1d       # 3 seeds, results/moe-mnist1d.json
    python benchmarks/moe.py --suite fashion       # 3 seeds, results/moe-fashion.json
    python benchmarks/moe.py --quick               # smoke run: 1 seed, small data, few epochs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import START_COMMIT, machine, summary, write

from crossfeed.combine import compose_experts, mixture_flops_per_sample, routing_shares, weight_ensemble
from crossfeed.data import load_suite
from crossfeed.models import TorchClassifier, flops_per_sample, load_model, measure_latency, save_model
from crossfeed.spawn import finetune, spawn_experts

#: Per suite: samples per domain, epochs of v0 / experts, the architectures.
SUITES: dict[str, dict[str, Any]] = {
    "mnist1d": {"n_per_domain": 2000, "epochs": 15, "large": ("cnn1d", {"size": "large", "dropout": 0.2}),
                "student": "cnn1d:tiny", "gate": {"architecture": "cnn1d", "kwargs": {"size": "tiny"}}},
    "fashion": {"n_per_domain": 2000, "epochs": 8, "large": ("cnn2d", {"size": "large", "dropout": 0.2}),
                "student": "cnn2d:tiny", "gate": {"architecture": "cnn2d", "kwargs": {"size": "tiny"}}},
}
GOAL_POINTS = 0.01


def _acc(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y))


def setup(name: str, seed: int, cfg: dict[str, Any]) -> tuple[Any, TorchClassifier, dict[str, dict[str, Any]], dict]:
    suite = load_suite(name, seed=seed, n_per_domain=cfg["n_per_domain"])
    general = suite[suite.general_domain]
    shifted = [n for n in suite.names if n != general.name]
    arch, kwargs = cfg["large"]
    seconds = {}
    t0 = time.perf_counter()
    v0 = TorchClassifier(arch, module_kwargs=kwargs, epochs=2 * cfg["epochs"], lr=2e-3, weight_decay=1e-2,
                         patience=5, random_state=seed)
    v0.fit(general.X_train, general.y_train, X_val=general.X_val, y_val=general.y_val)
    seconds["v0"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    distilled = spawn_experts(v0, suite, student=cfg["student"], epochs=cfg["epochs"],
                              finetune_epochs=cfg["epochs"], domains=shifted, random_state=seed)
    seconds["experts_distilled"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    copies = {n: finetune(v0, suite[n], epochs=cfg["epochs"], random_state=seed + i) for i, n in enumerate(shifted)}
    seconds["experts_finetuned"] = time.perf_counter() - t0
    return suite, v0, {"distilled": distilled, "finetuned": copies}, seconds


def gate_data(suite: Any) -> dict[str, Any]:
    """Labelled validation rows of every domain, and field rows routed to their domain's member."""
    general = suite.general_domain
    shifted = [n for n in suite.names if n != general]
    X_routed = np.concatenate([suite[n].X_field for n in shifted] + [suite[general].X_val])
    routed_to = [n for n in shifted for _ in range(len(suite[n].X_field))] + ["large"] * len(suite[general].X_val)
    return {"X": np.concatenate([suite[n].X_val for n in suite.names]),
            "y": np.concatenate([suite[n].y_val for n in suite.names]),
            "X_routed": X_routed, "routed_to": routed_to}


def evaluate(model: Any, suite: Any, experts: dict[str, Any], v0_acc: dict[str, float]) -> dict[str, Any]:
    acc = {d.name: _acc(model, d.X_test, d.y_test) for d in suite}
    gaps = {n: acc[n] - _acc(e, suite[n].X_test, suite[n].y_test) for n, e in experts.items()}
    gaps[suite.general_domain] = acc[suite.general_domain] - v0_acc[suite.general_domain]
    return {"accuracy": acc, "gap": gaps, "worst_gap": min(gaps.values()),
            "goal_met": bool(min(gaps.values()) >= -GOAL_POINTS)}


def cost(model: Any, v0: Any, X: np.ndarray, *, routed: bool) -> dict[str, Any]:
    flops = mixture_flops_per_sample(model, X) if routed else flops_per_sample(model, X)
    lat_v0 = measure_latency(v0, X, batch_size=1)
    lat = measure_latency(model, X, batch_size=1)
    return {"flops_fraction": flops / flops_per_sample(v0, X), "latency_b1_ratio": lat / lat_v0,
            "latency_b1_s": lat, "latency_b1_v0_s": lat_v0}


def round_trip(model: TorchClassifier, X: np.ndarray) -> dict[str, Any]:
    """save_model -> load_model gives the same probabilities; ONNX export (if onnx is installed) too."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, Path(tmp) / "moe")
        out["reload_max_abs_diff"] = float(np.abs(load_model(path).predict_proba(X) - model.predict_proba(X)).max())
        try:
            from crossfeed.spawn import export_onnx

            out["onnx_max_abs_diff"] = float(export_onnx(model, Path(tmp) / "moe.onnx", example_X=X[:64]).max_abs_diff)
        except ImportError as exc:
            out["onnx_max_abs_diff"] = f"not run: {exc}"
    return out


def run_seed(name: str, seed: int, cfg: dict[str, Any], epochs: int) -> dict[str, Any]:
    suite, v0, experts, seconds = setup(name, seed, cfg)
    v0_acc = {d.name: _acc(v0, d.X_test, d.y_test) for d in suite}
    X_test = np.concatenate([d.X_test for d in suite]).reshape(-1, v0.n_features_in_)
    X_lat = X_test[np.random.default_rng(seed).permutation(len(X_test))[:256]]
    data = gate_data(suite)
    row: dict[str, Any] = {"seed": seed, "setup_seconds": seconds, "v0": v0_acc,
                           "experts": {k: {n: _acc(e, suite[n].X_test, suite[n].y_test) for n, e in ex.items()}
                                       for k, ex in experts.items()}, "methods": {}}
    for kind, ex in experts.items():
        for k in (1, 2):
            t0 = time.perf_counter()
            moe = compose_experts({"large": v0, **ex}, **data, top_k=k, gate=cfg["gate"], epochs=epochs,
                                  random_state=seed)
            fit_s = time.perf_counter() - t0
            res = evaluate(moe, suite, ex, v0_acc) | cost(moe, v0, X_lat, routed=True)
            res |= {"fit_seconds": fit_s, "routing_shares": routing_shares(moe, X_test),
                    "flops_fraction_test": mixture_flops_per_sample(moe, X_test) / flops_per_sample(v0, X_test)}
            if k == 1:
                res |= round_trip(moe, X_lat)
            row["methods"][f"moe top-{k} ({kind} experts)"] = res
    copies = experts["finetuned"]
    X_val, y_val = data["X"], data["y"]
    for label, kw in {"task arithmetic (lam 0.3)": {"epochs": 1, "lr": 0.0},
                      "wemoe (routers on validation)": {"epochs": epochs // 3 or 1}}.items():
        t0 = time.perf_counter()
        merged = weight_ensemble(v0, copies, X_val, y_val, random_state=seed, **kw)
        res = evaluate(merged, suite, copies, v0_acc) | cost(merged, v0, X_lat, routed=False)
        row["methods"][label] = res | {"fit_seconds": time.perf_counter() - t0}
    return row


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    methods = list(runs[0]["methods"])
    table: dict[str, Any] = {}
    for m in methods:
        rs = [r["methods"][m] for r in runs]
        table[m] = {
            "accuracy": {d: summary([r["accuracy"][d] for r in rs]) for d in rs[0]["accuracy"]},
            "gap": {d: summary([r["gap"][d] for r in rs]) for d in rs[0]["gap"]},
            "worst_gap": summary([r["worst_gap"] for r in rs]),
            "goal_met_seeds": f"{sum(r['goal_met'] for r in rs)}/{len(rs)}",
            "flops_fraction": summary([r["flops_fraction"] for r in rs]),
            "latency_b1_ratio": summary([r["latency_b1_ratio"] for r in rs]),
        }
    return {"methods": table,
            "v0": {d: summary([r["v0"][d] for r in runs]) for d in runs[0]["v0"]},
            "experts": {k: {n: summary([r["experts"][k][n] for r in runs]) for n in runs[0]["experts"][k]}
                        for k in runs[0]["experts"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=list(SUITES), default="mnist1d")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gate-epochs", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="1 seed, 600 samples per domain, 2 epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="results file name (default moe-<suite>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(SUITES[args.suite])
    if args.quick:
        args.seeds, args.gate_epochs = args.seeds[:1], 3
        cfg |= {"n_per_domain": 600, "epochs": 2}
    t0 = time.perf_counter()
    runs = [run_seed(args.suite, s, cfg, args.gate_epochs) for s in args.seeds]
    payload = {"command": "python benchmarks/moe.py " + " ".join(sys.argv[1:]), "commit": START_COMMIT,
               "machine": machine(), "threads": args.threads, "suite": args.suite,
               "settings": {k: v for k, v in cfg.items()} | {"gate_epochs": args.gate_epochs, "seeds": args.seeds},
               "goal": "composed model within 1 point of each expert on its domain and of v0 on the general domain",
               "wall_seconds": time.perf_counter() - t0, "summary": aggregate(runs), "runs": runs}
    path = write(args.out or (f"moe-{args.suite}" + ("-quick" if args.quick else "")), payload)
    for m, r in payload["summary"]["methods"].items():
        print(f"{m:40s} worst gap {r['worst_gap']['median']:+.3f} goal {r['goal_met_seeds']} "
              f"flops {r['flops_fraction']['median']:.3f} b1 {r['latency_b1_ratio']['median']:.2f}")
    print("wrote", path)


if __name__ == "__main__":
    main()
