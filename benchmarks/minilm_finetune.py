"""MiniLM fine-tuned on the amazon suite, against the frozen encoder and TF-IDF + logistic regression.

Round 1 kept the MiniLM encoder frozen (only a head trains on cached embeddings) because
fine-tuning runs at about 2 reviews/s on the project's 2-core CPU; frozen it is 7.35 points below
TF-IDF + LR on amazon (``benchmarks/results/amazon.json``). This script fine-tunes the whole
encoder (``sentence_encoder_classifier(..., finetune=True)``: AdamW, lr 3e-5, batches of 16,
early stopping on the pooled validation loss) on the pooled training reviews of the four
domains and scores it on the pooled test reviews, beside the frozen encoder with its head and
TF-IDF + LR trained on the same data. It is meant for a GPU (``--device cuda``); on a CPU use
``--quick``. The JSON records the device by name (``machine.gpu``) and the training throughput
(reviews per second).

    python benchmarks/minilm_finetune.py --device cuda            # benchmarks/results/minilm-finetune-cuda.json
    python benchmarks/minilm_finetune.py --device cpu --quick     # smoke run: 60 reviews per domain, 1 epoch
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

from crossfeed.data import load_suite
from crossfeed.models._sentence_encoder import sentence_encoder_classifier
from crossfeed.models._tfidf import TfidfClassifier

DATA = Path(os.environ.get("CROSSFEED_AMAZON_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "amazon")


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    suite = load_suite("amazon", seed=seed, directory=DATA, n_per_domain=args.n_per_domain)
    X, y = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    X_test, y_test = suite.pooled("test")
    vocab = suite.meta["vocabulary"]
    models = {
        "tfidf_lr": TfidfClassifier(),
        "minilm_frozen": sentence_encoder_classifier(vocab, epochs=args.frozen_epochs, patience=5, random_state=seed,
                                                     device=args.device),
        "minilm_finetuned": sentence_encoder_classifier(vocab, finetune=True, epochs=args.epochs, patience=2,
                                                        random_state=seed, device=args.device),
    }
    records = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        if name == "tfidf_lr":
            model.fit(X, y)
        else:
            model.fit(X, y, X_val=X_val, y_val=y_val)
        seconds = time.perf_counter() - t0
        epochs_run = len(getattr(model, "history_", None) or []) or args.epochs
        records[name] = {
            "accuracy": float(np.mean(model.predict(X_test) == y_test)),
            "domains": {d.name: float(np.mean(model.predict(d.X_test) == d.y_test)) for d in suite},
            "fit_seconds": seconds,
            "train_reviews_per_second": len(y) * epochs_run / seconds if name != "tfidf_lr" else None,
        }
        print(f"seed {seed} {name}: {records[name]['accuracy']:.4f} in {seconds:.0f} s", flush=True)
    for name in ("minilm_frozen", "minilm_finetuned"):
        records[name]["gap_to_tfidf_points"] = 100 * (records[name]["accuracy"] - records["tfidf_lr"]["accuracy"])
    return {"seed": seed, "n_train": int(len(y)), "n_test": int(len(y_test)), "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-domain", type=int, default=None, help="reviews per domain (default: all 2000)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--frozen-epochs", type=int, default=30, help="head epochs of the frozen encoder")
    parser.add_argument("--quick", action="store_true", help="one seed, 60 reviews per domain, 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_per_domain, args.epochs, args.frozen_epochs = [0], 60, 1, 3
    t0 = time.perf_counter()
    runs = [run_seed(seed, args) for seed in args.seeds]
    table = {name: {"accuracy": summary([r["records"][name]["accuracy"] for r in runs])} for name in runs[0]["records"]}
    for name in ("minilm_frozen", "minilm_finetuned"):
        table[name]["gap_to_tfidf_points"] = summary([r["records"][name]["gap_to_tfidf_points"] for r in runs])
    tag = "quick-" + args.device if args.quick else args.device
    command = f"python benchmarks/minilm_finetune.py --device {args.device}" + (" --quick" if args.quick else "")
    payload = {"benchmark": "minilm_finetune", "command": command, "device": args.device, "seeds": args.seeds,
               "n_per_domain": args.n_per_domain, "epochs": args.epochs, "machine": machine(),
               "seconds": time.perf_counter() - t0, "table": table, "runs": runs}
    path = write(f"minilm-finetune-{tag}", payload)
    for name, row in table.items():
        print(f"{name}: {100 * row['accuracy']['median']:.2f}%")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
