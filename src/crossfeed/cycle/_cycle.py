"""The ecosystem cycle: spawn -> specialise -> collect -> feed back, generation after generation.

Generation 0 trains the large model (on the general domain, or pooled). Each generation
``g = 1..G`` then:

1. **collect**: each domain's field data of generation ``g`` arrives (:mod:`crossfeed.cycle._field`:
   the suite's field split in ``G`` batches, files in a folder, or an iterator); the generation
   holds every batch so far (unlabelled: ``y_field`` is only used for evaluation). A domain joins
   with its first batch;
2. **spawn and specialise**: one small expert per joined domain is distilled from the current
   large model on the pooled labelled data plus its domain's field data, then fine-tuned on its
   domain (:func:`crossfeed.spawn.spawn_experts`), or, with ``experts.method: finetune``, the
   expert is a copy of the large model fine-tuned on its domain;
3. **feed back**: the experts teach the large model (:func:`crossfeed.feedback.absorb` with the
   configured strategy; ``compare`` strategies run from the same start and are only reported);
4. **gate** (:mod:`crossfeed.cycle._gate`): on held-out gate data, a paired test per domain decides
   which model serves each domain (the one it had, the new large model, or its expert) so that
   no domain's served accuracy falls by more than the margin at the stated confidence, and
   whether the new large model goes on;
5. **measure** every model (large, experts, served) on every domain's test split, record the
   lineage (:mod:`crossfeed.cycle._lineage`), and checkpoint the generation atomically
   (:mod:`crossfeed.cycle._checkpoint`).

Every random choice of generation ``g`` is seeded from ``(seed, g, role)`` (spawning, feedback,
gate), and a checkpoint holds the exact weights, so a run resumed after a kill reaches the results
of an uninterrupted one, and :func:`reproduce_generation` rebuilds any generation from its parent.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed._progress import Progress, SilentProgress
from crossfeed._validation import check_int
from crossfeed.combine import compose_experts, weight_ensemble
from crossfeed.config import ExperimentConfig, ExpertsConfig, config_from_dict, config_to_dict
from crossfeed.cycle._checkpoint import (
    RUN_FILE,
    finished_generations,
    load_large,
    load_record,
    prepare_run_dir,
    read_fingerprint,
    save_generation,
)
from crossfeed.cycle._field import FieldSource, SuiteField, collect, data_sha256, field_source
from crossfeed.cycle._gate import ServedRef, decide
from crossfeed.cycle._lineage import check_field_lineage, config_sha256, weights_sha256
from crossfeed.cycle._results import CycleResult, GenerationResult
from crossfeed.data import DomainSuite, load_suite
from crossfeed.evaluate import domain_accuracy, prediction_accuracy
from crossfeed.exceptions import EmptyDataError, ModelFileError, ValidationError
from crossfeed.feedback import FeedbackReport, RoundsEngine, TrainSettings, absorb
from crossfeed.models import MetaForest, TorchClassifier, load_model
from crossfeed.spawn import (
    SearchResult,
    finetune,
    prior_configs,
    search_architecture,
    spawn_experts,
    warm_start_configs,
)

__all__ = ["CycleResult", "GenerationResult", "field_batches", "load_cycle", "reproduce_generation", "run_cycle"]

logger = logging.getLogger(__name__)

GateData = dict[str, tuple[np.ndarray, np.ndarray]]


def field_batches(
    suite: DomainSuite, generation: int, generations: int, domains: list[str] | None = None
) -> DomainSuite:
    """The suite as generation ``generation`` sees it: the first ``generation`` of ``generations``
    equal batches of the field data of ``domains`` (default: all; the rest has not arrived yet).
    Other domains are left as they are."""
    chosen = list(suite.names if domains is None else domains)
    collected, _ = collect(suite, SuiteField(suite, generations, chosen), generation, chosen)
    return DomainSuite.from_domains(
        suite.name, [collected[d.name] if d.name in chosen else d for d in suite], meta=suite.meta)


def hold_out(suite: DomainSuite, share: float, seed: int) -> tuple[DomainSuite, GateData]:
    """Split each domain's validation data into what training sees and the gate's held-out part.

    Stratified by label, seeded; ``share == 0`` gates on the whole validation split (round 1).
    """
    if share == 0.0:
        return suite, {d.name: (d.X_val, d.y_val) for d in suite}
    rng = np.random.default_rng([seed, 7])
    domains, gate = [], {}
    for d in suite:
        held = np.zeros(len(d.y_val), dtype=bool)
        for label in np.unique(d.y_val):
            rows = rng.permutation(np.flatnonzero(d.y_val == label))
            held[rows[: int(round(share * len(rows)))]] = True
        if held.all() or not held.any():
            raise EmptyDataError(
                f"domain {d.name!r}: gate.holdout {share} of its {len(d.y_val)} validation samples leaves "
                f"{'none for training' if held.all() else 'none for the gate'}; choose a share between those "
                "extremes or give the domain more validation data"
            )
        gate[d.name] = (d.X_val[held], d.y_val[held])
        domains.append(dataclasses.replace(d, X_val=d.X_val[~held], y_val=d.y_val[~held]))
    return DomainSuite.from_domains(suite.name, domains, meta=suite.meta), gate


def run_cycle(
    config: ExperimentConfig,
    seed: int,
    out: str | Path | None = None,
    *,
    resume: bool = True,
    progress: Progress | None = None,
    suite: DomainSuite | None = None,
    field: FieldSource | Iterable[Mapping[str, Any]] | None = None,
    until: int | None = None,
) -> CycleResult:
    """Run ``config.generations`` generations of the cycle for one seed; checkpoint each under ``out``.

    Parameters
    ----------
    config : ExperimentConfig (see :func:`crossfeed.experiments.load_config`).
    seed : seed of the data, the models and every generation.
    out : folder for the checkpoints (``gen-000``, ``gen-001``, ...); None keeps nothing on disk.
    resume : continue from the last finished generation found under ``out`` (the folder must hold
        a run of the same config and seed, fed the same field data so far); False refuses an
        existing run folder.
    progress : receives stages and training progress (the CLI draws it).
    suite : the loaded suite, to skip loading it again (it must be ``config.suite`` at ``seed``).
    field : the field data, overriding ``config.field_data``: an iterable whose item ``i`` maps
        domains to generation ``i + 1``'s batch (``X`` or ``(X, y)``), or a field source
        (:class:`crossfeed.cycle.FolderField`, ...).
    until : stop after this generation (None: ``config.generations``); a later call with the same
        ``out`` resumes from there. Run generation 0 data-parallel on several machines with
        ``until=0`` under torchrun, then the rest in one process (see the README).

    Returns
    -------
    CycleResult

    Example
    -------
    >>> from crossfeed.experiments import config_from_dict                               # doctest: +SKIP
    >>> result = run_cycle(config_from_dict({"generations": 3}), seed=0, out="runs/s0")  # doctest: +SKIP
    >>> result.served_matrix()   # generations x domains                                # doctest: +SKIP
    """
    progress = progress or SilentProgress()
    last = config.generations if until is None else check_int(until, "run_cycle(until=...)", 0)
    if suite is None:
        progress.stage(f"loading suite {config.suite.name!r} (seed {seed})")
        suite = load_suite(config.suite.name, seed=seed, **config.suite.kwargs)
    general = suite.general_domain
    candidates = _candidate_domains(config, suite)
    for name in candidates:
        suite[name]  # unknown names raise with the list of domains
    suite, gate_data = hold_out(suite, config.gate.holdout, seed)
    source = field_source(config, suite, candidates, field)  # the suite's field split is checked here, before training
    root = Path(out) if out is not None else None
    fingerprint = run_fingerprint(config, seed)

    state = _State(root)
    start_gen, history = 0, []
    if root is not None:
        prepare_run_dir(root, fingerprint, resume=resume)
        done = finished_generations(root)
        if done:
            history = [GenerationResult.from_dict(load_record(root, g)) for g in done]
            for record in history[1:]:  # the data of finished generations must not have changed
                seen = collect(suite, source, record.generation, candidates)[1]
                check_field_lineage(record.lineage.get("field", {}), seen, record.generation, root)
            state.restore(history[-1])
            start_gen = done[-1] + 1
            progress.stage(f"resuming after generation {done[-1]} from {root}")
    result = CycleResult(seed, suite.names, general, history, resumed_from=start_gen - 1 if start_gen else None,
                         margin=config.gate.margin)

    for g in range(start_gen, min(last, config.generations) + 1):
        t0 = time.perf_counter()
        if g == 0:
            progress.stage("generation 0: training the large model")
            large = _train_large(config, suite, seed, progress)
            ref = ServedRef("large g0", "gen-000/large")
            state.add(ref, large)
            state.large, state.served = ref, {d: ref for d in suite.names}
            X, y = _train_data(config, suite)
            lineage = {"seed": seed, "generation": 0, "config_sha256": config_sha256(fingerprint), "general_domain": general,
                       "train": {"domains": _train_domains(config, suite), "samples": len(X), "sha256": data_sha256(X, y)},
                       "large": {**ref.to_dict(), "sha256": weights_sha256(large)}}
            test_accuracy = domain_accuracy(large, suite, "test")
            record = GenerationResult(
                0, {"large": test_accuracy, "served": dict(test_accuracy)},
                domain_accuracy(large, suite, "val"), seconds={"train_large": time.perf_counter() - t0},
                served={d: ref.to_dict() for d in suite.names}, lineage=lineage)
            experts: dict[str, TorchClassifier] = {}
            candidate = None
        else:
            experts, candidate, record = _generation(config, suite, gate_data, source, candidates, g, seed, state,
                                                     fingerprint, progress)
        result.generations.append(record)
        if root is not None:
            save_generation(root, g, state.model(state.large), experts, record.to_dict(), candidate=candidate)
        state.forget_unused()
        logger.info("generation %d done in %.1f s", g, time.perf_counter() - t0)
    return result


class _State:
    """The models the cycle carries between generations: the large model that goes on, what serves
    each domain, and the models behind those labels (loaded from the run folder on resume)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.large: ServedRef | None = None
        self.served: dict[str, ServedRef] = {}
        self._models: dict[str, Any] = {}

    def add(self, ref: ServedRef, model: Any) -> None:
        self._models[ref.label] = model

    def model(self, ref: ServedRef) -> Any:
        if ref.label not in self._models:
            if self.root is None:
                raise ModelFileError(f"model {ref.label!r} is neither in memory nor on disk")
            self._models[ref.label] = load_model(self.root / ref.path)
        return self._models[ref.label]

    def restore(self, last: GenerationResult) -> None:
        self.large = ServedRef(**{k: last.lineage["large"][k] for k in ("label", "path")})
        self.served = {d: ServedRef(**ref) for d, ref in last.served.items()}
        self._models[self.large.label] = load_large(self.root, last.generation)

    def forget_unused(self) -> None:
        keep = {self.large.label, *(r.label for r in self.served.values())}
        self._models = {k: v for k, v in self._models.items() if k in keep}


