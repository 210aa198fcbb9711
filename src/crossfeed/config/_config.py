"""Experiments as data: a YAML file <-> typed, frozen dataclasses.

A config names every component by its registry name plus keyword arguments::

    name: demo
    seeds: [0]
    suite: {name: mnist1d, kwargs: {n_per_domain: 4000}}
    large: {module: cnn1d, module_kwargs: {size: large}, epochs: 20}
    experts: {student: "cnn1d:tiny", epochs: 15, finetune_epochs: 10}
    feedback:
      strategy: multi_teacher_kd
      kwargs: {temperature: 2.0}
      compare: [{strategy: data_feedback}]
    generations: 2

:func:`load_config` parses it: an unknown key, a value of the wrong type or an unknown registry
name is a :class:`~crossfeed.exceptions.ValidationError` (or ``UnknownNameError``) that names the
key's path and the closest valid choice. :func:`config_to_dict` / :func:`config_from_dict`
round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crossfeed._cache import atomic_write_bytes
from crossfeed.data import SUITES, check_suite_kwargs
from crossfeed.distill import check_mixup
from crossfeed.exceptions import UnknownNameError, ValidationError, missing_dependency
from crossfeed.feedback import STRATEGIES, FedAvg, RoundsStrategy
from crossfeed.models import ARCHITECTURES

__all__ = [
    "ExperimentConfig",
    "ExpertsConfig",
    "FeedbackConfig",
    "FieldConfig",
    "GATE_TESTS",
    "GateConfig",
    "LargeConfig",
    "StrategyConfig",
    "SuiteConfig",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]


@dataclass(frozen=True)
class SuiteConfig:
    """Which suite: ``load_suite(name, seed=seed, **kwargs)``."""

    name: str = "mnist1d"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LargeConfig:
    """The large model of generation 0: a ``TorchClassifier`` over a registered architecture.

    ``train_on`` is ``"general"`` (the suite's general domain only: the shifted domains are the
    experts' ground) or ``"pooled"`` (every domain's training data).
    """

    module: str = "cnn1d"
    module_kwargs: dict[str, Any] = field(default_factory=lambda: {"size": "large", "dropout": 0.2})
    epochs: int = 20
    lr: float = 2e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    patience: int | None = 4
    optimizer: str = "adamw"
    train_on: str = "general"


@dataclass(frozen=True)
class SearchConfig:
    """The architecture search of ``experts.method: search`` (:func:`crossfeed.spawn.search_architecture`).

    Every generation searches each expert domain's architecture with Optuna's seeded TPE sampler
    (``trials`` trials, each trained ``epochs`` epochs on the domain's training split and scored on
    its validation split), the domains one after another, each search warm-started with the
    ``warm_start`` best configurations of the domains searched before it
    (:func:`crossfeed.spawn.warm_start_configs`; 0: cold starts), or with ``prior`` > 0 the
    ``prior`` configurations a surrogate fitted on all of those searches' trials rates best
    (:func:`crossfeed.spawn.prior_configs`, the meta-learned prior). The best configuration is the
    student the large model is then distilled into, as ``experts.method: distill`` does.
    ``categorical`` / ``int_ranges``: the space (see :class:`crossfeed.spawn.ArchitectureSpace`);
    both empty: the architecture's preset space (``ArchitectureSpace.default``).
    """

    architecture: str = "cnn1d"
    trials: int = 10
    warm_start: int = 3
    prior: int = 0
    categorical: dict[str, Any] = field(default_factory=dict)
    int_ranges: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    lr: float = 3e-3
    batch_size: int = 128

    def space(self) -> Any:
        """The :class:`crossfeed.spawn.ArchitectureSpace` searched."""
        from crossfeed.spawn import ArchitectureSpace

        settings = {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size}
        if not self.categorical and not self.int_ranges:
            return ArchitectureSpace.default(self.architecture, **settings)
        return ArchitectureSpace(self.architecture, categorical=self.categorical,
                                 int_ranges={k: tuple(v) for k, v in self.int_ranges.items()}, **settings)


@dataclass(frozen=True)
class ExpertsConfig:
    """How each generation spawns its domain experts.

    ``method``: ``"distill"`` (a small ``student`` distilled from the large model on the pooled
    labelled data and the domain's field data, then fine-tuned on the domain:
    :func:`crossfeed.spawn.spawn_experts`) or ``"finetune"`` (a fine-tuned copy of the large
    model, same architecture: what weight merging needs; ``student`` and ``epochs`` are unused).
    ``domains``: the expert domains (default: every domain but the general one).
    ``"search"``: as ``distill``, into a student whose architecture is searched per domain and
    generation (``search``: :class:`SearchConfig`; ``student`` is unused); the trials land in the
    lineage and the report plots each domain's accuracy-cost Pareto front.
    ``"forest"``: each domain's expert is a meta decision forest (:class:`crossfeed.models.MetaForest`,
    keyword arguments in ``forest``) grown on the other domains' labelled training data, its
    leaf refit and fresh-tree mixture meta-learnt across them, then adapted to the domain's own
    training rows; it does not start from the large model, and teaches it through its
    probabilities (distilling strategies such as ``multi_teacher_kd``).
    ``mixup`` (``distill`` and ``search``): extra mixup rows of the pooled training and the
    domain's field inputs that the large model labels for each student's distillation
    (:class:`crossfeed.spawn.Distiller`'s ``mixup``; 0: the field data alone).
    """

    method: str = "distill"
    student: str = "cnn1d:tiny"
    epochs: int = 15
    finetune_epochs: int = 10
    temperature: float = 4.0
    alpha: float = 0.9
    mixup: int = 0
    freeze: str = "none"
    domains: list[str] | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    forest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategyConfig:
    """A feedback strategy by registry name plus its keyword arguments."""

    strategy: str = "multi_teacher_kd"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackConfig:
    """The feedback step of every generation.

    ``strategy``/``kwargs`` produce the next large model; each ``compare`` strategy runs from the
    same large model and experts and is reported beside it (absorption per domain), but does not
    go on. ``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``optimizer``, ``threads``: the
    :class:`~crossfeed.feedback.TrainSettings` of the step; ``batch_size``, ``weight_decay`` and
    ``optimizer`` left null take the large model's values (``large.*``), and the report records the
    settings used. ``kwargs`` are the strategy's own parameters, checked against its declaration
    when the config loads. Which model goes on and which one serves each domain is the
    top-level ``gate`` section (:class:`GateConfig`). ``keep_weaker_experts``: see
    :func:`crossfeed.feedback.absorb`.

    ``engine``: where the rounds of a rounds strategy (``fedavg``, ``fedprox``, ``dp_fedavg``,
    ``feddf``) run: ``"local"`` (default, in this process) or ``"flower"`` (every domain a Flower
    ClientApp holding its own rows, in Flower's Simulation Runtime:
    :func:`crossfeed.federated.flower_rounds`; needs ``crossfeed[federated]``). Same seed, same
    model to float tolerance; the report adds the engine to the rounds, bytes and seconds per
    round. ``compare`` strategies always run locally.
    """

    strategy: str = "multi_teacher_kd"
    kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int | None = None
    weight_decay: float | None = None
    optimizer: str | None = None
    threads: int | None = None
    compare: list[StrategyConfig] = field(default_factory=list)
    keep_weaker_experts: bool = False
    engine: str = "local"


#: Where the feedback step's rounds run (see :class:`FeedbackConfig`).
FEEDBACK_ENGINES = ("local", "flower")

#: The gate's tests by name: two paired statistical tests, the round-1 rule, and no gate at all.
GATE_TESTS = ("bootstrap", "wsr", "tolerance", "none")


@dataclass(frozen=True)
class GateConfig:
    """Which models each generation keeps, and which one answers each domain.

    After the feedback step each domain has candidates: the new large model and the domain's new
    expert. A candidate replaces the model that serves a domain only when it is better there on
    the gate's held-out data *and* a paired non-inferiority test
    (:func:`crossfeed.evaluate.noninferiority`) certifies it is not worse by more than ``margin``,
    with every test of the generation (domains x candidates) corrected together (``correction``)
    so that the chance that any switch is worse by more than ``margin`` is at most
    ``1 - confidence``. With ``route`` the served system answers each domain with its own model
    (a domain router); without it, every domain is answered by the large model that goes on.

    ``test``: ``"bootstrap"`` (paired bootstrap), ``"wsr"`` (betting test, valid at every sample
    size, more conservative), ``"tolerance"`` (round 1: a candidate passes when its point
    accuracy is at most ``margin`` below; no statistics) or ``"none"`` (every candidate passes).
    ``holdout``: share of each domain's validation split held out for the gate only (training and
    early stopping never see it); 0 gates on the validation data the models were tuned on.
    ``advance``: which large model the next generation starts from: ``"mean"`` (the new one, unless
    its mean gate accuracy over domains is below the previous one's) or ``"all"`` (round 1: the
    new one only if it passes the test against the previous large model on every domain).

    Round 1's gate is ``{test: tolerance, margin: 0.02, holdout: 0, route: false, advance: all}``
    (what ``feedback.gate: true`` and ``feedback.tolerance`` meant).

    ``compose``: 0 (default) or k >= 1: every generation also composes the large model that goes
    on and each domain's served model into one mixture of experts with a learned top-k gate
    (:func:`crossfeed.combine.compose_experts`; trained on the gate's held-out data and on each
    domain's field data routed to that domain's model) and measures it on every domain
    (``accuracy["composed"]``). It needs torch models (``TorchClassifier``) everywhere.
    ``compose_method``: ``"gated"`` (default, the mixture above) or ``"wemoe"``: the generation's
    fine-tuned experts merged into the large model they were fine-tuned from as a
    weight-ensembling MoE (Tang et al. 2024, :func:`crossfeed.combine.weight_ensemble`: per-sample
    routers over the task vectors, trained on the gate's held-out rows); needs ``experts.method:
    finetune``, and ``compose`` only switches it on (its k is unused).
    """

    test: str = "bootstrap"
    margin: float = 0.01
    confidence: float = 0.9
    correction: str = "holm"
    route: bool = True
    holdout: float = 0.5
    advance: str = "mean"
    resamples: int = 2000
    compose: int = 0
    compose_method: str = "gated"


@dataclass(frozen=True)
class FieldConfig:
    """Where each generation's field data comes from.

    ``source: suite`` (default): the suite's field split, cut into ``generations`` equal batches;
    generation ``g`` holds the first ``g``. ``source: folder``: ``path/gen-<g>/<domain>.npz`` files
    (arrays ``X`` and optionally ``y``, read without pickle), one batch per domain per generation;
    generation ``g`` holds the batches of generations ``1..g``. A domain joins the cycle with its
    first batch (its expert is spawned then) and must deliver a batch (possibly empty) every
    generation after that.
    """

    source: str = "suite"
    path: str | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a suite, a large model, its experts and the feedback cycle, over seeds."""

    name: str = "experiment"
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "cpu"
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    large: LargeConfig = field(default_factory=LargeConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    field_data: FieldConfig = field(default_factory=FieldConfig)
    generations: int = 2

    def __post_init__(self) -> None:
        _check_values(self)


def load_config(path: str | Path) -> ExperimentConfig | Any:
    """Read a YAML experiment config; every mistake is an error naming the key and the fix.

    A config with ``kind: rl`` is an RL experiment (:class:`~crossfeed.config.RLExperimentConfig`).

    Example
    -------
    >>> cfg = config_from_dict({"name": "t", "feedback": {"strategy": "data_feedback"}})
    >>> cfg.feedback.strategy, cfg.generations
    ('data_feedback', 2)
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"config file {str(path)!r} does not exist; pass the path of a YAML file (see examples/)")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if isinstance(data, dict) and data.get("kind") == "rl":
        from crossfeed.config._rl import rl_config_from_dict

        return rl_config_from_dict(data, source=str(path))
    return config_from_dict(data, source=str(path))


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML (atomically); :func:`load_config` reads back an equal config."""
    path = Path(path)
    atomic_write_bytes(path, yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())
    return path


def config_diff(old: Any, new: Any) -> list[str]:
    """The dotted key paths whose values differ between two configs (dataclasses or plain dicts).

    Example
    -------
    >>> config_diff(config_from_dict({"generations": 2}), config_from_dict({"generations": 3}))
    ['generations']
    """
    a = config_to_dict(old) if dataclasses.is_dataclass(old) else old
    b = config_to_dict(new) if dataclasses.is_dataclass(new) else new
    out: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(x.keys() | y.keys(), key=str):
                walk(x.get(key), y.get(key), f"{where}.{key}" if where else str(key))
        elif x != y:
            out.append(where or "<root>")

    walk(a, b, "")
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dicts and lists (YAML- and JSON-ready) of a config dataclass."""
    return dataclasses.asdict(config)


def config_from_dict(data: Any, *, source: str = "config") -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from plain data, checking keys, types and registry names."""
    config = _build(ExperimentConfig, _legacy_gate(data, source), source)
    _check_names(config, source)
    return config


# --- parsing -------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently, so a typo'd duplicate would quietly win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice (first on line {seen[key] + 1}); remove one of them",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: expected a mapping of {cls.__name__} keys; got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValidationError(f"{where}: unknown key {key!r}{hint} Valid keys: {', '.join(names)}")
        values[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ValidationError(f"{where}: expected a list; got {type(value).__name__} {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValidationError(f"{where}: expected a mapping with string keys; got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{where}: expected true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where}: expected an integer; got {value!r}")
        return value
    if tp is float:
        return _as_float(value, where)
    if tp is str:
        if not isinstance(value, str):
            raise ValidationError(f"{where}: expected a string; got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in the dataclasses, not the config


def _as_float(value: Any, where: str) -> float:
    # YAML 1.1 reads 3e-3 (no dot) as a string: accept numeric strings.
    if isinstance(value, bool):
        raise ValidationError(f"{where}: expected a number; got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: expected a number; got {value!r}") from None
    if not math.isfinite(out):
        raise ValidationError(f"{where}: expected a finite number; got {value!r}")
    return out


def _check_values(config: ExperimentConfig) -> None:
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValidationError(f"seeds must be a non-empty list of distinct integers; got {config.seeds}")
    if config.generations < 1:
        raise ValidationError(f"generations must be at least 1; got {config.generations}")
    if config.experts.method not in ("distill", "finetune", "search", "forest"):
        raise ValidationError(f"experts.method must be 'distill', 'finetune', 'search' or 'forest'; got "
                              f"{config.experts.method!r}")
    if config.experts.method == "search":
        _check_search(config.experts.search)
    if config.experts.method == "forest":
        _check_forest(config)
    if config.gate.compose and config.gate.compose_method == "wemoe" and config.experts.method != "finetune":
        raise ValidationError(f"gate.compose_method wemoe merges fine-tuned copies of the large model (task vectors); "
                              f"experts.method is {config.experts.method!r}. Set experts.method: finetune, or "
                              "compose_method: gated")
    if config.large.optimizer not in ("adamw", "adam", "sgd"):
        raise ValidationError(f"large.optimizer must be 'adamw', 'adam' or 'sgd'; got {config.large.optimizer!r}")
    if config.large.train_on not in ("general", "pooled"):
        raise ValidationError(f"large.train_on must be 'general' or 'pooled'; got {config.large.train_on!r}")
    check_mixup(config.experts.mixup, name="experts.mixup")
    if config.experts.mixup and config.experts.method not in ("distill", "search"):
        raise ValidationError(f"experts.mixup adds rows to a distillation; experts.method {config.experts.method!r} "
                              "distils nothing. Set experts.mixup: 0, or experts.method: distill or search")
    if config.large.epochs < 1 or config.experts.epochs < 1:
        raise ValidationError(
            f"large.epochs and experts.epochs must be at least 1; got {config.large.epochs} and {config.experts.epochs}"
        )
    if config.feedback.epochs < 0:
        raise ValidationError(f"feedback.epochs must be >= 0 (0: no training, e.g. merging); got {config.feedback.epochs}")
    names = [config.feedback.strategy, *(c.strategy for c in config.feedback.compare)]
    if len(set(names)) != len(names):
        raise ValidationError(
            f"feedback.strategy and feedback.compare must name different strategies (results are keyed by name); "
            f"got {names}. Compare other settings of one strategy in separate configs"
        )
    _check_gate(config.gate)
    if config.field_data.source not in ("suite", "folder"):
        raise ValidationError(f"field_data.source must be 'suite' or 'folder'; got {config.field_data.source!r}")
    if (config.field_data.source == "folder") != (config.field_data.path is not None):
        raise ValidationError(
            f"field_data.path is the folder of field_data.source: folder (and only of it); got source {config.field_data.source!r} "
            f"and path {config.field_data.path!r}"
        )
    f = config.feedback
    if f.optimizer is not None and f.optimizer not in ("adamw", "adam", "sgd"):
        raise ValidationError(f"feedback.optimizer must be 'adamw', 'adam', 'sgd' or null; got {f.optimizer!r}")
    if f.batch_size is not None and f.batch_size < 1:
        raise ValidationError(f"feedback.batch_size must be >= 1 or null; got {f.batch_size}")
    if f.weight_decay is not None and f.weight_decay < 0:
        raise ValidationError(f"feedback.weight_decay must be >= 0 or null; got {f.weight_decay}")
    if f.threads is not None and f.threads < 1:
        raise ValidationError(f"feedback.threads must be >= 1 or null; got {f.threads}")
    if f.engine not in FEEDBACK_ENGINES:
        raise ValidationError(f"feedback.engine must be one of {', '.join(FEEDBACK_ENGINES)}; got {f.engine!r}")


def _check_forest(config: ExperimentConfig) -> None:
    from crossfeed.models import MetaForest

    kwargs = config.experts.forest
    known = sorted(set(MetaForest().get_params()) - {"random_state"})
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValidationError(f"experts.forest: unknown MetaForest parameters {unknown}; expected some of {known} "
                              "(random_state comes from the run's seed)")
    try:
        forest = MetaForest(**kwargs)
        forest._check_params()
        forest._forest(1, 0)._validate_params()  # scikit-learn's own checks (max_features, min_samples_leaf)
    except (ValidationError, TypeError, ValueError) as exc:
        raise ValidationError(f"experts.forest: {exc}") from None
    if config.gate.compose:
        raise ValidationError("gate.compose mixes torch networks; forest experts (experts.method: forest) cannot be "
                              "composed: set gate.compose: 0 or use experts.method: distill")
    if config.feedback.kwargs.get("client_models") == "experts":
        raise ValidationError("feedback.kwargs.client_models 'experts' trains each client on its expert's network; "
                              "forest experts (experts.method: forest) have none: use client_models: large")
    for name in [config.feedback.strategy, *(c.strategy for c in config.feedback.compare)]:
        if STRATEGIES.get(name).needs_torch_experts:
            raise ValidationError(f"feedback strategy {name!r} reads its experts' networks; forest experts "
                                  "(experts.method: forest) have none: choose a distilling strategy "
                                  "(multi_teacher_kd, ensemble_distill) or another experts.method")


def _check_search(c: SearchConfig) -> None:
    if c.trials < 1:
        raise ValidationError(f"experts.search.trials must be >= 1; got {c.trials}")
    if c.warm_start < 0:
        raise ValidationError(f"experts.search.warm_start must be >= 0 (0: cold starts); got {c.warm_start}")
    if c.prior < 0:
        raise ValidationError(f"experts.search.prior must be >= 0 (0: each searched domain's warm_start best "
                              f"configurations; n: the n the surrogate rates best); got {c.prior}")
    for name, bounds in c.int_ranges.items():
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ValidationError(f"experts.search.int_ranges.{name} must be [low, high]; got {bounds!r}")
    try:
        c.space()
    except (ValidationError, TypeError, ValueError) as exc:
        raise ValidationError(f"experts.search: {exc}") from None
    if importlib.util.find_spec("optuna") is None:
        raise missing_dependency("optuna", "search")


def _check_gate(g: GateConfig) -> None:
    if g.test not in GATE_TESTS:
        raise ValidationError(f"gate.test must be one of {', '.join(GATE_TESTS)}; got {g.test!r}")
    if g.correction not in ("holm", "bonferroni", "none"):
        raise ValidationError(f"gate.correction must be 'holm', 'bonferroni' or 'none'; got {g.correction!r}")
    if g.advance not in ("mean", "all"):
        raise ValidationError(f"gate.advance must be 'mean' or 'all'; got {g.advance!r}")
    if not 0.0 <= g.margin < 1.0:
        raise ValidationError(f"gate.margin must be in [0, 1) (a fraction: 0.01 = one point); got {g.margin}")
    if not 0.0 < g.confidence < 1.0:
        raise ValidationError(f"gate.confidence must be strictly between 0 and 1 (e.g. 0.9); got {g.confidence}")
    if not 0.0 <= g.holdout < 1.0:
        raise ValidationError(f"gate.holdout must be in [0, 1) (share of each validation split); got {g.holdout}")
    if g.compose_method not in ("gated", "wemoe"):
        raise ValidationError(f"gate.compose_method must be 'gated' or 'wemoe'; got {g.compose_method!r}")
    if isinstance(g.compose, bool) or not isinstance(g.compose, int) or g.compose < 0:
        raise ValidationError(
            f"gate.compose must be 0 (off) or the top-k of the composed mixture (1, 2, ...); got {g.compose!r}")
    if g.resamples < 100:
        raise ValidationError(f"gate.resamples must be at least 100; got {g.resamples}")
    if g.test in ("bootstrap", "wsr") and g.holdout == 0.0:
        raise ValidationError(
            f"gate.test {g.test!r} certifies on held-out data, but gate.holdout is 0 (the models were tuned on the "
            "whole validation split); set gate.holdout > 0 (default 0.5), or use test: tolerance to gate on "
            "validation accuracy without a guarantee"
        )


def _check_flower(f: FeedbackConfig, source: str) -> None:
    """``engine: flower`` runs the client step of the weight-sending rounds strategies only."""
    cls = STRATEGIES.get(f.strategy)
    kwargs = cls.check_params(f.kwargs, owner=f"{source}: feedback.kwargs (strategy {f.strategy!r})")
    if not issubclass(cls, FedAvg):
        raise ValidationError(
            f"{source}: feedback.engine flower runs the rounds of fedavg, fedprox, dp_fedavg and feddf (clients that "
            f"train the large model's network on their own rows); {f.strategy!r} "
            + ("has no rounds" if not issubclass(cls, RoundsStrategy) else "keeps a network per client or builds its "
               "tasks from the clients' rows on the server") + ". Use engine: local")
    if kwargs.get("client_models", "large") != "large":
        raise ValidationError(f"{source}: feedback.engine flower trains the large model's architecture on every client; "
                              f"feedback.kwargs.client_models {kwargs['client_models']!r} needs engine: local")
    for module in ("flwr", "ray"):
        if importlib.util.find_spec(module) is None:
            raise missing_dependency(module, "federated")


def _legacy_gate(data: Any, source: str) -> Any:
    """Round 1 configs said ``feedback.gate`` / ``feedback.tolerance``; translate them to the ``gate`` section."""
    if not isinstance(data, dict) or not isinstance(data.get("feedback"), dict):
        return data
    feedback = dict(data["feedback"])
    legacy = {k: feedback.pop(k) for k in ("gate", "tolerance") if k in feedback}
    if not legacy:
        return data
    if "gate" in data:
        raise ValidationError(
            f"{source}: feedback.{'/'.join(legacy)} (round 1) and the gate section cannot both be given; "
            "move the settings into gate (see GateConfig)"
        )
    if not isinstance(legacy.get("gate", True), bool):
        raise ValidationError(f"{source}.feedback.gate: expected true or false; got {legacy['gate']!r}")
    if legacy.get("gate", True) is False:
        gate: dict[str, Any] = {"test": "none", "route": False, "holdout": 0.0, "advance": "all"}
    else:
        gate = {"test": "tolerance", "margin": legacy.get("tolerance", 0.02), "route": False, "holdout": 0.0,
                "advance": "all"}
    return {**data, "feedback": feedback, "gate": gate}


def _check_names(config: ExperimentConfig, source: str) -> None:
    """Registry names must exist; the error suggests the closest."""
    checks = [
        (SUITES, config.suite.name, "suite.name"),
        (ARCHITECTURES, config.large.module, "large.module"),
        (ARCHITECTURES, config.experts.student.partition(":")[0], "experts.student"),
        (STRATEGIES, config.feedback.strategy, "feedback.strategy"),
        *((STRATEGIES, c.strategy, f"feedback.compare[{i}].strategy") for i, c in enumerate(config.feedback.compare)),
    ]
    for registry, name, where in checks:
        try:
            registry.get(name)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{source}: {where}: {exc.args[0]}") from None
    try:
        check_suite_kwargs(config.suite.name, config.suite.kwargs)
    except ValidationError as exc:
        raise ValidationError(f"{source}: suite.kwargs: {exc}") from None
    strategies = [(config.feedback.strategy, config.feedback.kwargs, "feedback"),
                  *((c.strategy, c.kwargs, f"feedback.compare[{i}]") for i, c in enumerate(config.feedback.compare))]
    if config.feedback.engine == "flower":
        _check_flower(config.feedback, source)
    for name, kwargs, where in strategies:
        cls = STRATEGIES.get(name)
        cls.check_params(kwargs, owner=f"{source}: {where}.kwargs (strategy {name!r})")
        # cross-field rules: what the strategy needs of the rest of the config
        if cls.needs_same_architecture and config.experts.method != "finetune":
            raise ValidationError(
                f"{source}: {where}.strategy {name!r} merges weights, so its experts must share the large model's "
                f"architecture; experts.method is {config.experts.method!r}. Set experts.method: finetune, or choose a "
                "distilling strategy (multi_teacher_kd, ensemble_distill)"
            )
