"""Spawn benchmark on the mnist1d suite (BENCHMARKS.md §spawn).

Every model trains for the same fixed number of epochs (lr 3e-3, no early stopping: early stopping
on the validation cross-entropy stops distilled students too soon, see ``--patience``).

For each seed: the teacher (cnn1d large) is trained on the pooled training data; students at four
sizes (about 2%, 5%, 10% and 25% of the teacher's parameters, cnn1d with fewer channels) are
trained four ways: from scratch; distilled (T=4, alpha=0.9, the pooled field data as unlabelled
transfer data); distilled then structurally pruned by 50% of the channels and recovered by
distilling for half the epochs; distilled then quantized to int8 (FX static, x86). Every model is scored
on the pooled test set; retention = student accuracy / teacher accuracy. Latency is measured side
by side in one run, interleaved (teacher and students in turn, median of the repeats), at batch 1
and batch 256, two ways: through ``predict_proba`` (what a scikit-learn caller pays, input checks
included) and the bare module forward (``torch.inference_mode``). File size = bytes of a
safetensors file of the weights (int8 tensors for the quantized students). ONNX parity = max
absolute difference of probabilities between ONNX Runtime and PyTorch on the test set.

    python benchmarks/spawn.py            # 3 seeds, writes benchmarks/results/spawn.json
    python benchmarks/spawn.py --quick    # 1 seed, small data, few epochs (smoke run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write

from crossfeed.data import load_suite
from crossfeed.models import TorchClassifier, count_params, flops_per_sample
from crossfeed.serving import OnnxModel, quantize_onnx
from crossfeed.spawn import Distiller, export_onnx, prune_structured, quantize_static, weights_file_size

TEACHER = {"size": "large"}
#: Students by their target share of the teacher's 77,450 parameters.
STUDENTS: dict[str, dict[str, Any]] = {
    "2%": {"channels": [8, 8], "hidden": 32},
    "5%": {"channels": [12, 12, 12], "hidden": 64},
    "10%": {"channels": [20, 20, 20], "hidden": 64},
    "25%": {"size": "medium"},
}
VARIANTS = ("scratch", "distilled", "distilled+pruned50", "distilled+int8")


def _module_forward_s(model: TorchClassifier, X: torch.Tensor, batch_size: int) -> float:
    """Seconds per sample of one pass of the bare module over ``X`` in batches."""
    module = model.module_
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(X), batch_size):
            module(X[i : i + batch_size])
    return (time.perf_counter() - start) / len(X)


def _api_s(model: TorchClassifier | OnnxModel, X: np.ndarray, batch_size: int) -> float:
    """Seconds per sample of ``predict_proba`` over ``X`` in batches."""
    start = time.perf_counter()
    for i in range(0, len(X), batch_size):
        model.predict_proba(X[i : i + batch_size])
    return (time.perf_counter() - start) / len(X)


def measure_latencies(
    models: dict[str, TorchClassifier], served: dict[str, dict[str, OnnxModel]], X: np.ndarray, repeats: int
) -> dict[str, dict[str, float]]:
    """Interleaved latency of every model: median seconds per sample over ``repeats`` rounds.

    ``served[name]`` holds the model's ONNX Runtime sessions ("onnx", "onnx_int8"), when it has them.
    """
    X1, X256 = X[:64], X[:512]
    T1, T256 = torch.as_tensor(X1), torch.as_tensor(X256)
    probes = {
        "api_b1": lambda m: _api_s(m, X1, 1), "api_b256": lambda m: _api_s(m, X256, 256),
        "module_b1": lambda m: _module_forward_s(m, T1, 1), "module_b256": lambda m: _module_forward_s(m, T256, 256),
    }
    times: dict[str, dict[str, list[float]]] = {name: {k: [] for k in probes} for name in models}
    for name in models:
        for path in served.get(name, {}):
            times[name] |= {f"{path}_b1": [], f"{path}_b256": []}
    for name, model in models.items():  # warm-up: kernels, allocator
        for probe in probes.values():
            probe(model)
        for session in served.get(name, {}).values():
            _api_s(session, X1, 1)
    for _ in range(repeats):
        for name, model in models.items():
            for key, probe in probes.items():
                times[name][key].append(probe(model))
            for path, session in served.get(name, {}).items():
                times[name][f"{path}_b1"].append(_api_s(session, X1, 1))
                times[name][f"{path}_b256"].append(_api_s(session, X256, 256))
    return {name: {k: float(np.median(v)) for k, v in t.items()} for name, t in times.items()}


def run_seed(
    seed: int, n_per_domain: int, epochs: int, repeats: int, prune_ratio: float, patience: int | None
) -> dict[str, Any]:
    suite = load_suite("mnist1d", seed=seed, n_per_domain=n_per_domain)
    X, y = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    X_test, y_test = suite.pooled("test")
    X_field = np.concatenate([d.X_field for d in suite])
    fit = {"epochs": epochs, "lr": 3e-3, "patience": patience, "random_state": seed}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    teacher = TorchClassifier("cnn1d", module_kwargs=TEACHER, **fit).fit(X, y, X_val=X_val, y_val=y_val)
    seconds["teacher"] = time.perf_counter() - t0
    models: dict[str, TorchClassifier] = {"teacher": teacher}
    float_of: dict[str, str] = {}
    for label, kwargs in STUDENTS.items():
        template = TorchClassifier("cnn1d", module_kwargs=kwargs, **fit)
        t0 = time.perf_counter()
        models[f"{label}/scratch"] = TorchClassifier(**template.get_params()).fit(X, y, X_val=X_val, y_val=y_val)
        seconds[f"{label}/scratch"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        distilled = Distiller(teacher, template, temperature=4.0, alpha=0.9).fit(
            X, y, X_val=X_val, y_val=y_val, X_transfer=X_field
        ).student_
        seconds[f"{label}/distilled"] = time.perf_counter() - t0
        models[f"{label}/distilled"] = distilled
        t0 = time.perf_counter()
        models[f"{label}/distilled+pruned50"] = prune_structured(
            distilled, prune_ratio, example_X=X, teacher=teacher,
            fine_tune={"X": X, "y": y, "X_transfer": X_field, "X_val": X_val, "y_val": y_val,
                       "epochs": max(1, epochs // 2), "lr": 3e-3, "patience": patience},
        )
        seconds[f"{label}/distilled+pruned50"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        models[f"{label}/distilled+int8"] = quantize_static(distilled, X[:512])
        seconds[f"{label}/distilled+int8"] = time.perf_counter() - t0
        float_of[f"{label}/distilled+int8"] = f"{label}/distilled"

    records: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        served: dict[str, dict[str, OnnxModel]] = {}
        int8_accuracy: dict[str, float] = {}
        for name, model in models.items():
            if name in float_of:
                continue
            slug = name.replace("/", "_").replace("%", "pct").replace("+", "_")
            onnx = OnnxModel.from_model(model, Path(tmp) / f"{slug}.onnx", example_X=X_test[:256])
            q = quantize_onnx(onnx, Path(tmp) / f"{slug}.int8.onnx", calibration_X=X[:512])
            served[name] = {"onnx": onnx, "onnx_int8": OnnxModel.load(q.path)}
            int8_accuracy[name] = float(np.mean(served[name]["onnx_int8"].predict(X_test) == y_test))
        latency = measure_latencies(models, served, X_test, repeats)
        for name, model in models.items():
            counted = models[float_of.get(name, name)]  # int8 kernels hide params/FLOPs from torch's counters
            rec: dict[str, Any] = {
                "accuracy": float(np.mean(model.predict(X_test) == y_test)),
                "params": count_params(counted),
                "flops": flops_per_sample(counted, X_test),
                "file_bytes": weights_file_size(model),
                "fit_seconds": seconds.get(name, 0.0),
                **{f"latency_{k}_us": 1e6 * v for k, v in latency[name].items()},
            }
            if name not in float_of:
                report = export_onnx(model, Path(tmp) / "m.onnx", example_X=X_test)
                rec["onnx_max_abs_diff"], rec["onnx_bytes"] = report.max_abs_diff, report.file_size_bytes
                rec["onnx_int8_accuracy"] = int8_accuracy[name]
            records[name] = rec
    ref = records["teacher"]
    for rec in records.values():
        rec["retention"] = rec["accuracy"] / ref["accuracy"]
        rec["param_share"] = rec["params"] / ref["params"]
        rec["flops_share"] = rec["flops"] / ref["flops"]
        rec["file_share"] = rec["file_bytes"] / ref["file_bytes"]
        for k in ("api_b1", "api_b256", "module_b1", "module_b256", "onnx_b1", "onnx_b256"):
            if f"latency_{k}_us" in rec:
                rec[f"speedup_{k}"] = ref[f"latency_{k}_us"] / rec[f"latency_{k}_us"]
        for b in ("b1", "b256"):
            if f"latency_onnx_int8_{b}_us" in rec:
                # int8 against the float teacher on the same path, and against the model's own float graph
                rec[f"speedup_onnx_int8_{b}"] = ref[f"latency_onnx_{b}_us"] / rec[f"latency_onnx_int8_{b}_us"]
                rec[f"int8_vs_float_onnx_{b}"] = rec[f"latency_onnx_{b}_us"] / rec[f"latency_onnx_int8_{b}_us"]
    return {"seed": seed, "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-domain", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (pruning recovery: half)")
    parser.add_argument("--patience", type=int, default=None,
                        help="early stopping on validation loss (default: none, every model gets the same epochs)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--prune", type=float, default=0.5, help="share of channels removed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: stable on shared machines; latencies are per thread)")
    parser.add_argument("--quick", action="store_true", help="one seed, 400 samples per domain, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_per_domain, args.epochs, args.repeats = [0], 400, 2, 2
    torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs.append(run_seed(seed, args.n_per_domain, args.epochs, args.repeats, args.prune, args.patience))
        acc = {k: round(v["accuracy"], 3) for k, v in runs[-1]["records"].items() if k.endswith(("teacher", "distilled"))}
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s {acc}", flush=True)

    keys = ("accuracy", "retention", "params", "param_share", "flops", "flops_share", "file_bytes", "file_share",
            "fit_seconds", "latency_api_b1_us", "latency_api_b256_us", "latency_module_b1_us",
            "latency_module_b256_us", "speedup_api_b1", "speedup_api_b256", "speedup_module_b1",
            "speedup_module_b256", "onnx_max_abs_diff", "onnx_bytes", "onnx_int8_accuracy", "latency_onnx_b1_us",
            "latency_onnx_b256_us", "latency_onnx_int8_b1_us", "latency_onnx_int8_b256_us", "speedup_onnx_b1",
            "speedup_onnx_b256", "speedup_onnx_int8_b1", "speedup_onnx_int8_b256", "int8_vs_float_onnx_b1",
            "int8_vs_float_onnx_b256")
    table = {}
    for name in runs[0]["records"]:
        recs = [r["records"][name] for r in runs]
        table[name] = {k: summary([rec[k] for rec in recs]) for k in keys if k in recs[0]}
    command = "python benchmarks/spawn.py" + (" --quick" if args.quick else "")
    payload = {
        "benchmark": "spawn", "suite": "mnist1d", "command": command, "seeds": args.seeds,
        "n_per_domain": args.n_per_domain, "epochs": args.epochs, "patience": args.patience, "repeats": args.repeats,
        "prune_recovery": {"epochs": max(1, args.epochs // 2), "lr": 3e-3, "by": "distillation from the teacher"},
        "prune_ratio": args.prune, "teacher": {"architecture": "cnn1d", **TEACHER},
        "students": STUDENTS, "distillation": {"temperature": 4.0, "alpha": 0.9, "transfer": "pooled field data"},
        "machine": machine(), "seconds": time.perf_counter() - t_start, "table": table, "runs": runs,
    }
    path = write("spawn-quick" if args.quick else "spawn", payload)
    print(markdown_table(table, args))
    print(f"total {payload['seconds']:.0f} s; wrote {path}")


def _fmt(s: dict[str, float], scale: float = 1.0, digits: int = 1, pct: bool = False) -> str:
    unit = "%" if pct else ""
    m, lo, hi = (scale * s[k] for k in ("median", "min", "max"))
    return f"{m:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _ort(row: dict[str, dict[str, float]], b: str) -> str:
    if f"speedup_onnx_{b}" not in row:
        return "-"
    return f"{row[f'speedup_onnx_{b}']['median']:.2f}x / {row[f'speedup_onnx_int8_{b}']['median']:.2f}x"


def markdown_table(table: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> str:
    head = ("| model | accuracy % | retention % | params (share) | FLOPs/sample | weights KiB | "
            "speed-up b1 (API / module) | speed-up b256 (API / module) | ONNX parity | "
            "speed-up b1 ONNX Runtime (float / int8) | speed-up b256 ONNX Runtime (float / int8) | "
            "int8 ONNX accuracy % |")
    lines = [head, "|---" * 12 + "|"]
    for name, row in table.items():
        parity = "-" if "onnx_max_abs_diff" not in row else f"{row['onnx_max_abs_diff']['max']:.0e}"
        lines.append(
            f"| {name} | {_fmt(row['accuracy'], 100)} | {_fmt(row['retention'], 100)} | "
            f"{row['params']['median']:,.0f} ({100 * row['param_share']['median']:.1f}%) | "
            f"{row['flops']['median'] / 1e3:,.0f}k | {row['file_bytes']['median'] / 1024:,.1f} | "
            f"{row['speedup_api_b1']['median']:.2f}x / {row['speedup_module_b1']['median']:.2f}x | "
            f"{row['speedup_api_b256']['median']:.2f}x / {row['speedup_module_b256']['median']:.2f}x | "
            f"{parity} | {_ort(row, 'b1')} | {_ort(row, 'b256')} | "
            f"{_fmt(row['onnx_int8_accuracy'], 100) if 'onnx_int8_accuracy' in row else '-'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
