"""Where batch-1 latency comes from on the serving path: a fixed cost per call plus a cost per node.

The serving benchmark finds small models far less faster at batch 1 than their FLOPs say (the
10% student of mnist1d: about 2x, not 10x). This script measures why, with the weights irrelevant
(latency does not depend on them): chains of ``k`` fully connected layers of the input's width
(``mlp`` with ``k`` hidden layers of 40 units on mnist1d's 40 features: FLOPs almost nothing,
nodes ``2k + 2``) exported to ONNX and run through ``crossfeed.serving.OnnxModel`` at batch 1,
interleaved with the serving benchmark's members (same architectures, briefly fitted on random
data); beside each, in the same rounds, ONNX Runtime's own bound run of one row (``run_with_iobinding``
on bound buffers: no input check, no copies), the part of the call no Python wrapper can remove.
Every pass builds fresh sessions (``--passes``, default 5; the figures are median [min, max]
over passes, which vary more between processes than within one). A least-squares line
``latency = floor + per_node * nodes`` over the chains separates the
call's fixed cost from each node's; with it, the largest graph that can run 5x faster than the
large model is ``(large latency / 5 - floor) / per_node`` nodes.

    python benchmarks/serving_floor.py          # results/serving-floor.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from _common import START_COMMIT, machine, span, summary, write
from serving import SUITES

from crossfeed.models import TorchClassifier, flops_per_sample, measure_latency
from crossfeed.serving import OnnxModel

N_FEATURES = 40  # mnist1d


def members(rng: np.random.Generator) -> dict[str, TorchClassifier]:
    """The serving benchmark's mnist1d members and the MLP chains, fitted for one epoch on random data."""
    X = rng.normal(size=(256, N_FEATURES)).astype(np.float32)
    y = np.arange(256) % 10
    spec = SUITES["mnist1d"]
    nets: dict[str, tuple[str, dict[str, Any]]] = {"large": (spec["arch"], spec["large"])}
    nets |= {name: arch for name, arch in spec["scratch"].items()}
    nets |= {name: (spec["arch"], {k: v for k, v in kw.items() if k != "mixup"})
             for name, kw in spec["students"].items() if not name.endswith("_fm")}
    nets |= {f"chain{k}": ("mlp", {"hidden": (N_FEATURES,) * k}) for k in range(0, 8)}
    return {name: TorchClassifier(arch, module_kwargs=kw, epochs=1, random_state=0).fit(X, y)
            for name, (arch, kw) in nets.items()}


def bound_run(model: OnnxModel, x: np.ndarray):
    """ONNX Runtime's own run of one row on bound buffers (no checks, no copies), as a no-argument call."""
    import onnxruntime as ort

    io = model.session_.io_binding()
    inp, out = ort.OrtValue.ortvalue_from_numpy(x[:1].copy()), ort.OrtValue.ortvalue_from_numpy(
        np.zeros((1, 10), dtype=np.float32))
    io.bind_ortvalue_input(model.session_.get_inputs()[0].name, inp)
    io.bind_ortvalue_output("probabilities", out)
    run = model.session_.run_with_iobinding
    return lambda: run(io)


def seconds_per_call(call, calls: int = 400) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def line(nodes: np.ndarray, latency: np.ndarray) -> dict[str, float]:
    """Least-squares ``latency = floor + per_node * nodes`` and its largest residual (microseconds)."""
    per_node, floor = np.polyfit(nodes, latency, 1)
    return {"floor_us": float(floor), "per_node_us": float(per_node),
            "max_residual_us": float(np.max(np.abs(latency - (floor + per_node * nodes))))}


