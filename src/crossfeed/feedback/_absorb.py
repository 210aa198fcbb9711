"""``absorb``: the feedback step of the cycle. Domain experts teach a copy of the large model.

Reads like the algorithm: check the strategy's parameters and the experts, replace experts that
do not beat the large model, let the strategy prepare data and hooks (or run its rounds), train a
copy of the large model through the one training loop, then measure every domain before and after.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed.data import DomainSuite
from crossfeed.evaluate import absorption, forgetting, prediction_accuracy
from crossfeed.exceptions import EmptyDataError, LabelMismatchError, ValidationError
from crossfeed.feedback._base import (
    STRATEGIES,
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    TrainSettings,
    flat,
    general_data,
)
from crossfeed.feedback._rounds import Failure, RoundLog, RoundsStrategy, run_rounds
from crossfeed.models import TorchClassifier, check_torch_model, fitted_copy, warm_fit
from crossfeed.training import Batch, TrainingHook, torch_threads

__all__ = ["DomainFeedback", "FeedbackReport", "RoundsEngine", "absorb"]

#: How a rounds strategy's rounds run: ``engine(strategy, ctx, start) -> (final network, log)``;
#: its ``engine_name`` attribute (else its ``__name__``) is what the report calls it.
#: The default is :func:`~crossfeed.feedback.run_rounds` (in process);
#: :func:`crossfeed.federated.flower_rounds` runs the same rounds as Flower apps.
RoundsEngine = Callable[[RoundsStrategy, FeedbackContext, nn.Module], tuple[nn.Module, list[RoundLog]]]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainFeedback:
    """Test accuracies of one domain before (``acc_v0``) and after (``acc_v1``) feedback.

    ``absorption = (acc_v1 - acc_v0) / (acc_expert - acc_v0)``: the share of the expert's lead
    that the large model took over; None when there is no expert or it does not lead.
    """

    acc_v0: float
    acc_expert: float | None
    acc_v1: float
    absorption: float | None

    @classmethod
    def measure(cls, large: Any, expert: Any, new: Any, X: Any, y: Any) -> DomainFeedback:
        """The four numbers of one domain's test split (accuracies from :mod:`crossfeed.evaluate`)."""
        acc_v0, acc_v1 = prediction_accuracy(large, X, y), prediction_accuracy(new, X, y)
        acc_e = None if expert is None else prediction_accuracy(expert, X, y)
        return cls(acc_v0, acc_e, acc_v1, absorption(acc_v0, acc_e, acc_v1))