def run_fingerprint(config: ExperimentConfig, seed: int) -> dict[str, Any]:
    """What a seed's checkpoints depend on: the config without its name, seed list and device, and the seed."""
    data = config_to_dict(config)
    for key in ("name", "seeds", "device"):
        data.pop(key)
    if not data["gate"].get("compose"):
        data["gate"].pop("compose", None)  # runs written before the option existed keep their fingerprint
    if data["gate"].get("compose_method") == "gated":
        data["gate"].pop("compose_method")
    if data["experts"]["method"] != "search":
        data["experts"].pop("search")  # likewise: only a searching run depends on the search's settings
    if data["experts"]["method"] != "forest":
        data["experts"].pop("forest")
    if not data["experts"].get("mixup"):
        data["experts"].pop("mixup", None)  # likewise for runs without mixup rows
    if data["feedback"].get("engine") == "local":
        data["feedback"].pop("engine")  # likewise: the default engine leaves old fingerprints as they were
    return {"config": data, "seed": seed}


def _candidate_domains(config: ExperimentConfig, suite: DomainSuite) -> list[str]:
    """The domains that may get an expert: ``experts.domains``, or every domain but the general one."""
    return config.experts.domains or [n for n in suite.names if n != suite.general_domain]


def _train_domains(config: ExperimentConfig, suite: DomainSuite) -> list[str]:
    return [suite.general_domain] if config.large.train_on == "general" else suite.names


