"""``absorb``: the feedback step of the cycle. Domain experts teach a copy of the large model.

Reads like the algorithm: validate, let the strategy prepare data and hooks, warm-start a copy of
the large model through the one training loop, then measure every domain before and after.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed.data import DomainSuite
from crossfeed.exceptions import EmptyDataError, LabelMismatchError, ValidationError
from crossfeed.feedback._base import (
    STRATEGIES,
    FeedbackStrategy,
    TrainingData,
    flat,
    general_data,
)
from crossfeed.models import TorchClassifier, check_torch_model, fitted_copy, warm_fit
from crossfeed.training import Batch, TrainingHook

__all__ = ["DomainFeedback", "FeedbackReport", "absorb"]

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
    info : what the strategy reported (e.g. pseudo-labels kept per domain).
    """

    strategy: str
    domains: dict[str, DomainFeedback]
    general_domain: str
    forgetting: float
    wall_seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def mean(self, which: str, domains: Sequence[str] | None = None) -> float:
        """Mean of ``"acc_v0"``, ``"acc_v1"`` or ``"acc_expert"`` over ``domains`` (default: all shifted ones)."""
        names = list(domains) if domains is not None else [n for n in self.domains if n != self.general_domain]
        values = [getattr(self.domains[n], which) for n in names]
        return float(np.mean([v for v in values if v is not None]))


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
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    random_state: int = 0,
    keep_weaker_experts: bool = False,
    **strategy_kwargs: Any,
) -> tuple[TorchClassifier, FeedbackReport]:
    """Let domain ``experts`` teach a copy of ``large``; return the new model and a report.

    ``large`` is never modified: a copy of its weights keeps training (warm start) through the one
    training loop on the data the strategy prepares, with the strategy's hooks.

    Parameters
    ----------
    large : fitted TorchClassifier, the current large model (generation v0).
    experts : mapping domain name -> fitted classifier of that domain (same classes as ``large``).
    suite : DomainSuite holding the domains named in ``experts`` and ``suite.meta["general_domain"]``.
    strategy : a registered name (see ``STRATEGIES.names()``) or a :class:`FeedbackStrategy`.
    epochs, lr, random_state : training settings of the feedback run; ``epochs=0`` trains nothing
        (the new model is the strategy's ``initial_module``, e.g. merged weights).
    keep_weaker_experts : bool, default False. An expert that is not more accurate than ``large``
        on its own domain's validation split has nothing to teach there: by default the strategy
        gets ``large`` itself in its place (so that domain's field data anchors the old behaviour
        instead of pulling it down); ``report.info["replaced_experts"]`` lists them with both
        validation accuracies. True hands every expert to the strategy as it is.
    **strategy_kwargs : passed to the strategy's constructor (only with a name).

    Returns
    -------
    (new_large, FeedbackReport)

    Example
    -------
    >>> from crossfeed.data import load_suite                                   # doctest: +SKIP
    >>> new, report = absorb(large, experts, suite, "multi_teacher_kd", epochs=5)  # doctest: +SKIP
    >>> report.forgetting < 0.05                                                # doctest: +SKIP
    """
    large = check_torch_model(large, owner="absorb")
    strat = resolve_strategy(strategy, strategy_kwargs)
    _check_experts(large, experts, suite, strat)
    general, _, _ = general_data(suite)

    start = time.perf_counter()
    teachers, replaced = (dict(experts), {}) if keep_weaker_experts else _replace_weaker(large, experts, suite)
    data = strat.prepare(large, teachers, suite)
    if data is None:
        _, X_gen, y_gen = general_data(suite)
        data = TrainingData(flat(X_gen), np.asarray(y_gen))
    start_module = strat.initial_module(large, teachers, suite)
    if epochs == 0:  # e.g. weight merging without fine-tuning
        new = fitted_copy(large, copy.deepcopy(start_module if start_module is not None else large.module_))
    else:
        hooks = list(strat.hooks(large, teachers, suite, data))
        y_fit, targets_hook = _targets(large, data, len(hooks))
        if targets_hook is not None:
            hooks.append(targets_hook)
        logger.info("absorb: %s on %d samples, %d hooks", strat.name, len(data.X), len(hooks))
        new = warm_fit(large, data.X, y_fit, module=start_module, hooks=hooks, epochs=epochs, lr=lr,
                       random_state=random_state, patience=None, validation_fraction=0.0)
    strat.remember(new, teachers, suite, data)
    wall = time.perf_counter() - start

    # Keys starting with "_" carry data from ``prepare`` to ``hooks`` (e.g. teacher logits): not reported.
    info = {k: v for k, v in data.info.items() if not k.startswith("_")}
    report = FeedbackReport(strat.name, {}, general, 0.0, wall, {**info, "replaced_experts": replaced})
    for domain in suite:
        X_test, y_test = domain.X_test, domain.y_test
        acc_v0 = float(np.mean(large.predict(X_test) == y_test))
        acc_v1 = float(np.mean(new.predict(X_test) == y_test))
        expert = experts.get(domain.name)
        acc_e = None if expert is None else float(np.mean(expert.predict(X_test) == y_test))
        absorption = None if acc_e is None or acc_e <= acc_v0 else (acc_v1 - acc_v0) / (acc_e - acc_v0)
        report.domains[domain.name] = DomainFeedback(acc_v0, acc_e, acc_v1, absorption)
    report.forgetting = report.domains[general].acc_v0 - report.domains[general].acc_v1
    return new, report


def resolve_strategy(strategy: str | FeedbackStrategy, kwargs: dict[str, Any]) -> FeedbackStrategy:
    if isinstance(strategy, FeedbackStrategy):
        if kwargs:
            raise ValidationError(
                f"strategy keyword arguments {sorted(kwargs)} are only used with a strategy name; "
                f"set them on the {type(strategy).__name__} instance instead"
            )
        return strategy
    if not isinstance(strategy, str):
        raise ValidationError(
            f"strategy must be a registered name ({', '.join(STRATEGIES.names())}) or a FeedbackStrategy; "
            f"got {type(strategy).__name__}"
        )
    try:
        return STRATEGIES.get(strategy)(**kwargs)
    except TypeError as exc:
        raise ValidationError(f"bad keyword arguments for feedback strategy {strategy!r}: {exc}") from exc


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
        acc_expert = float(np.mean(expert.predict(X_val) == y_val))
        acc_large = float(np.mean(large.predict(X_val) == y_val))
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
        return np.where(labelled, y, classes[0]), None
    rows = np.zeros((len(y), len(classes)), dtype=np.float32)
    rows[labelled, np.searchsorted(classes, y[labelled])] = 1.0
    if data.soft_targets is not None:
        rows = np.asarray(data.soft_targets, dtype=np.float32)
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