def one_pass(models: dict[str, TorchClassifier], X: np.ndarray, repeats: int, tmp: Path) -> dict[str, Any]:
    """Fresh sessions for every model; ``repeats`` interleaved rounds; the two fitted lines."""
    sessions = {name: OnnxModel.from_model(model, tmp / f"{name}.onnx", example_X=X) for name, model in models.items()}
    bound = {name: bound_run(s, X) for name, s in sessions.items()}
    for s in sessions.values():  # warm-up
        measure_latency(s, X, batch_size=1, repeats=1, max_samples=16)
    times: dict[str, list[float]] = {n: [] for n in sessions}
    raw: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(repeats):  # each round: every model through the wrapper, then bound
        for name, s in sessions.items():
            times[name].append(measure_latency(s, X, batch_size=1, repeats=1, max_samples=256))
            raw[name].append(seconds_per_call(bound[name]))
    latency = {n: 1e6 * float(np.median(t)) for n, t in times.items()}
    bound_us = {n: 1e6 * float(np.median(t)) for n, t in raw.items()}
    chains = [n for n in models if n.startswith("chain")]
    nodes = np.array([int(n.removeprefix("chain")) * 2 + 2 for n in chains], dtype=float)
    fit = {**line(nodes, np.array([latency[n] for n in chains])), "large_latency_us": latency["large"],
           "budget_5x_us": latency["large"] / 5}
    fit["max_nodes_5x"] = (fit["budget_5x_us"] - fit["floor_us"]) / fit["per_node_us"]
    return {"latency_b1_us": latency, "ort_run_b1_us": bound_us, "fit": fit,
            "bound_fit": line(nodes, np.array([bound_us[n] for n in chains]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=61, help="interleaved latency rounds per pass")
    parser.add_argument("--passes", type=int, default=5, help="passes, each with fresh sessions (spread between them)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, N_FEATURES)).astype(np.float32)
    models = members(rng)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            OnnxModel.from_model(model, path, example_X=X)
            graphs[name] = onnx.load(str(path)).graph.node
        passes = [one_pass(models, X, args.repeats, Path(tmp)) for _ in range(args.passes)]
    rows = {name: {"nodes": len(graphs[name]), "ops": sorted({n.op_type for n in graphs[name]}),
                   "flops": flops_per_sample(model, X[:2]),
                   **{key: summary([p[key][name] for p in passes]) for key in ("latency_b1_us", "ort_run_b1_us")}}
            for name, model in models.items()}
    assert all(rows[n]["nodes"] == int(n.removeprefix("chain")) * 2 + 2 for n in rows if n.startswith("chain"))
    fit = {key: summary([p["fit"][key] for p in passes]) for key in passes[0]["fit"]}
    bound_fit = {key: summary([p["bound_fit"][key] for p in passes]) for key in passes[0]["bound_fit"]}
    payload = {"benchmark": "serving-floor", "command": "python benchmarks/serving_floor.py", "repeats": args.repeats,
               "passes": args.passes, "machine": {**machine(), "commit": START_COMMIT},
               "seconds": time.perf_counter() - t_start, "models": rows, "fit": fit, "bound_fit": bound_fit}
    path = write("serving-floor", payload)
    print(f"Median [min, max] over {args.passes} passes of {args.repeats} interleaved rounds.\n\n"
          "| model | ONNX nodes | FLOPs per sample | latency b1 (us) | ONNX Runtime's bound run (us) |\n"
          "|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['nodes']} | {r['flops']:.0f} | {span(r['latency_b1_us'], digits=2)} | {span(r['ort_run_b1_us'], digits=2)} |")
    print(f"\nserved: floor {span(fit['floor_us'], digits=2)} us + {span(fit['per_node_us'], digits=2)} us per node (largest residual "
          f"{span(fit['max_residual_us'], digits=2)} us); bound run: floor {span(bound_fit['floor_us'], digits=2)} us + "
          f"{span(bound_fit['per_node_us'], digits=2)} us per node; 5x faster than the large model leaves "
          f"{span(fit['budget_5x_us'], digits=2)} us: at most {span(fit['max_nodes_5x'])} nodes served. Wrote {path}")


if __name__ == "__main__":
    main()