def _train_data(config: ExperimentConfig, suite: DomainSuite) -> tuple[np.ndarray, np.ndarray]:
    return suite.pooled("train", _train_domains(config, suite))


def _train_large(config: ExperimentConfig, suite: DomainSuite, seed: int, progress: Progress) -> TorchClassifier:
    c = config.large
    names = _train_domains(config, suite)
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


def _expert_domains(candidates: list[str], field: Mapping[str, Mapping[str, Any]], g: int) -> list[str]:
    domains = [d for d in candidates if d in field and field[d]["samples"] > 0]
    if not domains:
        raise EmptyDataError(
            f"generation {g}: no domain has field data yet (candidates: {candidates}); a generation needs at least "
            "one domain's batch to spawn an expert from"
        )
    return domains


def _train_generation(
    config: ExperimentConfig, suite: DomainSuite, g: int, large: TorchClassifier, expert_domains: list[str],
    seed: int, progress: Progress,
) -> tuple[TorchClassifier, dict[str, Any], FeedbackReport, dict[str, FeedbackReport], dict[str, float],
           dict[str, Any]]:
    """Spawn the experts of generation ``g`` from ``large`` and feed them back: every random step
    seeded from ``(seed, g)``, so the same inputs give the same weights."""
    spawn_seed, feedback_seed = _step_seeds(seed, g)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    progress.stage(f"generation {g}: spawning {len(expert_domains)} experts")
    e = config.experts
    searched: dict[str, Any] = {}
    if e.method == "finetune":
        experts = {name: finetune(large, suite[name], freeze=e.freeze, epochs=e.finetune_epochs, random_state=spawn_seed + i)
                   for i, name in enumerate(expert_domains)}
    elif e.method == "search":
        experts, searched = _searched_experts(e, suite, large, expert_domains, spawn_seed, progress)
    elif e.method == "forest":
        experts = _forest_experts(e, suite, expert_domains, spawn_seed, progress)
    else:
        experts = spawn_experts(large, suite, student=e.student, temperature=e.temperature, alpha=e.alpha,
                                epochs=e.epochs, finetune_epochs=e.finetune_epochs, freeze=e.freeze,
                                mixup=e.mixup, domains=expert_domains, random_state=spawn_seed)
    seconds["spawn"] = time.perf_counter() - t0

    f = config.feedback
    progress.stage(f"generation {g}: feedback ({f.strategy})")
    settings = feedback_settings(config, large, feedback_seed)
    new, report = absorb(large, experts, suite, f.strategy, settings, params=f.kwargs,
                         keep_weaker_experts=f.keep_weaker_experts, engine=_engine(f.engine))
    seconds["feedback"] = report.wall_seconds
    compare = {}
    for c in f.compare:
        progress.stage(f"generation {g}: comparing with {c.strategy}")
        _, compare[c.strategy] = absorb(large, experts, suite, c.strategy, settings, params=c.kwargs,
                                        keep_weaker_experts=f.keep_weaker_experts)
        seconds[f"compare:{c.strategy}"] = compare[c.strategy].wall_seconds
    return new, experts, report, compare, seconds, searched


