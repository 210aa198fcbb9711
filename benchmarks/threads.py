"""Threads benchmark: small-model fit time at 1 and 2 torch intra-op threads, idle and under load.

Why :func:`crossfeed.training.default_threads` is half the CPUs rather than torch's default (every
core): a small model gains little from a second thread, and loses a lot as soon as another process
takes a core, because every parallel operator then waits for its descheduled thread.

Two fits, each timed with ``TorchClassifier(threads=n).fit`` (so through the one training loop):

- ``mlp``: an MLP (64, 64) on tabular-sized data, ``make_classification`` 2000 x 20, 5 epochs,
  batch 128;
- ``cnn1d tiny``: the tiny 1-D CNN on the first 4000 MNIST-1D training rows of the ``mnist1d``
  suite, 1 epoch, batch 128.

at ``threads`` = 1, 2 and torch's default (``torch.get_num_threads()`` when this script starts;
measured separately only when it is neither 1 nor 2), in two loads:

- ``idle``: nothing of ours running besides the fit (other users of a shared machine are not
  stopped: the 1-minute load average is recorded with every phase);
- ``busy``: while a CPU-burning subprocess runs (a numpy matmul loop in ``python -c`` with one
  BLAS thread, i.e. one busy core), started for the phase and killed after it (it also stops by
  itself after ``--burner-max-s``).

Each repeat runs the idle phase then the busy phase, and inside a phase the thread counts one
after the other for each model, so machine noise hits every condition alike; one untimed warm-up
fit per model and thread count first. Figures: medians over the repeats and ratios of medians
(threads=2 over threads=1, busy over idle). No new repeat starts after ``--max-s`` seconds (the
repeats done are recorded), so a heavily loaded machine cannot stretch the run without bound.

    python benchmarks/threads.py            # 3 repeats, writes benchmarks/results/threads.json
    python benchmarks/threads.py --quick    # 1 repeat, smaller fits (smoke run)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.datasets import make_classification

from crossfeed.data import load_suite
from crossfeed.models import TorchClassifier
from crossfeed.training import default_threads

#: torch's own default, read at import (nothing above sets it; crossfeed sets threads only while fitting).
TORCH_DEFAULT_THREADS = torch.get_num_threads()

#: One busy core: a matmul loop with one BLAS thread, stopping by itself after ``{seconds}`` s.
BURNER = (
    "import time\n"
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((256, 256))\n"
    "end = time.time() + {seconds}\n"
    "while time.time() < end:\n"
    "    a = a @ a\n"
    "    a /= np.abs(a).max()\n"
)
ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def busy_core(max_seconds: float) -> Iterator[subprocess.Popen]:
    """Run a CPU-burning subprocess for the block; kill it after (it also stops after ``max_seconds``)."""
    proc = subprocess.Popen([sys.executable, "-c", BURNER.format(seconds=max_seconds)],
                            env={**os.environ, **ONE_THREAD_ENV})
    try:
        time.sleep(0.5)  # let it start spinning
        if proc.poll() is not None:
            raise RuntimeError(f"the CPU burner exited early with code {proc.returncode}")
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def fits(quick: bool) -> dict[str, tuple[Callable[[int], TorchClassifier], np.ndarray, np.ndarray, dict[str, Any]]]:
    """model name -> (estimator for a thread count, X, y, description)."""
    n_tab, n_img = (1000, 2000) if quick else (2000, 4000)
    X_tab, y_tab = make_classification(n_tab, 20, n_informative=10, random_state=0)
    X_img, y_img = load_suite("mnist1d", seed=0).pooled("train")
    X_img, y_img = X_img[:n_img], y_img[:n_img]

    def mlp(threads: int) -> TorchClassifier:
        return TorchClassifier("mlp", module_kwargs={"hidden": (64, 64)}, epochs=5, batch_size=128, threads=threads,
                               random_state=0)

    def cnn(threads: int) -> TorchClassifier:
        return TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=1, batch_size=128, threads=threads,
                               random_state=0)

    return {
        "mlp": (mlp, X_tab.astype(np.float32), y_tab, {"data": f"make_classification {n_tab} x 20",
                                                       "hidden": [64, 64], "epochs": 5, "batch_size": 128}),
        "cnn1d tiny": (cnn, X_img, y_img, {"data": f"mnist1d train, first {n_img} rows x {X_img.shape[1]}",
                                           "size": "tiny", "epochs": 1, "batch_size": 128}),
    }


def timed_fit(make: Callable[[int], TorchClassifier], X: np.ndarray, y: np.ndarray, threads: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one fit."""
    wall, cpu = time.perf_counter(), time.process_time()
    make(threads).fit(X, y)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burner-max-s", type=float, default=240.0,
                        help="the CPU burner stops by itself after this long, whatever happens here")
    parser.add_argument("--max-s", type=float, default=150.0, help="start no new repeat after this many seconds")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1

    counts = sorted({1, 2, TORCH_DEFAULT_THREADS})
    models = fits(args.quick)
    for make, X, y, _ in models.values():  # warm-up: allocator, first-call kernels, thread pools
        for n in counts:
            make(n).fit(X[:256], y[:256])

    start = time.perf_counter()
    wall: dict[str, dict[str, dict[int, list[float]]]] = {
        load: {m: {n: [] for n in counts} for m in models} for load in ("idle", "busy")}
    cpu: dict[str, dict[str, dict[int, list[float]]]] = {
        load: {m: {n: [] for n in counts} for m in models} for load in ("idle", "busy")}
    loadavg: dict[str, list[float]] = {"idle": [], "busy": []}
    done = 0
    for r in range(args.repeats):
        if time.perf_counter() - start > args.max_s:
            print(f"stopping after {done} repeats: past --max-s {args.max_s:.0f} s", flush=True)
            break
        done += 1
        for load in ("idle", "busy"):
            with busy_core(args.burner_max_s) if load == "busy" else nullcontext():
                loadavg[load].append(os.getloadavg()[0])
                for name, (make, X, y, _) in models.items():
                    for n in counts:
                        w, c = timed_fit(make, X, y, n)
                        wall[load][name][n].append(w)
                        cpu[load][name][n].append(c)
                        print(f"repeat {r} {load:4s} {name:10s} threads={n}: {w:7.3f} s wall, {c:7.3f} s cpu", flush=True)

    med = {load: {m: {n: float(np.median(v)) for n, v in rows.items()} for m, rows in by_model.items()}
           for load, by_model in wall.items()}
    results: dict[str, Any] = {}
    for load in wall:
        results[load] = {}
        for m in models:
            row: dict[str, Any] = {f"threads={n}": {"wall_s": summary(wall[load][m][n]), "cpu_s": summary(cpu[load][m][n])}
                                   for n in counts}
            row["ratio_2_over_1"] = med[load][m][2] / med[load][m][1]
            row["ratio_torch_default_over_1"] = med[load][m][TORCH_DEFAULT_THREADS] / med[load][m][1]
            results[load][m] = row
    busy_over_idle = {m: {f"threads={n}": med["busy"][m][n] / med["idle"][m][n] for n in counts} for m in models}
    payload = {
        "benchmark": "threads", "repeats": done, "repeats_asked": args.repeats, "quick": args.quick,
        "command": "python benchmarks/threads.py" + (" --quick" if args.quick else ""), "machine": machine(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_default_threads": TORCH_DEFAULT_THREADS, "crossfeed_default_threads": default_threads(),
        "thread_counts": counts,
        "models": {m: desc for m, (_, _, _, desc) in models.items()},
        "loads": {"idle": "no process of ours besides the fit",
                  "busy": "one CPU-burning subprocess (numpy matmul loop, one BLAS thread) during the phase"},
        "loadavg_1min_at_phase_start": loadavg,
        "results": results, "busy_over_idle": busy_over_idle,
        "seconds": time.perf_counter() - start,
    }
    path = write("threads-quick" if args.quick else "threads", payload)
    print(f"torch default threads: {TORCH_DEFAULT_THREADS}; crossfeed default_threads(): {default_threads()}")
    for load in wall:
        for m in models:
            cells = ", ".join(f"{n} thr {med[load][m][n]:.3f} s" for n in counts)
            print(f"{load:4s} {m:10s} median fit: {cells}; 2 / 1 = {results[load][m]['ratio_2_over_1']:.2f}x")
    print("wrote", path)


if __name__ == "__main__":
    main()
