"""The ecosystem cycle: spawn -> specialise -> collect -> feed back, generation after generation.

Generation 0 trains the large model (on the general domain, or pooled). Each generation
``g = 1..G`` then:

1. **collect**: each domain's field data arrives in ``G`` equal, disjoint batches; generation ``g``
   holds the first ``g`` of them (unlabelled: ``y_field`` is only used for evaluation);
2. **spawn and specialise**: one small expert per domain is distilled from the current large model
   on the pooled labelled data plus its domain's field data, then fine-tuned on its domain
   (:func:`crossfeed.spawn.spawn_experts`), or, with ``experts.method: finetune``, the expert is
   a copy of the large model fine-tuned on its domain;
3. **feed back**: the experts teach the large model (:func:`crossfeed.feedback.absorb` with the
   configured strategy; ``compare`` strategies run from the same start and are only reported);
4. **gate**: the new large model replaces the old one unless it loses more than ``tolerance``
   validation accuracy on some domain (the cycle never ships a regression it can see);
5. **measure** every model (large and experts) on every domain's test split, and checkpoint the
   generation atomically (:mod:`crossfeed.cycle._checkpoint`).

Every random choice of generation ``g`` is seeded from ``(seed, g, role)`` (spawning, feedback),
and a checkpoint holds the exact weights, so a run resumed after a kill reaches the results of an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed._progress import Progress, SilentProgress
from crossfeed.config import ExperimentConfig, config_to_dict
from crossfeed.cycle._checkpoint import (
    finished_generations,
    load_large,
    load_record,
    prepare_run_dir,
    save_generation,
)
from crossfeed.cycle._results import CycleResult, GenerationResult
from crossfeed.data import DomainSuite, load_suite
from crossfeed.evaluate import domain_accuracy
from crossfeed.exceptions import EmptyDataError
from crossfeed.feedback import TrainSettings, absorb
from crossfeed.models import TorchClassifier
from crossfeed.spawn import finetune, spawn_experts

__all__ = ["CycleResult", "GenerationResult", "field_batches", "run_cycle"]

logger = logging.getLogger(__name__)


def field_batches(
    suite: DomainSuite, generation: int, generations: int, domains: list[str] | None = None
) -> DomainSuite:
    """The suite as generation ``generation`` sees it: the first ``generation`` of ``generations``
    equal batches of the field data of ``domains`` (default: all; the rest has not arrived yet).
    Other domains are left as they are."""
    chosen = set(suite.names if domains is None else domains)
    out = []
    for d in suite:
        if d.name not in chosen:
            out.append(d)
            continue
        if d.X_field is None or len(d.X_field) < generations:
            raise EmptyDataError(
                f"domain {d.name!r} has {0 if d.X_field is None else len(d.X_field)} field samples; the cycle needs at "
                f"least one per generation ({generations}). Collect more field data or run fewer generations"
            )
        n = len(d.X_field) * generation // generations
        y_field = None if d.y_field is None else d.y_field[:n]
        out.append(dataclasses.replace(d, X_field=d.X_field[:n], y_field=y_field))
    return DomainSuite.from_domains(suite.name, out, meta=suite.meta)


def run_cycle(
    config: ExperimentConfig,
    seed: int,
    out: str | Path | None = None,
    *,
    resume: bool = True,
    progress: Progress | None = None,
    suite: DomainSuite | None = None,
) -> CycleResult:
    """Run ``config.generations`` generations of the cycle for one seed; checkpoint each under ``out``.

    Parameters
    ----------
    config : ExperimentConfig (see :func:`crossfeed.experiments.load_config`).
    seed : seed of the data, the models and every generation.
    out : folder for the checkpoints (``gen-000``, ``gen-001``, ...); None keeps nothing on disk.
    resume : continue from the last finished generation found under ``out`` (the folder must hold
        a run of the same config and seed); False refuses an existing run folder.
    progress : receives stages and training progress (the CLI draws it).
    suite : the loaded suite, to skip loading it again (it must be ``config.suite`` at ``seed``).

    Returns
    -------
    CycleResult

    Example
    -------
    >>> from crossfeed.experiments import config_from_dict                               # doctest: +SKIP
    >>> result = run_cycle(config_from_dict({"generations": 3}), seed=0, out="runs/s0")  # doctest: +SKIP
    >>> result.large_matrix()   # generations x domains                                 # doctest: +SKIP
    """
    progress = progress or SilentProgress()
    if suite is None:
        progress.stage(f"loading suite {config.suite.name!r} (seed {seed})")
        suite = load_suite(config.suite.name, seed=seed, **config.suite.kwargs)
    general = suite.general_domain
    expert_domains = config.experts.domains or [n for n in suite.names if n != general]
    for name in expert_domains:
        suite[name]  # unknown names raise with the list of domains
    field_batches(suite, 1, config.generations, expert_domains)  # enough field data for every generation, before training
    root = Path(out) if out is not None else None

    start_gen, large, history = 0, None, []
    if root is not None:
        prepare_run_dir(root, run_fingerprint(config, seed), resume=resume)
        done = finished_generations(root)
        if done:
            large = load_large(root, done[-1])
            history = [GenerationResult.from_dict(load_record(root, g)) for g in done]
            start_gen = done[-1] + 1
            progress.stage(f"resuming after generation {done[-1]} from {root}")
    result = CycleResult(seed, suite.names, general, history, resumed_from=start_gen - 1 if start_gen else None)

    for g in range(start_gen, config.generations + 1):
        t0 = time.perf_counter()
        if g == 0:
            progress.stage("generation 0: training the large model")
            large = _train_large(config, suite, seed, progress)
            record = GenerationResult(0, {"large": domain_accuracy(large, suite, "test")},
                                      domain_accuracy(large, suite, "val"), seconds={"train_large": time.perf_counter() - t0})
            experts: dict[str, TorchClassifier] = {}
        else:
            large, experts, record = _generation(config, suite, g, large, expert_domains, seed, progress)
        result.generations.append(record)
        if root is not None:
            save_generation(root, g, large, experts, record.to_dict())
        logger.info("generation %d done in %.1f s", g, time.perf_counter() - t0)
    return result


def run_fingerprint(config: ExperimentConfig, seed: int) -> dict[str, Any]:
    """What a seed's checkpoints depend on: the config without its name, seed list and device, and the seed."""
    data = config_to_dict(config)
    for key in ("name", "seeds", "device"):
        data.pop(key)
    return {"config": data, "seed": seed}