def _forest_experts(e: ExpertsConfig, suite: DomainSuite, domains: list[str], seed: int,
                    progress: Progress) -> dict[str, MetaForest]:
    """``experts.method: forest``: per domain, a meta decision forest grown on every other domain's
    labelled training rows (the leaf refit meta-learnt across them), adapted to the domain's own."""
    experts = {}
    for i, name in enumerate(domains):
        progress.stage(f"growing the meta forest of {name}'s expert")
        sources = [d for d in suite.names if d != name]
        X = np.concatenate([suite[d].X_train for d in sources])  # MetaForest flattens its rows
        y = np.concatenate([np.asarray(suite[d].y_train) for d in sources])
        labels = np.concatenate([np.full(len(suite[d].y_train), j) for j, d in enumerate(sources)])
        forest = MetaForest(**e.forest, random_state=seed + i).fit(X, y, domains=labels)
        experts[name] = forest.adapt(suite[name].X_train, suite[name].y_train)
    return experts


def _searched_experts(e: ExpertsConfig, suite: DomainSuite, large: TorchClassifier, domains: list[str], seed: int,
                      progress: Progress) -> tuple[dict[str, TorchClassifier], dict[str, Any]]:
    """``experts.method: search``: per domain, in order, an architecture search warm-started from the
    domains searched before it, then the large model distilled into the best configuration."""
    space, c = e.search.space(), e.search
    results: list[SearchResult] = []
    experts: dict[str, TorchClassifier] = {}
    searched: dict[str, Any] = {}
    for i, name in enumerate(domains):
        progress.stage(f"searching the architecture of {name}'s expert ({c.trials} trials)")
        if not results:
            warm = []
        elif c.prior:
            warm = prior_configs(results, space, n=c.prior, seed=seed + i)
        else:
            warm = warm_start_configs(results, k=c.warm_start) if c.warm_start else []
        result = search_architecture(space, suite[name], n_trials=c.trials, seed=seed + i, warm_start=warm)
        results.append(result)
        best = result.best
        student = space.estimator(best["params"], random_state=seed + i).set_params(epochs=e.epochs)
        experts.update(spawn_experts(large, suite, student=student, temperature=e.temperature, alpha=e.alpha,
                                     finetune_epochs=e.finetune_epochs, freeze=e.freeze, mixup=e.mixup,
                                     domains=[name], random_state=seed + i))
        searched[name] = {"best": dict(best["params"]), "val_accuracy": best["accuracy"],
                          "flops_per_sample": best["flops_per_sample"], "warm_start": [dict(w) for w in warm],
                          "trials": result.to_dict()["trials"]}
    return experts, searched


