"""Hierarchical transfer benchmark (issue 11, #20): taxonomy -> shared bottom, group middle, domain top.

For each seed and suite: v0 is trained on the general domain only; each shifted domain gets an
expert spawned from v0 as in ``benchmarks/feedback.py`` (a tiny CNN distilled from v0, then
fine-tuned on the domain: ``crossfeed.spawn.spawn_experts``). Then, with the same epochs and
learning rate:

- ``hierarchical (learned taxonomy)``: 2 groups clustered from the experts' behaviour;
- ``hierarchical (given taxonomy)``: the grouping the suite's construction suggests (``GIVEN``);
- ``hierarchical (one group per domain)``: the ablation without a shared middle level;
- ``multitask``: flat heads on the shared trunk; ``joint_training`` (pooled labels, the upper
  reference); ``control (continued training)``.

Two field settings: ``full`` (every domain's field data) and ``scarce`` (one domain of every given
group, ``SCARCE``, keeps only ``--scarce`` field samples): there the group level should carry
what the group's other domain teaches over to the scarce one.

Reported per strategy: per-domain accuracy of the returned (served) model, absorption =
(v1 - v0) / (expert - v0) and forgetting on the general domain (as ``absorb`` reports them), wall
seconds; for the strategies with domain branches also each domain's accuracy through its own
branch (``routed``) and its absorption; the taxonomy used per seed. Medians with [min, max] over
the seeds.

    python benchmarks/hierarchical.py                  # both suites, seeds 0 1 2
    python benchmarks/hierarchical.py --suite mnist1d  # benchmarks/results/adapt-hierarchical-mnist1d.json
    python benchmarks/hierarchical.py --quick          # 1 seed, small data, few epochs (smoke run)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write

from crossfeed.data import DomainSuite, load_suite
from crossfeed.evaluate import absorption
from crossfeed.feedback import absorb
from crossfeed.feedback.hierarchical import Hierarchical
from crossfeed.feedback.multitask import MultiTask
from crossfeed.models import TorchClassifier
from crossfeed.spawn import spawn_experts

#: Per suite: v0's architecture, the experts' student, samples per domain, epochs.
SUITES: dict[str, dict[str, Any]] = {
    "mnist1d": {"large": ("cnn1d", {"size": "medium", "dropout": 0.2}), "student": "cnn1d:tiny",
                "n_per_domain": 2000, "epochs": 10},
    "fashion": {"large": ("cnn2d", {"size": "small", "dropout": 0.2}), "student": "cnn2d:tiny",
                "n_per_domain": 1200, "epochs": 5},
}
#: The taxonomy each suite's construction suggests (src/crossfeed/data/_mnist1d.py, _fashion.py).
GIVEN: dict[str, dict[str, list[str]]] = {
    # noise and shear distort the signal's shape; shifted and scaled move it (padding, translation)
    "mnist1d": {"distortion": ["noisy", "sheared"], "position": ["shifted", "scaled"]},
    # noise and blur degrade pixels locally; rotation and inversion remap the whole image
    "fashion": {"degraded": ["noisy", "blurred"], "remapped": ["rotated", "inverted"]},
}
#: The domain of every given group left with scarce field data in the ``scarce`` setting.
SCARCE = {"mnist1d": ["sheared", "scaled"], "fashion": ["blurred", "inverted"]}


def strategies(suite_name: str, n_experts: int) -> dict[str, Any]:
    """Label -> a fresh strategy (an instance, or a registry name)."""
    return {
        "hierarchical (learned taxonomy)": lambda: Hierarchical(n_groups=2),
        "hierarchical (given taxonomy)": lambda: Hierarchical(taxonomy=GIVEN[suite_name]),
        "hierarchical (one group per domain)": lambda: Hierarchical(n_groups=n_experts),
        "multitask": MultiTask,
        "joint_training": lambda: "joint_training",
        "control (continued training)": lambda: "continued_training",
    }


def _accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y))


def _row(report: Any, strategy: Any, suite: DomainSuite) -> dict[str, Any]:
    row: dict[str, Any] = {
        "domains": {d: dataclasses.asdict(r) for d, r in report.domains.items()},
        "forgetting": report.forgetting, "seconds": report.wall_seconds,
    }
    if isinstance(strategy, MultiTask):
        routed = {}
        for d in strategy.heads_:
            r = report.domains[d]
            acc = _accuracy(strategy.domain_model(d), suite[d].X_test, suite[d].y_test)
            routed[d] = {"acc": acc, "absorption": absorption(r.acc_v0, r.acc_expert, acc)}
        row["routed"] = routed
    if "taxonomy" in report.info:
        row["taxonomy"] = report.info["taxonomy"]
        row["expert_distances"] = report.info.get("expert_distances")
    return row


def scarce_field(suite: DomainSuite, domains: list[str], n: int) -> DomainSuite:
    """``suite`` with only the first ``n`` field samples of ``domains``."""
    out = [dataclasses.replace(d, X_field=d.X_field[:n], y_field=None if d.y_field is None else d.y_field[:n])
           if d.name in domains else d for d in suite]
    return DomainSuite.from_domains(suite.name, out, meta=suite.meta)


def run_seed(suite_name: str, seed: int, cfg: dict[str, Any], n_scarce: int) -> dict[str, Any]:
    suite = load_suite(suite_name, seed=seed, n_per_domain=cfg["n_per_domain"])
    general = suite[suite.general_domain]
    shifted = [n for n in suite.names if n != general.name]
    epochs = cfg["epochs"]
    t0 = time.perf_counter()
    arch, kwargs = cfg["large"]
    v0 = TorchClassifier(arch, module_kwargs=kwargs, epochs=2 * epochs, lr=2e-3, weight_decay=1e-2, patience=5,
                         random_state=seed).fit(general.X_train, general.y_train, X_val=general.X_val, y_val=general.y_val)
    experts = spawn_experts(v0, suite, student=cfg["student"], epochs=epochs, finetune_epochs=epochs,
                            domains=shifted, random_state=seed)
    out: dict[str, Any] = {"seed": seed, "setup_seconds": time.perf_counter() - t0,
                           "v0": {d.name: _accuracy(v0, d.X_test, d.y_test) for d in suite},
                           "experts": {n: _accuracy(e, suite[n].X_test, suite[n].y_test) for n, e in experts.items()}}
    settings = {"epochs": epochs, "lr": 1e-3, "random_state": seed}
    for setting, data in [("full", suite), ("scarce", scarce_field(suite, SCARCE[suite_name], n_scarce))]:
        out[setting] = {}
        for label, make in strategies(suite_name, len(experts)).items():
            strategy = make()
            _, report = absorb(v0, experts, data, strategy, **settings)
            out[setting][label] = _row(report, strategy, data)
            routed = out[setting][label].get("routed")
            cell = f", routed {np.mean([r['acc'] for r in routed.values()]):.4f}" if routed else ""
            print(f"  {suite_name} seed {seed} {setting} {label}: served {report.mean('acc_v1'):.4f}{cell}", flush=True)
    return out


def _absorptions(rows: list[dict[str, Any]], get: Any) -> dict[str, float] | None:
    values = [v for v in map(get, rows) if v is not None]
    return summary(values) if values else None


def _summarise(runs: list[dict[str, Any]], setting: str, general: str, shifted: list[str]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for label in runs[0][setting]:
        rows = [r[setting][label] for r in runs]
        entry: dict[str, Any] = {"domains": {}, "forgetting": summary([row["forgetting"] for row in rows]),
                                 "seconds": summary([row["seconds"] for row in rows]),
                                 "mean_shifted_accuracy": summary([np.mean([row["domains"][d]["acc_v1"] for d in shifted])
                                                                   for row in rows])}
        for d in [general, *shifted]:
            entry["domains"][d] = {"acc_v1": summary([row["domains"][d]["acc_v1"] for row in rows]),
                                   "absorption": _absorptions(rows, lambda row, d=d: row["domains"][d]["absorption"])}
        if "routed" in rows[0]:
            entry["routed"] = {d: {"acc": summary([row["routed"][d]["acc"] for row in rows]),
                                   "absorption": _absorptions(rows, lambda row, d=d: row["routed"][d]["absorption"])}
                               for d in shifted}
            entry["routed_mean_accuracy"] = summary([np.mean([row["routed"][d]["acc"] for d in shifted]) for row in rows])
        if "taxonomy" in rows[0]:
            entry["taxonomy_per_seed"] = [row["taxonomy"] for row in rows]
        table[label] = entry
    return table


def run_suite(suite_name: str, seeds: list[int], cfg: dict[str, Any], n_scarce: int, quick: bool) -> None:
    start = time.perf_counter()
    runs = []
    for seed in seeds:
        print(f"{suite_name} seed {seed}", flush=True)
        runs.append(run_seed(suite_name, seed, cfg, n_scarce))
    suite = load_suite(suite_name, seed=seeds[0], n_per_domain=cfg["n_per_domain"])
    general = suite.general_domain
    shifted = [n for n in suite.names if n != general]
    payload = {
        "benchmark": "adapt-hierarchical", "suite": suite_name, "seeds": seeds, "n_per_domain": cfg["n_per_domain"],
        "epochs": cfg["epochs"], "large": list(cfg["large"]), "student": cfg["student"], "lr": 1e-3,
        "given_taxonomy": GIVEN[suite_name], "scarce_domains": SCARCE[suite_name], "scarce_field_samples": n_scarce,
        "machine": machine(), "seconds": round(time.perf_counter() - start, 1),
        "general_domain": general, "shifted_domains": shifted,
        "v0": {d: summary([r["v0"][d] for r in runs]) for d in suite.names},
        "experts": {d: summary([r["experts"][d] for r in runs]) for d in shifted},
        "table": {setting: _summarise(runs, setting, general, shifted) for setting in ("full", "scarce")},
        "runs": runs,
    }
    name = f"adapt-hierarchical-{suite_name}" + ("-quick" if quick else "")
    print(f"wrote {write(name, payload)} in {payload['seconds']} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=list(SUITES), nargs="+", default=list(SUITES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scarce", type=int, default=20, help="field samples left to each scarce domain")
    parser.add_argument("--quick", action="store_true", help="1 seed, 400 samples per domain, 2 epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.suite:
        cfg = dict(SUITES[name])
        if args.quick:
            args.seeds, cfg["n_per_domain"], cfg["epochs"] = [0], 400, 2
        run_suite(name, args.seeds, cfg, args.scarce, args.quick)


if __name__ == "__main__":
    main()
