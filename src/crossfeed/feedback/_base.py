"""The feedback strategy contract (v2): settings, context, training data, parameters, registry.

A :class:`FeedbackStrategy` is a small class whose hooks do nothing by default and *return*
values. :func:`crossfeed.feedback.absorb` drives it, in one of two ways:

- **one hooked training run** (distillation, EWC, LwF, merging): ``prepare`` -> data,
  ``initial_module`` -> the network to start from, ``hooks`` -> loss terms / targets / a sampler /
  a base loss for the one training loop, then ``remember`` after training;
- **rounds** (:class:`~crossfeed.feedback.RoundsStrategy`: FedAvg, FedProx, Reptile):
  ``local_tasks(round, state)`` -> local training tasks, ``aggregate(round, start, updates,
  failures)`` -> the next global network or None (keep the previous one).

Every hook receives a :class:`FeedbackContext`: the large model, the experts that teach (weaker
ones already replaced), the suite, and the explicit :class:`TrainSettings` of this feedback step.
Each strategy declares its parameters once (``params``, see :mod:`crossfeed.feedback._params`);
configs are checked against the declaration when they load, before any training.

Strategies are found without editing this package: every public module under
``crossfeed/feedback/`` is imported by :func:`discover`, and so is every entry point of the
``crossfeed.feedback`` group of an installed distribution.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import numbers
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import metadata
from typing import Any, ClassVar

import numpy as np
from torch import nn

from crossfeed._registry import Registry
from crossfeed.data import DomainSuite
from crossfeed.exceptions import ValidationError
from crossfeed.feedback._params import Param, check_params
from crossfeed.training import OPTIMIZERS, TrainConfig, TrainingHook

__all__ = [
    "DistillData",
    "FeedbackContext",
    "FeedbackStrategy",
    "STRATEGIES",
    "TrainSettings",
    "TrainingData",
    "discover",
    "register",
]

logger = logging.getLogger(__name__)

#: Unlabelled rows of :class:`TrainingData` carry this label (when no ``labelled_mask`` is given).
UNLABELLED = -1


@dataclass(frozen=True)
class TrainSettings:
    """The training settings of one feedback step, handed explicitly to every hook.

    Nothing is inherited silently: :meth:`like` copies a model's batch size, weight decay,
    optimizer and device when you ask for it (the cycle does, and records the result in the
    report); otherwise the defaults below apply.

    Attributes
    ----------
    epochs : int >= 0; 0 trains nothing (the new model is the strategy's ``initial_module``).
        For a rounds strategy: local epochs per round.
    lr, batch_size, weight_decay, optimizer : of the one training loop (``optimizer`` in
        ``"adamw"``, ``"adam"``, ``"sgd"``).
    seed : seeds the loop's shuffling and any random choice of the strategy.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    threads : int >= 1 or None; torch's intra-op threads while this step trains (None: the
        machine's default, see :func:`crossfeed.training.default_threads`).

    Example
    -------
    >>> TrainSettings(epochs=5, lr=1e-3).replace(seed=3).seed
    3
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, low: int) -> None:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValidationError(f"TrainSettings.{name} must be an integer >= {low}; got {value!r}")

        positive_int("epochs", self.epochs, 0)
        positive_int("batch_size", self.batch_size, 1)
        positive_int("seed", self.seed, 0)
        if self.threads is not None:
            positive_int("threads", self.threads, 1)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0 \
                    or (name == "lr" and value == 0):
                raise ValidationError(
                    f"TrainSettings.{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}; got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValidationError(f"TrainSettings.optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if not isinstance(self.device, str):
            raise ValidationError(f"TrainSettings.device must be a string such as 'cpu' or 'cuda'; got {self.device!r}")

    @classmethod
    def like(cls, model: Any, **overrides: Any) -> TrainSettings:
        """Settings with ``model``'s batch size, weight decay, optimizer and device, then ``overrides``."""
        base = {name: getattr(model, name) for name in ("batch_size", "weight_decay", "optimizer", "device")
                if hasattr(model, name)}
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> TrainSettings:
        """A copy with ``changes`` applied (and checked)."""
        return replace(self, **changes)

    def fit_params(self) -> dict[str, Any]:
        """Keyword arguments of a :class:`~crossfeed.models.TorchClassifier` that train with these settings."""
        return {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size, "weight_decay": self.weight_decay,
                "optimizer": self.optimizer, "random_state": self.seed, "device": self.device, "patience": None,
                "validation_fraction": 0.0, "threads": self.threads}

    def train_config(self, seed_offset: int = 0) -> TrainConfig:
        """The one training loop's :class:`~crossfeed.training.TrainConfig` for these settings (seed shifted by ``seed_offset``)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           optimizer=self.optimizer, device=self.device, seed=self.seed + seed_offset,
                           threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class FeedbackContext:
    """What every hook receives.

    Attributes
    ----------
    large : the fitted large model (generation v0); never modified.
    experts : domain name -> the classifier that teaches that domain. An expert that does not
        beat ``large`` on its domain's validation data has been replaced by ``large`` itself
        (unless the caller kept weaker experts).
    suite : the DomainSuite (labelled splits, unlabelled ``X_field``).
    settings : the :class:`TrainSettings` of this step.
    """

    large: Any
    experts: Mapping[str, Any]
    suite: DomainSuite
    settings: TrainSettings

    @property
    def general(self) -> str:
        """Name of the suite's general domain."""
        return self.suite.general_domain

    @property
    def classes(self) -> np.ndarray:
        """The large model's classes (every expert shares them)."""
        return self.large.classes_


@dataclass
class TrainingData:
    """What the large model trains on during feedback.

    Attributes
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,), labels in the large model's ``classes_``; unlabelled rows
        (which need ``soft_targets`` or a hook that supplies their targets) hold any placeholder
        and are marked by ``labelled_mask`` (or, without a mask, by the label ``-1``).
    soft_targets : array of shape (n_samples, n_classes), optional
        Probability targets (columns in the order of ``classes_``) that replace the hard labels.
    sample_weight : array of shape (n_samples,), optional
    info : dict, what the strategy wants reported (e.g. pseudo-labels kept per domain). Data for
        ``hooks`` travels in typed fields of a subclass (:class:`DistillData`), not here.
    labelled_mask : array of bool of shape (n_samples,), optional; False on unlabelled rows (see
        :func:`with_unlabelled`). Works for any label type, string labels and a real class ``-1`` included.
    """

    X: np.ndarray
    y: np.ndarray
    soft_targets: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    labelled_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.X)
        if n == 0:
            raise ValidationError("feedback training data is empty; the strategy prepared no samples")
        if len(self.y) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but y has {len(self.y)}")
        if self.soft_targets is not None and len(self.soft_targets) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but soft_targets has {len(self.soft_targets)}")
        if self.sample_weight is not None and len(self.sample_weight) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but sample_weight has {len(self.sample_weight)}")
        if self.labelled_mask is not None and len(self.labelled_mask) != n:
            raise ValidationError(f"TrainingData: X has {n} rows but labelled_mask has {len(self.labelled_mask)}")

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of shape (n_samples,): rows with a hard label."""
        if self.labelled_mask is not None:
            return np.asarray(self.labelled_mask, dtype=bool)
        return np.asarray(self.y) != UNLABELLED


def with_unlabelled(y: Any, n_unlabelled: int, placeholder: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``y`` followed by ``n_unlabelled`` unlabelled rows, and the mask of the labelled ones.

    The unlabelled rows hold ``placeholder`` (pass a valid class, e.g. ``large.classes_[0]``): the
    mask, not the value, marks them, so any label type works.

    Example
    -------
    >>> with_unlabelled(np.array(["cat", "dog"]), 2, "cat")
    (array(['cat', 'dog', 'cat', 'cat'], dtype='<U3'), array([ True,  True, False, False]))
    """
    y = np.asarray(y)
    filler = np.full(n_unlabelled, placeholder, dtype=y.dtype if y.size else None)
    return np.concatenate([y, filler]), np.concatenate([np.ones(len(y), bool), np.zeros(n_unlabelled, bool)])


@dataclass
class DistillData(TrainingData):
    """Training data with the teachers' logits of every row: the typed channel from ``prepare``
    to ``hooks`` of the distilling strategies.

    teacher_logits : array of shape (n_samples, n_classes), columns in the order of ``classes_``.
    """

    teacher_logits: np.ndarray = field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        logits = np.asarray(self.teacher_logits, dtype=np.float32)
        if logits.ndim != 2 or len(logits) != len(self.X):
            raise ValidationError(
                f"teacher_logits must have shape (n_samples, n_classes) with n_samples = {len(self.X)}; got {logits.shape}")
        if not np.isfinite(logits).all():
            bad = int((~np.isfinite(logits)).any(axis=1).sum())
            raise ValidationError(
                f"the teachers' logits are not finite on {bad} of {len(logits)} rows (NaN or inf): a teacher is broken "
                "(diverged training, log of a zero probability?); refit or drop that expert")
        self.teacher_logits = logits


class FeedbackStrategy:
    """How the domain experts teach the large model. Every hook does nothing by default.

    The base class itself is the control of every feedback experiment: continued training of the
    large model on the general data, with no help from the experts.

    Hooks (``ctx`` is the :class:`FeedbackContext` of the step)
    ------------------------------------------------------------
    ``prepare(ctx) -> TrainingData | None``
        The data the large model trains on (a :class:`DistillData` carries teacher logits on to
        ``hooks``). None: the general domain's labelled training data, i.e. continued training.
    ``initial_module(ctx) -> nn.Module | None``
        The network training starts from: merged or transplanted weights, an architecture with
        more heads. It must map the large model's inputs to its classes' logits. None: a copy of
        ``ctx.large.module_``.
    ``hooks(ctx, data) -> list[TrainingHook]``
        Extra hooks for the one training loop (:class:`~crossfeed.training.TrainingHook`): loss
        terms, soft targets, extra parameters, a batch sampler, a base loss. Empty: plain
        cross-entropy on ``data``.
    ``remember(ctx, new_large, data) -> None``
        Called after training, with the new model; sequential strategies (continual learning)
        keep what they need of this step for the next one.

    A hook that raises aborts the step: :func:`absorb` returns nothing, the large model and the
    experts are untouched. Hooks must not modify ``ctx.large`` or the experts.

    Declaring a strategy
    --------------------
    ``params`` : dict name -> :class:`~crossfeed.feedback.Param`, one entry per ``__init__``
        argument (checked by :func:`register`); the constructor stores the values unchanged.
    ``needs_field_data`` : every expert's domain must have unlabelled field data.
    ``data_free`` : False when the strategy reads the domains' labels (``joint_training``; the
        federated and meta-learning strategies read them only where the data lives).
    ``needs_same_architecture`` : every expert must be a TorchClassifier with the large model's
        parameter names and shapes (weight merging); a config must spawn ``finetune`` experts.
    ``needs_torch_experts`` : the strategy reads its experts' networks (layers to transplant),
        so experts without one (forests) are refused.
    """

    name: ClassVar[str] = "continued_training"
    params: ClassVar[Mapping[str, Param]] = {}
    needs_field_data: ClassVar[bool] = False
    needs_same_architecture: ClassVar[bool] = False
    needs_torch_experts: ClassVar[bool] = False
    data_free: ClassVar[bool] = True

    def prepare(self, ctx: FeedbackContext) -> TrainingData | None:
        return None

    def initial_module(self, ctx: FeedbackContext) -> nn.Module | None:
        return None

    def hooks(self, ctx: FeedbackContext, data: TrainingData) -> list[TrainingHook]:
        return []

    def remember(self, ctx: FeedbackContext, new_large: Any, data: TrainingData) -> None:
        return None

    # -- parameters -------------------------------------------------------------------------
    @classmethod
    def check_params(cls, values: Mapping[str, Any], *, owner: str | None = None) -> dict[str, Any]:
        """``values`` checked against ``params`` (unknown names get a "did you mean"); normalised copy."""
        return check_params(cls.params, values, owner=owner or f"feedback strategy {cls.name!r}")

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments as stored on the instance."""
        return {name: getattr(self, name) for name in self.params}

    def validate(self) -> None:
        """Check the instance's parameters (what :func:`absorb` does before any work)."""
        self.check_params(self.get_params())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


#: Feedback strategies by name: ``STRATEGIES.get("multi_teacher_kd")(temperature=4.0)``.
STRATEGIES: Registry[type[FeedbackStrategy]] = Registry("feedback strategy")


def register(name: str) -> Callable[[type[FeedbackStrategy]], type[FeedbackStrategy]]:
    """Class decorator: register a :class:`FeedbackStrategy` subclass under ``name`` (also its ``name``).

    The class's ``params`` must declare exactly the arguments of its ``__init__``: the
    declaration is what configs are checked against, so it cannot drift from the constructor.
    """

    def decorator(cls: type[FeedbackStrategy]) -> type[FeedbackStrategy]:
        if not (isinstance(cls, type) and issubclass(cls, FeedbackStrategy)):
            raise TypeError(f"@register({name!r}) decorates FeedbackStrategy subclasses; got {cls!r}")
        _check_declaration(cls, name)
        cls.name = name
        STRATEGIES.add(name, cls)
        return cls

    return decorator


def _check_declaration(cls: type[FeedbackStrategy], name: str) -> None:
    args = [] if cls.__init__ is object.__init__ else list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in args):
        raise TypeError(f"strategy {name!r}: __init__ must list its parameters explicitly (no *args / **kwargs)")
    declared, taken = set(cls.params), {p.name for p in args}
    if declared != taken:
        raise TypeError(
            f"strategy {name!r}: params declares {sorted(declared)} but __init__ takes {sorted(taken)}; "
            "declare every constructor argument once in params"
        )
    for p in args:
        if p.default is not p.empty:
            cls.params[p.name].check(p.name, p.default, f"strategy {name!r} (default of)")


