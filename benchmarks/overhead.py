"""Overhead benchmark (BENCHMARKS.md §overhead).

1. Training throughput of crossfeed's one loop (``crossfeed.training.train`` through
   ``TorchClassifier.fit``) against a plain PyTorch loop on the same model, data, batch size and
   device: samples per second, runs interleaved (plain, crossfeed, plain, ...) so machine noise
   hits both; the figure is the ratio of medians (goal >= 0.95x).
2. Inference overhead of a combiner (MeanEnsemble) and of a cascade against calling the members
   directly and averaging / routing by hand.

    python benchmarks/overhead.py            # writes benchmarks/results/overhead.json
    python benchmarks/overhead.py --quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine, summary, write

from crossfeed.combine import Cascade, MeanEnsemble
from crossfeed.data import load_suite
from crossfeed.models import TorchClassifier, build_module


def plain_loop(X: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, seed: int, device: str) -> float:
    """The loop a user would write by hand; returns seconds."""
    torch.manual_seed(seed)
    module = build_module("cnn1d", X.shape[1], 10, size="large").to(device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    Xt, yt = torch.as_tensor(X).to(device), torch.as_tensor(y).to(device)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        module.train()
        order = torch.randperm(len(Xt), generator=g).to(device)
        for i in range(0, len(Xt), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(module(Xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def crossfeed_loop(X: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, seed: int, device: str) -> float:
    clf = TorchClassifier("cnn1d", module_kwargs={"size": "large"}, epochs=epochs, batch_size=batch_size,
                          lr=1e-3, random_state=seed, device=device)
    start = time.perf_counter()
    clf.fit(X, y)
    return time.perf_counter() - start


def inference_overhead(X_train, y_train, X_test, repeats: int) -> dict:
    small = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=2, random_state=0).fit(X_train, y_train)
    large = TorchClassifier("cnn1d", module_kwargs={"size": "large"}, epochs=2, random_state=0).fit(X_train, y_train)
    mean = MeanEnsemble([("small", small), ("large", large)], prefit=True).fit(X_test[:500], y_train[:500])
    cascade = Cascade([("small", small), ("large", large)], costs=[1.0, 75.0], prefit=True).fit(X_train[:1000], y_train[:1000])
    t = cascade.thresholds_[0]

    def by_hand_mean():
        return (small.predict_proba(X_test) + large.predict_proba(X_test)) / 2

    def by_hand_cascade():
        p = small.predict_proba(X_test)
        unsure = p.max(1) < t
        if unsure.any():
            p[unsure] = large.predict_proba(X_test[unsure])
        return p

    pairs = {"mean": (by_hand_mean, lambda: mean.predict_proba(X_test)),
             "cascade": (by_hand_cascade, lambda: cascade.predict_proba(X_test))}
    out = {}
    for name, (direct, ours) in pairs.items():
        np.testing.assert_allclose(direct(), ours(), atol=1e-6)
        d, o = [], []
        for _ in range(repeats):
            for fn, times in ((direct, d), (ours, o)):
                s = time.perf_counter()
                fn()
                times.append(time.perf_counter() - s)
        out[name] = {"direct_s": summary(d), "crossfeed_s": summary(o), "ratio": float(np.median(o) / np.median(d))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats = 1, 2

    suite = load_suite("mnist1d", seed=0)
    X, y = suite.pooled("train")
    X_test, _ = suite.pooled("test")
    plain, ours = [], []
    for r in range(args.repeats):
        plain.append(len(X) * args.epochs / plain_loop(X, y, args.epochs, args.batch_size, r, args.device))
        ours.append(len(X) * args.epochs / crossfeed_loop(X, y, args.epochs, args.batch_size, r, args.device))
        print(f"repeat {r}: plain {plain[-1]:.0f} samples/s, crossfeed {ours[-1]:.0f} samples/s")
    ratio = float(np.median(ours) / np.median(plain))
    inference = inference_overhead(X, y, X_test, max(3, args.repeats))
    payload = {
        "benchmark": "overhead", "device": args.device, "epochs": args.epochs, "batch_size": args.batch_size,
        "n_train": int(len(X)), "model": "cnn1d large", "machine": machine(),
        "training": {"plain_samples_per_s": summary(plain), "crossfeed_samples_per_s": summary(ours), "ratio": ratio},
        "inference": inference,
    }
    path = write("overhead-quick" if args.quick else f"overhead-{args.device.split(':')[0]}", payload)
    print(f"training throughput ratio crossfeed / plain PyTorch: {ratio:.3f}")
    for name, row in inference.items():
        print(f"{name}: crossfeed / by hand = {row['ratio']:.3f}")
    print("wrote", path)


if __name__ == "__main__":
    main()
