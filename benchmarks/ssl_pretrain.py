"""Self-supervised pretraining on pooled unlabelled data against no pretraining, at 1%, 10% and 100% of the labels (issue 11, #17).

For each suite and seed: the large model's network (mnist1d: cnn1d large; fashion: cnn2d small,
for the time budget of one CPU core) is built once with the seed's random initialisation. Its trunk is pretrained without labels
(:func:`crossfeed.feedback.pretrain_trunk`) on the pooled unlabelled rows: every domain's field
data plus every domain's training rows with their labels dropped (as SimCLR pretrains on all of
ImageNet before fine-tuning on 1% of its labels), with NT-Xent (SimCLR, arXiv 2002.05709) on
the suite's augmentations and with masked-feature reconstruction. Then, for each label fraction
(1%, 10%, 100%) of the pooled labelled training data of all domains (a class-stratified sample,
the same rows for every start), the same fine-tuning runs from each start: the random
initialisation ("none"), the NT-Xent trunk and the masked trunk. Fine-tuning trains the whole
network with cross-entropy for about ``steps`` mini-batch steps (epochs = steps / batches per
epoch, at least 15, at most 300), no early stopping. A linear probe (logistic regression on the
frozen trunk's embedding, the SimCLR evaluation protocol) is reported too.

Reported per suite, start and fraction: per-domain test accuracy and the mean over domains (fine-
tuned and probe), medians with [min, max] over seeds; pretraining seconds and pretext losses.

Anchor (context, not a comparable number): SimCLR on ImageNet, ResNet-50 fine-tuned on 1% of the
labels reaches 48.3% top-1 against 25.4% for the supervised baseline on the same labels (10%:
65.6% against 56.4%) (Chen et al. 2020, Table 7).

    python benchmarks/ssl_pretrain.py                       # both suites, 3 seeds -> results/adapt-ssl-<suite>.json
    python benchmarks/ssl_pretrain.py --suites mnist1d      # one suite
    python benchmarks/ssl_pretrain.py --quick               # 1 seed, small data, few epochs (smoke run)

(Not ``ssl.py``: a script's folder comes first on ``sys.path``, so that name shadows the standard
library's ``ssl`` module, which sklearn's imports need.)
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from crossfeed.data import DomainSuite, load_suite
from crossfeed.feedback import pretrain_trunk
from crossfeed.models import TorchClassifier, build_module

FRACTIONS = (0.01, 0.1, 1.0)
STARTS = ("none", "ntxent", "masked")
#: Per suite: data size, the large architecture, pretraining and fine-tuning settings.
SUITES: dict[str, dict[str, Any]] = {
    "mnist1d": {"n_per_domain": 1200, "module": "cnn1d", "module_kwargs": {"size": "large"},
                "pretrain_epochs": 10, "steps": 300},
    # cnn2d small, not large: a large NT-Xent step on 256 images took 4.6 s on one shared core (small: 1.6 s)
    "fashion": {"n_per_domain": 400, "module": "cnn2d", "module_kwargs": {"size": "small"},
                "pretrain_epochs": 4, "steps": 200},
}
PRETRAIN = {"batch_size": 256, "lr": 3e-3, "temperature": 0.2, "mask_fraction": 0.5}
FINETUNE = {"batch_size": 64, "lr": 1e-3}


def labelled_sample(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions of a class-stratified ``fraction`` of ``y`` (at least one row of every class)."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), max(1, round(fraction * np.sum(y == c))), replace=False)
             for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def domain_accuracies(predict: Any, suite: DomainSuite) -> dict[str, float]:
    accs = {d.name: float(np.mean(predict(d.X_test.reshape(len(d.X_test), -1)) == d.y_test)) for d in suite}
    return {**accs, "mean": float(np.mean(list(accs.values())))}


def probe(module: torch.nn.Module, X: np.ndarray, y: np.ndarray, suite: DomainSuite) -> dict[str, float]:
    """Linear probe: logistic regression on the frozen trunk's (standardised) embedding."""
    module = module.eval()

    def embed(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module.embed(torch.as_tensor(rows, dtype=torch.float32)).numpy()

    scaler = StandardScaler().fit(embed(X))
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(embed(X)), y)
    return domain_accuracies(lambda rows: clf.predict(scaler.transform(embed(rows))), suite)


def finetune(start: torch.nn.Module, X: np.ndarray, y: np.ndarray, steps: int, seed: int) -> TorchClassifier:
    batches = math.ceil(len(X) / FINETUNE["batch_size"])
    epochs = int(min(300, max(15, math.ceil(steps / batches))))
    return TorchClassifier(start, epochs=epochs, random_state=seed, threads=1, **FINETUNE).fit(X, y)