def discover(package: str = "crossfeed.feedback", *, entry_points: bool = True) -> list[str]:
    """Import every public module of ``package`` (and, with ``entry_points``, every entry point of
    the ``crossfeed.feedback`` group), so that their ``@register`` decorators run.

    Returns the names of the modules imported. A strategy is therefore one module: drop it into
    ``crossfeed/feedback/`` (or publish it under the entry point group) and it is found.
    """
    pkg = importlib.import_module(package)
    found = []
    for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
        if not info.name.rpartition(".")[2].startswith("_"):
            importlib.import_module(info.name)
            found.append(info.name)
    if entry_points:
        for ep in metadata.entry_points(group="crossfeed.feedback"):
            try:
                ep.load()
            except Exception as exc:  # a broken plug-in must not break crossfeed
                logger.warning("could not load feedback strategy plug-in %r (%s): %s", ep.name, ep.value, exc)
                continue
            found.append(ep.value)
    return found


def general_data(suite: DomainSuite) -> tuple[str, np.ndarray, np.ndarray]:
    """The general domain's name and its labelled training data ``(name, X, y)``."""
    name = suite.general_domain
    domain = suite[name]
    return name, domain.X_train, domain.y_train


def share_domains(suite: DomainSuite, n_taught: int) -> int:
    """How many domains a share of the training rows is split between: every shifted domain of
    the suite (so a step that absorbs one domain of four gives it a quarter), and at least the
    ``n_taught`` taught in this step."""
    return max(int(n_taught), sum(name != suite.general_domain for name in suite.names))


def flat(X: np.ndarray) -> np.ndarray:
    """Samples flattened to shape (n_samples, n_features), float32."""
    X = np.asarray(X, dtype=np.float32)
    return X.reshape(len(X), int(np.prod(X.shape[1:], dtype=np.int64)))  # -1 cannot size 0 rows


STRATEGIES.add(FeedbackStrategy.name, FeedbackStrategy)