def _engine(name: str) -> RoundsEngine | None:
    """The rounds engine of ``feedback.engine``: None (in process) or Flower's (``crossfeed[federated]``)."""
    if name == "local":
        return None
    from crossfeed.federated import flower_rounds  # Flower is an optional extra: imported only when asked for

    return flower_rounds


def _generation(
    config: ExperimentConfig, full: DomainSuite, gate_data: GateData, source: FieldSource, candidates: list[str],
    g: int, seed: int, state: _State, fingerprint: dict[str, Any], progress: Progress,
) -> tuple[dict[str, TorchClassifier], TorchClassifier | None, GenerationResult]:
    suite, field = collect(full, source, g, candidates)
    expert_domains = _expert_domains(candidates, field, g)
    old_ref = state.large
    large = state.model(old_ref)
    new, experts, report, compare, seconds, searched = _train_generation(config, suite, g, large, expert_domains,
                                                                          seed, progress)

    t0 = time.perf_counter()
    new_ref = ServedRef(f"large g{g}", f"gen-{g:03d}/large")
    expert_refs = {d: ServedRef(f"expert:{d} g{g}", f"gen-{g:03d}/experts/{d}") for d in expert_domains}
    state.add(new_ref, new)
    for d, ref in expert_refs.items():
        state.add(ref, experts[d])
    options = {d: [new_ref, *([expert_refs[d]] if d in expert_refs else [])] for d in suite.names}
    needed = {(r, d) for d in suite.names for r in (old_ref, new_ref, state.served[d], *options[d])}
    correct = {(r.label, d): np.asarray(state.model(r).predict(gate_data[d][0])) == gate_data[d][1] for r, d in needed}
    outcome = decide(config.gate, state.served, correct, options, new_ref, old_ref, seed=_derive_seed(seed, g, 3))
    if not outcome.advanced:  # the feedback output stays on disk as this generation's candidate
        moved = ServedRef(new_ref.label, f"gen-{g:03d}/candidate")
        state.add(moved, new)
        outcome = dataclasses.replace(outcome, served={d: moved if r == new_ref else r for d, r in outcome.served.items()})
        new_ref = moved
    state.large = new_ref if outcome.advanced else old_ref
    state.served = outcome.served
    seconds["gate"] = time.perf_counter() - t0
    if not outcome.advanced:
        progress.stage(f"generation {g}: the previous large model goes on ({old_ref.label})")

    kept = state.model(state.large)
    accuracy = {"large": domain_accuracy(kept, suite, "test")}
    accuracy.update({f"expert:{name}": domain_accuracy(model, suite, "test") for name, model in experts.items()})
    measured = {state.large.label: accuracy["large"],
                **{expert_refs[name].label: accuracy[f"expert:{name}"] for name in experts}}
    accuracy["served"] = {
        d.name: measured[ref.label][d.name] if ref.label in measured
        else prediction_accuracy(state.model(ref), d.X_test, d.y_test)
        for d in suite for ref in [state.served[d.name]]
    }
    if config.gate.compose:
        t0 = time.perf_counter()
        composed = (_weight_ensembled(suite, gate_data, large, experts, seed, g) if config.gate.compose_method == "wemoe"
                    else _composed(config, suite, gate_data, state, kept, seed, g))
        accuracy["composed"] = domain_accuracy(composed, suite, "test")
        seconds["compose"] = time.perf_counter() - t0
    new_sha = weights_sha256(new)
    spawn_seed, feedback_seed = _step_seeds(seed, g)
    lineage = {
        "seed": seed, "generation": g, "spawn_seed": spawn_seed, "feedback_seed": feedback_seed,
        "config_sha256": config_sha256(fingerprint),
        "parent": {**old_ref.to_dict(), "sha256": weights_sha256(large)},
        "strategy": config.feedback.strategy, "kwargs": dict(config.feedback.kwargs),
        "experts": {"method": config.experts.method, "student": config.experts.student, "domains": expert_domains,
                    **({"search": searched} if searched else {})},
        "field": field,
        "candidate": {**new_ref.to_dict(), "sha256": new_sha},
        "large": {**state.large.to_dict(), "sha256": new_sha if kept is new else weights_sha256(kept)},
        "expert_sha256": {d: weights_sha256(m) for d, m in experts.items()},
    }
    record = GenerationResult(
        g, accuracy, domain_accuracy(kept, suite, "val"), feedback=report, compare=compare, accepted=outcome.advanced,
        field_samples={name: len(suite[name].X_field) for name in expert_domains}, seconds=seconds,
        served={d: r.to_dict() for d, r in state.served.items()}, decisions=[x.to_dict() for x in outcome.decisions],
        lineage=lineage,
    )
    return experts, None if outcome.advanced else new, record