@dataclass
class FeedbackReport:
    """What :func:`absorb` measured.

    Attributes
    ----------
    strategy : registry name of the strategy.
    domains : per-domain :class:`DomainFeedback` on each domain's test split.
    general_domain : name of the general domain.
    forgetting : ``acc_v0 - acc_v1`` on the general domain's test split (positive = forgotten).
    wall_seconds : wall-clock seconds of preparation and training.
    info : what the strategy reported (e.g. pseudo-labels kept per domain), plus
        ``replaced_experts`` (see :func:`absorb`).
    settings : the :class:`TrainSettings` the step trained with.
    params : the strategy's parameters.
    rounds : per round of a rounds strategy: clients, failures, seconds, bytes sent.
    """

    strategy: str
    domains: dict[str, DomainFeedback]
    general_domain: str
    forgetting: float
    wall_seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    settings: TrainSettings = field(default_factory=TrainSettings)
    params: dict[str, Any] = field(default_factory=dict)
    rounds: list[RoundLog] = field(default_factory=list)

    def mean(self, which: str, domains: Sequence[str] | None = None) -> float:
        """Mean of ``"acc_v0"``, ``"acc_v1"`` or ``"acc_expert"`` over ``domains`` (default: all shifted ones)."""
        names = list(domains) if domains is not None else [n for n in self.domains if n != self.general_domain]
        values = [getattr(self.domains[n], which) for n in names]
        return float(np.mean([v for v in values if v is not None]))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``from_dict`` reads it back)."""
        return {"strategy": self.strategy, "general_domain": self.general_domain, "forgetting": self.forgetting,
                "wall_seconds": self.wall_seconds, "domains": {d: dataclasses.asdict(r) for d, r in self.domains.items()},
                "info": jsonable(self.info), "settings": self.settings.to_dict(), "params": jsonable(self.params),
                "rounds": [dataclasses.asdict(r) for r in self.rounds]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeedbackReport:
        rounds = [RoundLog(r["round"], tuple(r["clients"]), tuple(Failure(**f) for f in r["failures"]),
                           r["kept_previous"], r["seconds"], r["bytes_sent"]) for r in data.get("rounds", [])]
        return cls(data["strategy"], {d: DomainFeedback(**r) for d, r in data["domains"].items()},
                   data["general_domain"], data["forgetting"], data["wall_seconds"], dict(data.get("info", {})),
                   TrainSettings(**data["settings"]) if "settings" in data else TrainSettings(),
                   dict(data.get("params", {})), rounds)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and small arrays as plain Python (large arrays summarised)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{value.shape}"
    if isinstance(value, np.generic):
        return value.item()
    return value


class SoftTargetsHook(TrainingHook):
    """Returns precomputed per-sample target rows (looked up by ``Batch.index``) to the loop.

    Rows may be scaled by a sample weight (cross-entropy is linear in its targets) and all-zero
    rows contribute no base loss, which is how unlabelled rows are left to other hooks.
    """

    def __init__(self, targets: np.ndarray) -> None:
        self._targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self._targets = self._targets.to(device)

    def targets(self, batch: Batch, module: nn.Module) -> torch.Tensor | None:
        return self._targets[batch.index]


def absorb(
    large: TorchClassifier,
    experts: Mapping[str, Any],
    suite: DomainSuite,
    strategy: str | FeedbackStrategy,
    settings: TrainSettings | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    keep_weaker_experts: bool = False,
    epochs: int | None = None,
    lr: float | None = None,
    random_state: int | None = None,
    engine: RoundsEngine | None = None,
) -> tuple[TorchClassifier, FeedbackReport]:
    """Let domain ``experts`` teach a copy of ``large``; return the new model and a report.

    ``large`` is never modified: a copy of its weights keeps training (warm start) through the one
    training loop on the data the strategy prepares, with the strategy's hooks (or through the
    rounds of a :class:`~crossfeed.feedback.RoundsStrategy`).

    Parameters
    ----------
    large : fitted TorchClassifier, the current large model (generation v0).
    experts : mapping domain name -> fitted classifier of that domain (same classes as ``large``).
    suite : DomainSuite holding the domains named in ``experts`` and its general domain.
    strategy : a registered name (see ``STRATEGIES.names()``) or a :class:`FeedbackStrategy`.
    settings : :class:`TrainSettings` of this step. None: ``TrainSettings.like(large)`` (the large
        model's batch size, weight decay, optimizer and device; 10 epochs at lr 1e-3, seed 0).
        ``epochs=0`` trains nothing (the new model is the strategy's ``initial_module``).
    params : the strategy's parameters (only with a name), checked against its declaration.
    keep_weaker_experts : bool, default False. An expert that is not more accurate than ``large``
        on its own domain's validation split has nothing to teach there: by default the strategy
        gets ``large`` itself in its place (so that domain's field data anchors the old behaviour
        instead of pulling it down); ``report.info["replaced_experts"]`` lists them with both
        validation accuracies. True hands every expert to the strategy as it is.
    epochs, lr, random_state : shorthands that override those fields of ``settings``.
    engine : how a :class:`~crossfeed.feedback.RoundsStrategy`'s rounds run (see
        :data:`RoundsEngine`); None: in this process (:func:`~crossfeed.feedback.run_rounds`).
        Refused for strategies without rounds.

    Returns
    -------
    (new_large, FeedbackReport)

    Example
    -------
    >>> new, report = absorb(large, experts, suite, "multi_teacher_kd", TrainSettings(epochs=5))  # doctest: +SKIP
    >>> report.forgetting < 0.05                                                                 # doctest: +SKIP
    """
    large = check_torch_model(large, owner="absorb")
    strat = resolve_strategy(strategy, params)
    if engine is not None and not isinstance(strat, RoundsStrategy):
        raise ValidationError(f"strategy {strat.name!r} has no rounds, so it runs in one place; an engine runs the "
                              "rounds of a rounds strategy (crossfeed.federated.flower_rounds: fedavg, fedprox, "
                              "dp_fedavg, feddf)")
    settings = resolve_settings(large, settings, epochs=epochs, lr=lr, random_state=random_state)
    _check_experts(large, experts, suite, strat)

    start = time.perf_counter()
    with torch_threads(settings.threads):
        teachers, replaced = (dict(experts), {}) if keep_weaker_experts else _replace_weaker(large, experts, suite)
        ctx = FeedbackContext(large, teachers, suite, settings)
        if isinstance(strat, RoundsStrategy):
            data, new, rounds = None, *_run_rounds(strat, ctx, engine or run_rounds)
        else:
            data, new, rounds = *_train_once(strat, ctx), []
        strat.remember(ctx, new, data)
    wall = time.perf_counter() - start

    general = suite.general_domain
    info = {} if data is None else dict(data.info)
    if isinstance(strat, RoundsStrategy):
        info["engine"] = "local" if engine is None else str(
            getattr(engine, "engine_name", getattr(engine, "__name__", type(engine).__name__)))
    report = FeedbackReport(strat.name, {}, general, 0.0, wall, {**info, "replaced_experts": replaced},
                            settings=settings, params=strat.get_params(), rounds=rounds)
    for domain in suite:
        report.domains[domain.name] = DomainFeedback.measure(large, experts.get(domain.name), new,
                                                             domain.X_test, domain.y_test)
    report.forgetting = forgetting(report.domains[general].acc_v0, report.domains[general].acc_v1)
    return new, report


def resolve_settings(large: Any, settings: TrainSettings | None, *, epochs: int | None = None,
                     lr: float | None = None, random_state: int | None = None) -> TrainSettings:
    """``settings`` (default ``TrainSettings.like(large)``) with the shorthands applied."""
    if settings is not None and not isinstance(settings, TrainSettings):
        raise ValidationError(f"settings must be a crossfeed.feedback.TrainSettings; got {type(settings).__name__}")
    base = settings if settings is not None else TrainSettings.like(large)
    changes = {k: v for k, v in {"epochs": epochs, "lr": lr, "seed": random_state}.items() if v is not None}
    return base.replace(**changes) if changes else base


def _train_once(strat: FeedbackStrategy, ctx: FeedbackContext) -> tuple[TrainingData, TorchClassifier]:
    """The single hooked training run: prepare, initial module, hooks, the one loop."""
    large, settings = ctx.large, ctx.settings
    data = strat.prepare(ctx)
    if data is None:
        _, X_gen, y_gen = general_data(ctx.suite)
        data = TrainingData(flat(X_gen), np.asarray(y_gen))
    start_module = strat.initial_module(ctx)
    if start_module is not None:
        _check_finite_module(start_module, f"the {strat.name!r} strategy's initial module")
    if settings.epochs == 0:  # e.g. weight merging without fine-tuning
        return data, fitted_copy(large, copy.deepcopy(start_module if start_module is not None else large.module_))
    hooks = list(strat.hooks(ctx, data))
    y_fit, targets_hook = _targets(large, data, len(hooks))
    if targets_hook is not None:
        hooks.append(targets_hook)
    logger.info("absorb: %s on %d samples, %d hooks", strat.name, len(data.X), len(hooks))
    new = warm_fit(large, data.X, y_fit, module=start_module, hooks=hooks, **settings.fit_params())
    return data, new


def _run_rounds(strat: RoundsStrategy, ctx: FeedbackContext,
                engine: RoundsEngine) -> tuple[TorchClassifier, list[RoundLog]]:
    start_module = strat.initial_module(ctx)
    module, log = engine(strat, ctx, start_module if start_module is not None else ctx.large.module_)
    if not any(not r.kept_previous for r in log):
        logger.warning("absorb: %s: no round produced a usable update; the large model is unchanged", strat.name)
    return fitted_copy(ctx.large, module), log


def _check_finite_module(module: nn.Module, what: str) -> None:
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValidationError(f"{what} has non-finite weights (NaN or inf) in {bad[:3]}; an expert is broken: "
                              "refit it or drop it")


def resolve_strategy(strategy: str | FeedbackStrategy, params: Mapping[str, Any] | None = None) -> FeedbackStrategy:
    """A strategy instance from a name plus parameters (checked against its declaration), or the
    instance itself (its stored parameters checked)."""
    if isinstance(strategy, FeedbackStrategy):
        if params:
            raise ValidationError(
                f"strategy parameters {sorted(params)} are only used with a strategy name; "
                f"set them on the {type(strategy).__name__} instance instead"
            )
        strategy.validate()
        return strategy
    if not isinstance(strategy, str):
        raise ValidationError(
            f"strategy must be a registered name ({', '.join(STRATEGIES.names())}) or a FeedbackStrategy; "
            f"got {type(strategy).__name__}"
        )
    cls = STRATEGIES.get(strategy)
    return cls(**cls.check_params(dict(params or {})))


def _check_experts(large: TorchClassifier, experts: Mapping[str, Any], suite: DomainSuite,
                   strategy: FeedbackStrategy) -> None:
    if not isinstance(suite, DomainSuite):
        raise ValidationError(f"suite must be a crossfeed.data.DomainSuite; got {type(suite).__name__}")
    if not isinstance(experts, Mapping) or not experts:
        raise ValidationError("experts must be a non-empty mapping of domain name -> fitted classifier")
    general_data(suite)  # the general domain must exist (unknown names raise with the list)
    for name, expert in experts.items():
        domain = suite[name]  # unknown domain names raise with the list of domains
        classes = getattr(expert, "classes_", None)
        if classes is None:
            raise ValidationError(f"the expert of domain {name!r} is not fitted (it has no classes_)")
        if not np.array_equal(np.asarray(classes), large.classes_):
            raise LabelMismatchError(
                f"the expert of domain {name!r} predicts classes {np.asarray(classes).tolist()} but the large "
                f"model predicts {large.classes_.tolist()}; experts and the large model must share one label set"
            )
        if strategy.needs_same_architecture:
            _check_same_architecture(large, name, expert, strategy.name)
            _check_finite_module(expert.module_, f"the expert of domain {name!r}")
        if strategy.needs_field_data and (domain.X_field is None or len(domain.X_field) == 0):
            raise EmptyDataError(
                f"domain {name!r} has no field data (X_field), which the {strategy.name!r} strategy learns "
                "from; collect unlabelled field samples for it or drop its expert"
            )


def _replace_weaker(
    large: TorchClassifier, experts: Mapping[str, Any], suite: DomainSuite
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The experts with each one that does not beat ``large`` on its domain's validation split
    replaced by ``large``; and the replaced ones with both validation accuracies."""
    teachers, replaced = {}, {}
    for name, expert in experts.items():
        X_val, y_val = suite[name].X_val, suite[name].y_val
        acc_expert = prediction_accuracy(expert, X_val, y_val)
        acc_large = prediction_accuracy(large, X_val, y_val)
        if acc_expert > acc_large:
            teachers[name] = expert
        else:
            teachers[name] = large
            replaced[name] = {"expert_val_accuracy": acc_expert, "large_val_accuracy": acc_large}
            logger.info("absorb: the %r expert (val %.3f) does not beat the large model (val %.3f); the large model "
                        "teaches its domain instead", name, acc_expert, acc_large)
    return teachers, replaced


def _check_same_architecture(large: TorchClassifier, name: str, expert: Any, strategy: str) -> None:
    """Raise unless ``expert``'s network has exactly the large network's parameter names and shapes."""
    module = getattr(expert, "module_", None)
    if not isinstance(module, nn.Module):
        raise ValidationError(
            f"the {strategy!r} strategy needs experts with the large model's architecture (fitted TorchClassifiers); "
            f"the expert of domain {name!r} is a {type(expert).__name__}"
        )
    ours = {k: tuple(v.shape) for k, v in large.module_.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
        examples = ", ".join(f"{k}: {ours.get(k, 'missing')} vs {theirs.get(k, 'missing')}" for k in differ[:3])
        raise ValidationError(
            f"the {strategy!r} strategy needs experts with the large model's architecture; the expert of domain "
            f"{name!r} differs in {len(differ)} parameter(s) (large vs expert: {examples}). Spawn experts as "
            "fine-tuned copies of the large model (crossfeed.spawn.finetune(large, domain); in a config, "
            "experts.method: finetune) or choose a strategy that "
            "distils (multi_teacher_kd, ensemble_distill)"
        )


def _targets(large: TorchClassifier, data: TrainingData, n_hooks: int) -> tuple[np.ndarray, TrainingHook | None]:
    """Labels for the loop (placeholders on unlabelled rows) and a hook with the target rows, if needed.

    Unlabelled rows need soft targets, or a strategy hook that supplies their loss (e.g. a
    :class:`~crossfeed.spawn.DistillationHook` with ``labelled`` masking them).
    """
    classes = large.classes_
    y = np.asarray(data.y)
    labelled = data.labelled
    unknown = np.setdiff1d(y[labelled], classes)
    if len(unknown):
        raise LabelMismatchError(
            f"feedback data holds labels {unknown.tolist()} that the large model does not predict "
            f"({classes.tolist()})"
        )
    if data.soft_targets is None and data.sample_weight is None:
        if not labelled.all() and n_hooks == 0:
            raise ValidationError(
                f"the strategy prepared {int((~labelled).sum())} unlabelled rows (y = -1) but neither soft "
                "targets nor training hooks for them; give soft_targets or return a hook"
            )
        # Unlabelled rows' labels are never trained on (their hooks mask them); cycling through the
        # classes keeps every class among the labels, which warm starting requires.
        return np.where(labelled, y, np.resize(classes, len(y))), None
    rows = np.zeros((len(y), len(classes)), dtype=np.float32)
    rows[labelled, np.searchsorted(classes, y[labelled])] = 1.0
    if data.soft_targets is not None:
        rows = np.asarray(data.soft_targets, dtype=np.float32)
        if not np.isfinite(rows).all():
            raise ValidationError("the strategy's soft targets are not finite (NaN or inf): a teacher is broken; "
                                  "refit or drop it")
        if rows.shape != (len(y), len(classes)):
            raise LabelMismatchError(
                f"soft_targets must have shape (n_samples, n_classes) = {(len(y), len(classes))}; got {rows.shape}"
            )
    elif not labelled.all():
        raise ValidationError("unlabelled rows (y = -1) with sample weights need soft_targets")
    if data.sample_weight is not None:
        rows = rows * np.asarray(data.sample_weight, dtype=np.float32)[:, None]
    y_fit = np.where(labelled, y, classes[np.argmax(rows, axis=1)])
    return y_fit, SoftTargetsHook(rows)