def run_seed(name: str, seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    suite = load_suite(name, seed=seed, n_per_domain=cfg["n_per_domain"])
    X_train, y_train = suite.pooled("train")
    X_train = X_train.reshape(len(X_train), -1)
    X_field = np.concatenate([d.X_field.reshape(len(d.X_field), -1) for d in suite])
    X_pool = np.concatenate([X_field, X_train])
    torch.manual_seed(seed)
    init = build_module(cfg["module"], X_train.shape[1], len(suite.classes), **cfg["module_kwargs"])
    starts, out = {"none": init}, {"seed": seed, "pretrain_rows": len(X_pool), "pretrain": {}, "fractions": {}}
    for objective in STARTS[1:]:
        began = time.perf_counter()
        starts[objective], log = pretrain_trunk(init, X_pool, suite, objective=objective, epochs=cfg["pretrain_epochs"],
                                                seed=seed, threads=1, **PRETRAIN)
        out["pretrain"][objective] = {"seconds": time.perf_counter() - began,
                                      "pretext_loss": [h["train_loss"] for h in log.history]}
        print(f"  {name} seed {seed}: {objective} pretraining {out['pretrain'][objective]['seconds']:.0f} s", flush=True)
    for fraction in FRACTIONS:
        rows = labelled_sample(y_train, fraction, seed)
        X, y = X_train[rows], y_train[rows]
        cell: dict[str, Any] = {"labelled_rows": len(rows)}
        for start_name, start in starts.items():
            began = time.perf_counter()
            clf = finetune(start, X, y, cfg["steps"], seed)
            cell[start_name] = {"finetune": domain_accuracies(clf.predict, suite), "probe": probe(start, X, y, suite),
                                "finetune_epochs": clf.epochs, "seconds": time.perf_counter() - began}
            print(f"  {name} seed {seed} {fraction:.0%} {start_name}: fine-tuned {cell[start_name]['finetune']['mean']:.3f}"
                  f" probe {cell[start_name]['probe']['mean']:.3f}", flush=True)
        out["fractions"][str(fraction)] = cell
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians with [min, max] over seeds of every accuracy, and of the pretraining seconds."""
    table: dict[str, Any] = {"pretrain_seconds": {o: summary([r["pretrain"][o]["seconds"] for r in runs])
                                                  for o in STARTS[1:]}}
    for fraction in runs[0]["fractions"]:
        cells = [r["fractions"][fraction] for r in runs]
        table[fraction] = {
            start: {kind: {key: summary([c[start][kind][key] for c in cells]) for key in cells[0][start][kind]}
                    for kind in ("finetune", "probe")}
            for start in STARTS}
        for objective in STARTS[1:]:  # the gain of each pretraining over no pretraining, paired by seed
            table[fraction][f"{objective} - none"] = {
                kind: summary([c[objective][kind]["mean"] - c["none"][kind]["mean"] for c in cells])
                for kind in ("finetune", "probe")}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="1 seed, small data, 1 pretraining epoch")
    args = parser.parse_args()
    for name in args.suites:
        cfg = dict(SUITES[name])
        if args.quick:
            args.seeds = [0]
            cfg.update(n_per_domain=200, pretrain_epochs=1, steps=20)
        began = time.perf_counter()
        runs = [run_seed(name, seed, cfg) for seed in args.seeds]
        payload = {"benchmark": "self-supervised pretraining on pooled unlabelled data (issue 11, #17)",
                   "suite": name, "seeds": args.seeds, "quick": args.quick, "config": {**cfg, "pretrain": PRETRAIN,
                   "finetune": FINETUNE, "fractions": list(FRACTIONS)},
                   "protocol": "pretraining pool: every domain's field data + every domain's training rows without "
                               "labels; labelled data: a class-stratified fraction of the pooled training data of all "
                               "domains; the same fine-tuning from each start; test accuracy per domain",
                   "anchor": "SimCLR (arXiv 2002.05709, Table 7), ImageNet ResNet-50: 1% labels 48.3% top-1 vs 25.4% "
                             "supervised; 10% labels 65.6% vs 56.4%. Context only, not comparable",
                   "summary": summarise(runs), "runs": runs, "wall_seconds": time.perf_counter() - began,
                   "machine": machine()}
        path = write(f"adapt-ssl-{name}{'-quick' if args.quick else ''}", payload)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