def _composed(config: ExperimentConfig, suite: DomainSuite, gate_data: GateData, state: _State, kept: Any,
              seed: int, g: int) -> TorchClassifier:
    """The large model that goes on and every domain's served model behind one learned gate (``gate.compose``)."""
    members: dict[str, Any] = {"large": kept}
    member_of: dict[str, str] = {}
    for d in suite.names:
        ref = state.served[d]
        member_of[d] = "large" if ref == state.large else ref.label
        members.setdefault(member_of[d], state.model(ref))
    if len(members) < 2:  # every domain is served by the large model: the mixture is that model
        return kept
    X = np.concatenate([gate_data[d][0] for d in suite.names])
    y = np.concatenate([gate_data[d][1] for d in suite.names])
    routed = [d for d in suite.names if suite[d].X_field is not None and len(suite[d].X_field)]
    X_routed = np.concatenate([suite[d].X_field for d in routed]) if routed else None
    routed_to = [member_of[d] for d in routed for _ in range(len(suite[d].X_field))] if routed else None
    return compose_experts(members, X, y, X_routed=X_routed, routed_to=routed_to, top_k=min(config.gate.compose, len(members)),
                           random_state=_derive_seed(seed, g, 5))


def _weight_ensembled(suite: DomainSuite, gate_data: GateData, parent: TorchClassifier,
                      experts: dict[str, TorchClassifier], seed: int, g: int) -> TorchClassifier:
    """``gate.compose_method: wemoe``: the generation's fine-tuned experts merged into the model they
    were fine-tuned from, routers trained on the gate's held-out rows of every domain."""
    X = np.concatenate([gate_data[d][0] for d in suite.names])
    y = np.concatenate([gate_data[d][1] for d in suite.names])
    return weight_ensemble(parent, experts, X, y, random_state=_derive_seed(seed, g, 5))


