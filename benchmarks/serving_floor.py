"""Where batch-1 latency comes from on the serving path: a fixed cost per call plus a cost per node.

The serving benchmark finds small models far less faster at batch 1 than their FLOPs say (the
10% student of mnist1d: 2.01x, not 10x). This script measures why, with the weights irrelevant
(latency does not depend on them): chains of ``k`` fully connected layers of the input's width
(``mlp`` with ``k`` hidden layers of 40 units on mnist1d's 40 features: FLOPs almost nothing,
nodes ``2k + 2``) exported to ONNX and run through ``crossfeed.serving.OnnxModel`` at batch 1,
interleaved with the serving benchmark's members (same architectures, briefly fitted on random
data); beside each, ONNX Runtime's own bound run of one row (``run_with_iobinding`` on bound
buffers: no input check, no copies), the part of the call no Python wrapper can remove. A least-squares line ``latency = floor + per_node * nodes`` over the chains separates the
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
from _common import START_COMMIT, machine, write
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


def raw_run_us(model: OnnxModel, x: np.ndarray, calls: int = 2000) -> float:
    """Median microseconds of ONNX Runtime's own bound run of one row (no checks, no copies), over 5 rounds."""
    io = model.session_.io_binding()
    import onnxruntime as ort

    inp, out = ort.OrtValue.ortvalue_from_numpy(x[:1].copy()), ort.OrtValue.ortvalue_from_numpy(
        np.zeros((1, 10), dtype=np.float32))
    io.bind_ortvalue_input(model.session_.get_inputs()[0].name, inp)
    io.bind_ortvalue_output("probabilities", out)
    run = model.session_.run_with_iobinding
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            run(io)
        rounds.append((time.perf_counter() - start) / calls)
    return 1e6 * float(np.median(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved latency rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, N_FEATURES)).astype(np.float32)
    models = members(rng)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            sessions[name] = OnnxModel.from_model(model, path, example_X=X)
            rows[name] = {"nodes": len(onnx.load(str(path)).graph.node), "flops": flops_per_sample(model, X[:2]),
                          "ops": sorted({n.op_type for n in onnx.load(str(path)).graph.node})}
        for s in sessions.values():  # warm-up
            measure_latency(s, X, batch_size=1, repeats=1, max_samples=16)
        times: dict[str, list[float]] = {n: [] for n in sessions}
        for _ in range(args.repeats):
            for name, s in sessions.items():
                times[name].append(measure_latency(s, X, batch_size=1, repeats=1, max_samples=64))
        for name in rows:
            rows[name]["latency_b1_us"] = 1e6 * float(np.median(times[name]))
            rows[name]["ort_run_b1_us"] = raw_run_us(sessions[name], X)
    chains = [n for n in rows if n.startswith("chain")]
    nodes = np.array([rows[n]["nodes"] for n in chains], dtype=float)
    lat = np.array([rows[n]["latency_b1_us"] for n in chains])
    per_node, floor = np.polyfit(nodes, lat, 1)
    large = rows["large"]["latency_b1_us"]
    fit = {"floor_us": float(floor), "per_node_us": float(per_node),
           "max_residual_us": float(np.max(np.abs(lat - (floor + per_node * nodes)))),
           "large_latency_us": large, "budget_5x_us": large / 5,
           "max_nodes_5x": float((large / 5 - floor) / per_node)}
    payload = {"benchmark": "serving-floor", "command": "python benchmarks/serving_floor.py", "repeats": args.repeats,
               "machine": {**machine(), "commit": START_COMMIT}, "seconds": time.perf_counter() - t_start,
               "models": rows, "fit": fit}
    path = write("serving-floor", payload)
    print("| model | ONNX nodes | FLOPs per sample | latency b1 (us) | of which ONNX Runtime's bound run (us) |\n"
          "|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['nodes']} | {r['flops']:.0f} | {r['latency_b1_us']:.2f} | {r['ort_run_b1_us']:.2f} |")
    print(f"floor {floor:.2f} us + {per_node:.2f} us per node (largest residual {fit['max_residual_us']:.2f} us); "
          f"5x faster than the large model ({large:.2f} us) leaves {large / 5:.2f} us: at most "
          f"{fit['max_nodes_5x']:.2f} nodes. Wrote {path}")


if __name__ == "__main__":
    main()
