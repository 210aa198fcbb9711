"""Data-parallel training throughput: the one training loop on 2 processes (torchrun, gloo) vs 1.

The large model of the mnist1d suite (cnn1d "large") is trained on the general domain's training
data with the same global batch, epochs and seed, once in one process and once under
``torchrun --nproc_per_node=2`` (each process one torch thread, pinned to its own core with
``taskset``), after one untimed warm-up epoch in the same process. Reported per repeat: wall
seconds of ``fit``, training samples per second, the ratio 2-process / 1-process throughput, and the test accuracy of each (BatchNorm normalises each
shard on CPU and dropout draws its own masks per rank, so the two models are close, not equal).

    python benchmarks/ddp.py                 # global batch 128 and 256, 5 repeats -> benchmarks/results/ddp-cpu.json
    python benchmarks/ddp.py --repeats 1 --epochs 2 --batch-sizes 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, summary, write


def worker(out: Path, epochs: int, batch_size: int) -> None:
    """Train once (data-parallel when torchrun launched this process); rank 0 writes its timing."""
    from crossfeed.data import load_suite
    from crossfeed.models import TorchClassifier
    from crossfeed.training import init_from_env

    w = init_from_env("cpu")
    suite = load_suite("mnist1d", seed=0)
    general = suite[suite.general_domain]

    def classifier(n_epochs: int) -> TorchClassifier:
        return TorchClassifier("cnn1d", module_kwargs={"size": "large"}, epochs=n_epochs, batch_size=batch_size,
                               lr=2e-3, random_state=0, validation_fraction=0.0, patience=None, threads=1)

    # Warm-up, not timed: the first fit of a process pays ~1 s of one-off start-up (kernels, thread
    # pool, the process group's first collectives), which would hide the per-step cost being measured.
    classifier(1).fit(general.X_train, general.y_train)
    model = classifier(epochs)
    t = time.perf_counter()
    model.fit(general.X_train, general.y_train)
    seconds = time.perf_counter() - t
    if w.rank == 0:
        out.write_text(json.dumps({"seconds": seconds, "samples": len(general.y_train) * epochs, "world": w.size,
                                   "test_accuracy": float(model.score(general.X_test, general.y_test))}))


def launch(processes: int, epochs: int, batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        args = [__file__, "--worker", str(out), "--epochs", str(epochs), "--batch-size", str(batch_size)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if processes == 1:
            cmd = ["taskset", "-c", "0", sys.executable, *args]
        else:  # torchrun pins nothing: each worker pins itself to its core (local rank) in main()
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)  # the worker's
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256], help="global batch sizes")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        if "LOCAL_RANK" in os.environ:
            os.sched_setaffinity(0, {int(os.environ["LOCAL_RANK"]) % os.cpu_count()})
        worker(args.worker, args.epochs, args.batch_size)
        return
    rows = []
    for batch_size in args.batch_sizes:
        for repeat in range(args.repeats):
            one, two = launch(1, args.epochs, batch_size), launch(2, args.epochs, batch_size)
            rows.append({"batch_size": batch_size, "repeat": repeat, "one_process": one, "two_processes": two,
                         "throughput_ratio": (two["samples"] / two["seconds"]) / (one["samples"] / one["seconds"])})
            print(f"batch {batch_size} repeat {repeat}: 1 process {one['seconds']:.1f} s, "
                  f"2 processes {two['seconds']:.1f} s, ratio {rows[-1]['throughput_ratio']:.2f}", flush=True)

    def of(batch_size: int) -> dict[str, Any]:
        mine = [r for r in rows if r["batch_size"] == batch_size]
        return {"throughput_ratio": summary([r["throughput_ratio"] for r in mine]),
                "one_process_seconds": summary([r["one_process"]["seconds"] for r in mine]),
                "two_processes_seconds": summary([r["two_processes"]["seconds"] for r in mine]),
                "one_process_test_accuracy": summary([r["one_process"]["test_accuracy"] for r in mine]),
                "two_processes_test_accuracy": summary([r["two_processes"]["test_accuracy"] for r in mine])}

    payload = {
        "benchmark": "ddp", "machine": machine(), "settings": vars(args) | {"worker": None},
        "model": "cnn1d large (77,450 parameters), mnist1d general domain (2,000 rows), 1 torch thread per process",
        "rows": rows,
        "summary": {f"batch_{b}": of(b) for b in args.batch_sizes},
    }
    print(write("ddp-cpu", payload))


if __name__ == "__main__":
    main()