def load_cycle(run_dir: str | Path) -> CycleResult | None:
    """The finished generations of a seed's run folder as a :class:`CycleResult` (None if none finished)."""
    root = Path(run_dir)
    done = finished_generations(root) if root.is_dir() else []
    if not done:
        return None
    fingerprint = read_fingerprint(root)
    records = [GenerationResult.from_dict(load_record(root, g)) for g in done]
    domains = list(records[0].accuracy["large"])
    general = records[0].lineage.get("general_domain", domains[0])
    margin = fingerprint["config"].get("gate", {}).get("margin", 0.0)
    return CycleResult(fingerprint["seed"], domains, general, records, margin=margin)


def reproduce_generation(
    run_dir: str | Path, generation: int, *, suite: DomainSuite | None = None,
    field: FieldSource | Iterable[Mapping[str, Any]] | None = None,
) -> tuple[TorchClassifier, dict[str, TorchClassifier]]:
    """Rerun generation ``generation`` of a seed's run folder from its parent checkpoint and lineage.

    Reads the config and seed from ``run.json``, the parent large model named by the generation's
    lineage, and the same field data (checked against the lineage's hashes); returns the feedback
    step's large model and the experts. Their :func:`~crossfeed.cycle.weights_sha256` equal the
    lineage's ``candidate`` and ``expert_sha256`` when the run is reproducible.

    Example
    -------
    >>> large, experts = reproduce_generation("runs/demo/seed-0", 2)              # doctest: +SKIP
    """
    root = Path(run_dir)
    if generation < 1:
        raise ValidationError(f"generation must be >= 1 (generation 0 is trained from the config alone); got {generation}")
    fingerprint = read_fingerprint(root)
    done = finished_generations(root)
    if generation not in done:
        raise ValidationError(f"{root} has no finished generation {generation} (finished: {done})")
    config = config_from_dict({**fingerprint["config"], "seeds": [fingerprint["seed"]]}, source=str(root / RUN_FILE))
    seed = fingerprint["seed"]
    lineage = load_record(root, generation)["lineage"]
    if suite is None:
        suite = load_suite(config.suite.name, seed=seed, **config.suite.kwargs)
    candidates = _candidate_domains(config, suite)
    suite, _ = hold_out(suite, config.gate.holdout, seed)
    source = field_source(config, suite, candidates, field)
    collected, seen = collect(suite, source, generation, candidates)
    check_field_lineage(lineage["field"], seen, generation, root)
    parent = load_model(root / lineage["parent"]["path"])
    if weights_sha256(parent) != lineage["parent"]["sha256"]:
        raise ModelFileError(f"{root / lineage['parent']['path']} is not the parent generation {generation} started from")
    new, experts, *_ = _train_generation(config, collected, generation, parent, lineage["experts"]["domains"], seed,
                                         SilentProgress())
    return new, experts
def feedback_settings(config: ExperimentConfig, large: TorchClassifier, seed: int) -> TrainSettings:
    """The feedback step's settings: ``feedback.*`` of the config; batch size, weight decay and
    optimizer left null there are the large model's (``large.*``)."""
    f = config.feedback
    chosen = {"batch_size": f.batch_size, "weight_decay": f.weight_decay, "optimizer": f.optimizer}
    return TrainSettings.like(large, epochs=f.epochs, lr=f.lr, seed=seed, device=config.device, threads=f.threads,
                              **{k: v for k, v in chosen.items() if v is not None})


def _step_seeds(seed: int, generation: int) -> tuple[int, int]:
    """The seeds of generation ``generation``'s spawning and feedback steps."""
    return _derive_seed(seed, generation, 1), _derive_seed(seed, generation, 2)


def _derive_seed(seed: int, generation: int, role: int) -> int:
    """A seed of its own for each (run seed, generation, role): no two steps share a random stream."""
    return int(np.random.SeedSequence([seed, generation, role]).generate_state(1)[0] >> 1)
