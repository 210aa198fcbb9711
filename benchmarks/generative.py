"""Generative augmentation (issue 11) against data-free multi-teacher KD when field data is scarce.

For each seed, v0 and one expert per shifted domain are trained once on the full suite; then, for
each field size ``n`` (``--field-sizes``, default 50 and 200), every strategy below absorbs the
experts with only the first ``n`` unlabelled field rows of each shifted domain (as
``benchmarks/feedback.py --field-sizes`` does), with the same epochs and learning rate:

- ``control``: continued training of v0 on the general data;
- ``multi_teacher_kd (top-up)``: the same-budget baseline: each domain's field rows topped up with
  mixup rows to its part of ``field_share = 0.5`` of the training rows, the expert labels them;
- ``multi_teacher_kd (no top-up)``: ``field_share = 0``, the field rows only;
- ``generative_augment (cvae)`` / ``(cgan)``: per domain a conditional VAE / GAN fitted on the
  field rows and the expert's pseudo-labels; as many generated rows as the top-up baseline
  trains on there (``synthetic_share = 0.5``), no real field row;
- ``generative_augment (cvae + field rows)``: the real field rows plus generated rows in place of
  the mixup rows (``include_field_rows``), row for row the top-up baseline's budget;
- ``data_free_kd (DeepInversion, no field row)``: data-free in the strict sense, the baseline that
  shares as little as the generators do: per domain, inputs optimised against the expert's
  BatchNorm statistics and target classes (``inversion_steps`` Adam steps from general-domain
  rows), as many as the top-up baseline trains on there. It reads no field row, so one run per
  seed stands for every field size (``same_run_as_field_size`` in its rows).

Recorded per strategy: pooled absorption (sum of gains / sum of the experts' leads over the
domains where the expert leads), per-domain accuracy before / after, forgetting on the general
domain, wall seconds of the step (for generative_augment also the generators' seconds and the
sample-quality seconds, which the step's seconds include), and the sample quality per domain:
expert agreement (share of generated rows the expert puts in their class; chance 0.1), C2ST
accuracy (logistic regression telling generated rows from the field rows, 5-fold; 0.5 =
indistinguishable) and the DCR ratio (median distance of generated rows to their nearest field
row over the same for the domain's validation rows; well below 1 = copies). Medians with
[min, max] over seeds.

Suites (one thread, on one core):

- ``mnist1d``: as ``benchmarks/feedback.py``: 4,000 samples per domain (2,000 general training
  rows, 500 field rows per domain), v0 cnn1d large, experts distilled from v0 then fine-tuned
  (``spawn_experts``, cnn1d tiny), 15 epochs.
- ``fashion``: reduced to fit one core: 2,400 images per domain (1,200 general training rows, 300
  field rows per domain), v0 cnn2d large on the plain domain (10 epochs, early stopping), one
  cnn2d small expert per shifted domain (10 epochs, early stopping), absorb 5 epochs (as
  ``benchmarks/fashion.py``).

Generators (both suites): the strategy's defaults, 1,500 steps, hidden width 128, latent size 16.
Inversion (both suites): ``data_free_kd``'s defaults, 1,000 steps at lr 0.05, BatchNorm weight 1.

    python benchmarks/generative.py --suite mnist1d   # 3 seeds, results/generative-mnist1d.json
    python benchmarks/generative.py --suite fashion --jobs 2   # 3 seeds, two at a time, results/generative-fashion.json
    python benchmarks/generative.py --suite mnist1d --quick   # smoke run: 1 seed, small data, few steps
    python benchmarks/generative.py --suite fashion --seeds 0 --name generative-fashion-datafree \
        --strategies "multi_teacher_kd (top-up, same budget)" "generative_augment (cvae)" \
        "data_free_kd (DeepInversion, no field row)"   # some rows, one seed, its own JSON
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from feedback import _pooled, _report_row, _setup, first_field

from crossfeed.data import load_suite
from crossfeed.feedback import FeedbackStrategy, absorb

#: label -> (strategy, params). The generative ones also get ``generator_steps``.
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "control (continued training)": ("continued_training", {}),
    "multi_teacher_kd (top-up, same budget)": ("multi_teacher_kd", {}),
    "multi_teacher_kd (no top-up)": ("multi_teacher_kd", {"field_share": 0.0}),
    "generative_augment (cvae)": ("generative_augment", {"generator": "cvae"}),
    "generative_augment (cgan)": ("generative_augment", {"generator": "cgan"}),
    "generative_augment (cvae + field rows)": ("generative_augment", {"generator": "cvae", "include_field_rows": True}),
    "data_free_kd (DeepInversion, no field row)": ("data_free_kd", {}),
}
#: Strategies that read no field row: one run per seed serves every field size.
FIELD_FREE = ("data_free_kd (DeepInversion, no field row)",)
#: (generative, data-free) pairs whose per-seed pooled absorptions are compared.
VERSUS = (("generative_augment (cvae)", "data_free_kd (DeepInversion, no field row)"),
          ("generative_augment (cvae + field rows)", "data_free_kd (DeepInversion, no field row)"),
          ("generative_augment (cvae)", "multi_teacher_kd (top-up, same budget)"))
#: Per suite: samples per domain, absorb epochs, generator steps, what v0 and the experts are.
SUITES: dict[str, dict[str, Any]] = {
    "mnist1d": {"n_per_domain": 4000, "epochs": 15, "generator_steps": 1500, "inversion_steps": 1000,
                "models": "v0 cnn1d large (dropout 0.2, 2 x epochs, patience 5); experts spawn_experts cnn1d:tiny"},
    "fashion": {"n_per_domain": 2400, "epochs": 5, "generator_steps": 1500, "inversion_steps": 1000, "model_epochs": 10,
                "models": "v0 cnn2d large (dropout 0.2, patience 3) on plain; experts cnn2d small (patience 3)"},
}
QUALITY = ("expert_agreement", "c2st_accuracy", "dcr_ratio")


def setup(suite_name: str, seed: int, cfg: dict[str, Any]) -> tuple[Any, Any, dict[str, Any], dict[str, float]]:
    """The suite, v0 (general domain only), one expert per shifted domain, and their seconds."""
    if suite_name == "mnist1d":
        suite, v0, experts, seconds = _setup(seed, cfg["n_per_domain"], cfg["epochs"], same_arch=False)
        return suite, v0, experts["distilled"], seconds
    from fashion import cnn

    suite = load_suite("fashion", seed=seed, n_per_domain=cfg["n_per_domain"])
    plain = suite[suite.general_domain]
    t0 = time.perf_counter()
    v0 = cnn("large", cfg["model_epochs"], seed, patience=3, dropout=0.2).fit(
        plain.X_train, plain.y_train, X_val=plain.X_val, y_val=plain.y_val)
    seconds = {"v0": time.perf_counter() - t0}
    t0 = time.perf_counter()
    experts = {d.name: cnn("small", cfg["model_epochs"], seed + 1, patience=3).fit(
        d.X_train, d.y_train, X_val=d.X_val, y_val=d.y_val) for d in suite if d.name != plain.name}
    seconds["experts"] = time.perf_counter() - t0
    return suite, v0, experts, seconds


def run_seed(suite_name: str, seed: int, cfg: dict[str, Any], sizes: list[int],
             labels: list[str] | None = None) -> dict[str, Any]:
    suite, v0, experts, seconds = setup(suite_name, seed, cfg)
    shifted = [n for n in suite.names if n != suite.general_domain]
    settings = {"epochs": cfg["epochs"], "lr": 1e-3, "random_state": seed}
    out: dict[str, Any] = {"seed": seed, "setup_seconds": seconds, "sizes": {},
                           "v0": {d.name: float(np.mean(v0.predict(d.X_test) == d.y_test)) for d in suite},
                           "experts": {n: float(np.mean(e.predict(suite[n].X_test) == suite[n].y_test))
                                       for n, e in experts.items()}}
    for size in sizes:
        scarce = first_field(suite, size, shifted)
        rows: dict[str, Any] = {}
        for label, (name, params) in STRATEGIES.items():
            if labels is not None and label not in labels:
                continue
            if label in FIELD_FREE and size != sizes[0]:
                rows[label] = {**out["sizes"][str(sizes[0])][label], "same_run_as_field_size": sizes[0]}
                continue
            if name == "generative_augment":
                params = {**params, "generator_steps": cfg["generator_steps"]}
            if name == "data_free_kd":
                params = {**params, "steps": cfg["inversion_steps"]}
            strategy = FeedbackStrategy() if name == "continued_training" else name
            _, report = absorb(v0, experts, scarce, strategy, **settings,
                               params=None if name == "continued_training" else params)
            row = {**_report_row(report), "params": report.params}
            row["pooled_absorption"] = _pooled(row, shifted)
            for key in ("field_rows_added", "synthetic_rows", "field_rows_sent", "generator_seconds",
                        "quality_seconds", "inversion_seconds", "bn_gap_before", "bn_gap_after", *QUALITY):
                if key in report.info:
                    row[key] = report.info[key]
            rows[label] = row
            quality = "".join(f", {q} {np.median([v for v in row[q].values() if v is not None]):.3f}"
                              for q in QUALITY if q in row)
            print(f"  seed {seed} field {size} {label}: pooled absorption {row['pooled_absorption']:+.3f}, "
                  f"forgetting {row['forgetting']:+.3f}, {row['seconds']:.0f} s{quality}", flush=True)
        out["sizes"][str(size)] = rows
    return out


def _seed_job(job: tuple) -> dict[str, Any]:
    """One seed in this process or a worker (threads set there too)."""
    suite_name, seed, cfg, sizes, labels, threads = job
    torch.set_num_threads(threads)
    print(f"seed {seed}", flush=True)
    return run_seed(suite_name, seed, cfg, sizes, labels)


def summarise(runs: list[dict[str, Any]], sizes: list[int], shifted: list[str], general: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for size in sizes:
        cell: dict[str, Any] = {}
        for label in runs[0]["sizes"][str(size)]:
            rows = [r["sizes"][str(size)][label] for r in runs]
            entry: dict[str, Any] = {
                "pooled_absorption": summary([row["pooled_absorption"] for row in rows]),
                "mean_shifted_accuracy": summary([np.mean([row["domains"][d]["acc_v1"] for d in shifted]) for row in rows]),
                "forgetting": summary([row["forgetting"] for row in rows]),
                "seconds": summary([row["seconds"] for row in rows]),
                "domains": {d: {"acc_v1": summary([row["domains"][d]["acc_v1"] for row in rows]),
                                "absorption": summary(a) if (a := [row["domains"][d]["absorption"] for row in rows
                                                                   if row["domains"][d]["absorption"] is not None])
                                else None} for d in [general, *shifted]},
            }
            if "bn_gap_after" in rows[0]:  # per seed: the median over domains of after / before
                entry["bn_gap_ratio_over_domains"] = summary([float(np.median(
                    [row["bn_gap_after"][d] / row["bn_gap_before"][d] for d in shifted])) for row in rows])
                entry["inversion_seconds"] = summary([row["inversion_seconds"] for row in rows])
            if "generator_seconds" in rows[0]:
                entry["generator_seconds"] = summary([row["generator_seconds"] for row in rows])
                entry["quality_seconds"] = summary([row["quality_seconds"] for row in rows])
            for q in QUALITY:
                if q in rows[0]:
                    values = {d: [row[q][d] for row in rows if row[q].get(d) is not None] for d in shifted}
                    entry[q] = {d: summary(v) for d, v in values.items() if v}
                    # per seed: the median over the domains, then the median over the seeds
                    entry[f"{q}_over_domains"] = summary(
                        [float(np.median([v for v in row[q].values() if v is not None])) for row in rows])
            cell[label] = entry
        table[str(size)] = cell
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=tuple(SUITES), default="mnist1d")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--field-sizes", type=int, nargs="+", default=[50, 200], metavar="N",
                        help="field rows per shifted domain")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 800 samples per domain, 2 epochs, 100 generator / 20 inversion steps, field size 50")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    parser.add_argument("--strategies", nargs="+", choices=tuple(STRATEGIES), metavar="LABEL",
                        help="run only these rows (labels as in STRATEGIES); default: all")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes (one thread each)")
    parser.add_argument("--name", help="JSON name under results/ (default generative-<suite>[-quick])")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(SUITES[args.suite])
    if args.quick:
        args.seeds, args.field_sizes = [0], [50]
        cfg.update(n_per_domain=800, epochs=2, generator_steps=100, inversion_steps=20, model_epochs=2)
    sizes = sorted(set(args.field_sizes))
    start = time.perf_counter()
    jobs = [(args.suite, seed, cfg, sizes, args.strategies, args.threads) for seed in args.seeds]
    if args.jobs > 1 and len(args.seeds) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(_seed_job, jobs))
    else:
        runs = [_seed_job(job) for job in jobs]
    suite = load_suite(args.suite, seed=args.seeds[0], n_per_domain=cfg["n_per_domain"])
    general = suite.general_domain
    shifted = [n for n in suite.names if n != general]
    payload = {
        "benchmark": "generative", "suite": args.suite, "command": "python benchmarks/generative.py " + " ".join(sys.argv[1:]),
        "seeds": args.seeds, "jobs": args.jobs, "field_sizes": sizes, "settings": cfg, "lr": 1e-3,
        "general_training_rows": len(suite[general].X_train), "strategies": {k: {"strategy": v[0], "params": v[1]}
                                                                           for k, v in STRATEGIES.items()
                                                                           if args.strategies is None
                                                                           or k in args.strategies},
        "machine": machine(), "seconds": round(time.perf_counter() - start, 1),
        "general_domain": general, "shifted_domains": shifted,
        "v0": {d: summary([r["v0"][d] for r in runs]) for d in suite.names},
        "experts": {d: summary([r["experts"][d] for r in runs]) for d in shifted},
        "table": summarise(runs, sizes, shifted, general), "versus": versus(runs, sizes), "runs": runs,
    }
    for label in payload["table"][str(sizes[0])]:
        cells = "  ".join(f"{size}: {_cell(payload['table'][str(size)][label]['pooled_absorption'])}" for size in sizes)
        print(f"{label:42s} pooled absorption {cells}")
    name = args.name or f"generative-{args.suite}" + ("-quick" if args.quick else "")
    print(f"wrote {write(name, payload)} in {payload['seconds']} s")


def versus(runs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Per field size and pair of :data:`VERSUS`: seeds where the first's pooled absorption is higher."""
    out: dict[str, Any] = {}
    for size in sizes:
        for first, second in VERSUS:
            if first not in runs[0]["sizes"][str(size)] or second not in runs[0]["sizes"][str(size)]:
                continue
            gaps = [r["sizes"][str(size)][first]["pooled_absorption"] - r["sizes"][str(size)][second]["pooled_absorption"]
                    for r in runs]
            out.setdefault(str(size), {})[f"{first} vs {second}"] = {
                "seeds_higher": sum(g > 0 for g in gaps), "seeds": len(gaps), "gap": summary(gaps)}
    return out


def _cell(s: dict[str, float]) -> str:
    return f"{s['median']:+.3f} [{s['min']:+.3f}, {s['max']:+.3f}]"


if __name__ == "__main__":
    main()