def _train_large(config: ExperimentConfig, suite: DomainSuite, seed: int, progress: Progress) -> TorchClassifier:
    c = config.large
    general = suite.general_domain
    names = [general] if c.train_on == "general" else suite.names
    X, y = suite.pooled("train", names)
    X_val, y_val = suite.pooled("val", names)
    # A suite may supply arguments a config cannot hold (the amazon suite's vocabulary); the config wins.
    kwargs = {**suite.meta.get("module_kwargs", {}).get(c.module, {}), **c.module_kwargs}
    model = TorchClassifier(
        c.module, module_kwargs=kwargs or None, epochs=c.epochs, lr=c.lr, weight_decay=c.weight_decay,
        batch_size=c.batch_size, patience=c.patience, optimizer=c.optimizer, device=config.device, random_state=seed,
        callback=progress.training("large model", c.epochs),
    )
    model.fit(X, y, X_val=X_val, y_val=y_val)
    model.set_params(callback=None)  # a saved model keeps no reference to the terminal
    return model


def _generation(
    config: ExperimentConfig, full: DomainSuite, g: int, large: TorchClassifier, expert_domains: list[str],
    seed: int, progress: Progress,
) -> tuple[TorchClassifier, dict[str, TorchClassifier], GenerationResult]:
    spawn_seed, feedback_seed = (_derive_seed(seed, g, role) for role in (1, 2))
    suite = field_batches(full, g, config.generations, expert_domains)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    progress.stage(f"generation {g}: spawning {len(expert_domains)} experts")
    e = config.experts
    if e.method == "finetune":
        experts = {name: finetune(large, suite[name], freeze=e.freeze, epochs=e.finetune_epochs, random_state=spawn_seed + i)
                   for i, name in enumerate(expert_domains)}
    else:
        experts = spawn_experts(large, suite, student=e.student, temperature=e.temperature, alpha=e.alpha,
                                epochs=e.epochs, finetune_epochs=e.finetune_epochs, freeze=e.freeze,
                                domains=expert_domains, random_state=spawn_seed)
    seconds["spawn"] = time.perf_counter() - t0

    f = config.feedback
    progress.stage(f"generation {g}: feedback ({f.strategy})")
    settings = feedback_settings(config, large, feedback_seed)
    new, report = absorb(large, experts, suite, f.strategy, settings, params=f.kwargs,
                         keep_weaker_experts=f.keep_weaker_experts)
    seconds["feedback"] = report.wall_seconds
    compare = {}
    for c in f.compare:
        progress.stage(f"generation {g}: comparing with {c.strategy}")
        _, compare[c.strategy] = absorb(large, experts, suite, c.strategy, settings, params=c.kwargs,
                                        keep_weaker_experts=f.keep_weaker_experts)
        seconds[f"compare:{c.strategy}"] = compare[c.strategy].wall_seconds

    old_val, new_val = domain_accuracy(large, suite, "val"), domain_accuracy(new, suite, "val")
    accepted = not f.gate or all(new_val[d] >= old_val[d] - f.tolerance for d in suite.names)
    if not accepted:
        worst = min(suite.names, key=lambda d: new_val[d] - old_val[d])
        progress.stage(f"generation {g}: gate kept the previous large model ({worst}: "
                       f"{100 * old_val[worst]:.1f}% -> {100 * new_val[worst]:.1f}% on validation)")
        new, new_val = large, old_val

    accuracy = {"large": domain_accuracy(new, suite, "test")}
    accuracy.update({f"expert:{name}": domain_accuracy(model, suite, "test") for name, model in experts.items()})
    record = GenerationResult(
        g, accuracy, new_val, feedback=report, compare=compare, accepted=accepted,
        field_samples={name: len(suite[name].X_field) for name in expert_domains}, seconds=seconds,
    )
    return new, experts, record


def feedback_settings(config: ExperimentConfig, large: TorchClassifier, seed: int) -> TrainSettings:
    """The feedback step's settings: ``feedback.*`` of the config; batch size, weight decay and
    optimizer left null there are the large model's (``large.*``)."""
    f = config.feedback
    chosen = {"batch_size": f.batch_size, "weight_decay": f.weight_decay, "optimizer": f.optimizer}
    return TrainSettings.like(large, epochs=f.epochs, lr=f.lr, seed=seed, device=config.device, threads=f.threads,
                              **{k: v for k, v in chosen.items() if v is not None})


def _derive_seed(seed: int, generation: int, role: int) -> int:
    """A seed of its own for each (run seed, generation, role): no two steps share a random stream."""
    return int(np.random.SeedSequence([seed, generation, role]).generate_state(1)[0] >> 1)
