"""Architecture search of the small models with Optuna, warm-started across domains.

Optuna's TPE sampler (Bergstra et al. 2011, "Algorithms for Hyper-Parameter Optimization",
NeurIPS; Akiba et al. 2019, arXiv 1907.10902) searches an :class:`ArchitectureSpace` for one
domain: every trial trains a :class:`~crossfeed.models.TorchClassifier` on the train split and is
scored by its validation accuracy, with its FLOPs per sample and parameter count recorded beside.
The search for a new domain is warm-started (meta-learning across tasks in the simplest form, as
in Feurer et al. 2015, "Initializing Bayesian Hyperparameter Optimization via Meta-Learning",
AAAI) by enqueuing the best configurations the searches of the other domains found
(:func:`warm_start_configs`): they are evaluated first, then TPE goes on from them.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfeed.data import Domain
from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.models import TorchClassifier, count_params, flops_per_sample

__all__ = ["ArchitectureSpace", "SearchResult", "pareto_front", "search_architecture", "warm_start_configs"]

logger = logging.getLogger(__name__)

Choice = bool | int | float | str | None


def _cnn1d_kwargs(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"size": None, "channels": [int(p.get("channels", 32))] * int(p.get("blocks", 2)),
            "hidden": int(p.get("hidden", 64)), "kernel_size": int(p.get("kernel_size", 5)),
            "dropout": float(p.get("dropout", 0.0))}


def _mlp_kwargs(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"hidden": [int(p.get("width", 128))] * int(p.get("layers", 2)), "dropout": float(p.get("dropout", 0.0))}


#: Searchable architectures: the parameters a space may search and how a trial's values become
#: the architecture's keyword arguments (every block / layer gets the same width).
SEARCHABLE: dict[str, tuple[tuple[str, ...], Any]] = {
    "cnn1d": (("blocks", "channels", "hidden", "kernel_size", "dropout"), _cnn1d_kwargs),
    "mlp": (("layers", "width", "dropout"), _mlp_kwargs),
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    # mnist1d: 40 features, so up to 4 blocks (3 halvings leave 5 positions).
    "cnn1d": {"categorical": {"channels": (8, 16, 32, 64), "hidden": (32, 64, 128), "kernel_size": (3, 5, 7)},
              "int_ranges": {"blocks": (2, 4)}},
    "mlp": {"categorical": {"width": (32, 64, 128, 256), "dropout": (0.0, 0.1, 0.2)},
            "int_ranges": {"layers": (1, 3)}},
}

#: At most this many configurations are built when checking that a space has a valid one.
MAX_CHECKED = 4096


@dataclass(frozen=True)
class ArchitectureSpace:
    """What an architecture search may try: one architecture, the choices of its parameters, and the
    training settings every trial uses.

    Parameters
    ----------
    architecture : a name in ``SEARCHABLE`` ("cnn1d": ``blocks``, ``channels``, ``hidden``,
        ``kernel_size``, ``dropout``; "mlp": ``layers``, ``width``, ``dropout``).
    categorical : parameter -> the values to choose from (numbers, strings, bools).
    int_ranges : parameter -> ``(low, high)``, both included.
    epochs, lr, batch_size : training settings of every trial (no early stopping).

    Parameters left out of both mappings keep the architecture's default. Checked on creation:
    unknown architecture or parameter, empty choices, ``low > high``.

    Example
    -------
    >>> space = ArchitectureSpace("mlp", categorical={"width": [16, 32]}, int_ranges={"layers": (1, 2)}, epochs=2)
    >>> space.n_configurations
    4
    >>> space.module_kwargs({"width": 16, "layers": 2})
    {'hidden': [16, 16], 'dropout': 0.0}
    """

    architecture: str
    categorical: Mapping[str, Sequence[Choice]] = field(default_factory=dict)
    int_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    epochs: int = 15
    lr: float = 3e-3
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.architecture not in SEARCHABLE:
            raise ValidationError(
                f"unknown architecture {self.architecture!r} for a search; expected one of {sorted(SEARCHABLE)}"
            )
        allowed = SEARCHABLE[self.architecture][0]
        categorical = {str(k): tuple(v) for k, v in dict(self.categorical).items()}
        ranges: dict[str, tuple[int, int]] = {}
        for name, bounds in dict(self.int_ranges).items():
            try:
                low, high = bounds
            except (TypeError, ValueError):
                raise ValidationError(f"int_ranges[{name!r}] must be a pair (low, high); got {bounds!r}") from None
            if any(isinstance(b, bool) or not isinstance(b, int | np.integer) for b in (low, high)):
                raise ValidationError(f"int_ranges[{name!r}] must hold two integers; got {bounds!r}")
            if low > high:
                raise ValidationError(
                    f"int_ranges[{name!r}] has low > high ({low} > {high}); expected low <= high, e.g. ({high}, {low})"
                )
            ranges[str(name)] = (int(low), int(high))
        for name, values in categorical.items():
            if not values:
                raise ValidationError(
                    f"categorical[{name!r}] is empty; expected at least one value to choose from"
                )
            if len(set(values)) != len(values):
                raise ValidationError(f"categorical[{name!r}] repeats a value: {list(values)}")
        for name in [*categorical, *ranges]:
            if name not in allowed:
                raise ValidationError(
                    f"{self.architecture} has no searchable parameter {name!r}; expected some of {list(allowed)}"
                )
        both = set(categorical) & set(ranges)
        if both:
            raise ValidationError(f"parameters {sorted(both)} are both categorical and int ranges; give each once")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValidationError(f"epochs must be an integer >= 1; got {self.epochs!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValidationError(f"lr must be a positive number; got {self.lr!r}")
        object.__setattr__(self, "categorical", categorical)
        object.__setattr__(self, "int_ranges", ranges)

    @classmethod
    def default(cls, architecture: str, **settings: Any) -> ArchitectureSpace:
        """The preset space of ``architecture`` for short signals such as mnist1d (40 features):

        - "cnn1d": 2-4 blocks of 8/16/32/64 channels, kernel 3/5/7, hidden 32/64/128 (108 configurations);
        - "mlp": 1-3 layers of width 32-256, dropout 0/0.1/0.2 (36 configurations).

        ``settings`` (``epochs``, ``lr``, ``batch_size``) override the training settings.
        """
        if architecture not in _DEFAULTS:
            raise ValidationError(f"no default space for {architecture!r}; expected one of {sorted(_DEFAULTS)}")
        unknown = sorted(set(settings) - {"epochs", "lr", "batch_size"})
        if unknown:
            raise ValidationError(f"unknown training settings {unknown}; expected some of ['batch_size', 'epochs', 'lr']")
        return cls(architecture, **_DEFAULTS[architecture], **settings)

    # -- the configurations ---------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The searched parameters, sorted."""
        return sorted([*self.categorical, *self.int_ranges])

    @property
    def n_configurations(self) -> int:
        sizes = [len(v) for v in self.categorical.values()] + [h - lo + 1 for lo, h in self.int_ranges.values()]
        return int(np.prod(sizes)) if sizes else 1

    def configurations(self) -> Iterator[dict[str, Any]]:
        """Every configuration of the space (parameter -> value), in a fixed order."""
        names = self.names
        values = [self.categorical[n] if n in self.categorical else range(self.int_ranges[n][0],
                                                                          self.int_ranges[n][1] + 1) for n in names]
        for combo in itertools.product(*values):
            yield dict(zip(names, combo))

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` names exactly the searched parameters, each with a value the space allows."""
        if sorted(params) != self.names:
            return False
        for name, value in params.items():
            if name in self.categorical:
                if not any(value == c and isinstance(value, bool) == isinstance(c, bool)
                           for c in self.categorical[name]):
                    return False
            else:
                low, high = self.int_ranges[name]
                if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
                    return False
        return True

    def module_kwargs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The architecture's keyword arguments for one configuration."""
        return SEARCHABLE[self.architecture][1](params)

    def estimator(self, params: Mapping[str, Any], *, random_state: int | None = None) -> TorchClassifier:
        """An unfitted classifier of one configuration with the space's training settings."""
        return TorchClassifier(self.architecture, module_kwargs=self.module_kwargs(params), epochs=self.epochs,
                               lr=self.lr, batch_size=self.batch_size, random_state=random_state)

    def check(self, n_features: int, n_classes: int = 2) -> None:
        """Raise ``ValidationError`` if no configuration builds a module for ``n_features`` inputs.

        Builds configurations in order until one works (at most ``MAX_CHECKED``).
        """
        from crossfeed.models import build_module

        errors: list[str] = []
        for params in itertools.islice(self.configurations(), MAX_CHECKED):
            try:
                build_module(self.architecture, n_features, n_classes, **self.module_kwargs(params))
                return
            except ValidationError as exc:
                errors.append(str(exc))
        raise ValidationError(
            f"the {self.architecture} search space has no valid configuration for input of {n_features} features "
            f"({len(errors)} configuration(s) tried), e.g. {errors[0] if errors else 'none'}. Narrow the deep end "
            "of the space (fewer blocks / layers) or use longer inputs"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "categorical": {k: list(v) for k, v in self.categorical.items()},
                "int_ranges": {k: list(v) for k, v in self.int_ranges.items()}, "epochs": self.epochs,
                "lr": self.lr, "batch_size": self.batch_size}


def pareto_front(accuracy: Sequence[float], flops: Sequence[float]) -> list[int]:
    """Positions of the non-dominated points (accuracy high, FLOPs low), by FLOPs ascending.

    A point is dominated when another is at least as accurate and at most as costly, and strictly
    better in one of the two; of exact duplicates the first is kept.

    Example
    -------
    >>> pareto_front([0.5, 0.9, 0.7, 0.6], [10, 100, 50, 60])
    [0, 2, 1]
    """
    acc, cost = np.asarray(accuracy, dtype=float), np.asarray(flops, dtype=float)
    if acc.shape != cost.shape:
        raise ValidationError(f"accuracy and flops differ in length: {acc.shape} and {cost.shape}")
    order = sorted(range(len(acc)), key=lambda i: (cost[i], -acc[i], i))
    front, best = [], -math.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return front


@dataclass(frozen=True)
class SearchResult:
    """The trials of one architecture search.

    Attributes
    ----------
    trials : plain dicts in trial order: ``number``, ``params``, ``accuracy`` (validation; None
        for a configuration that failed to build or train, with its ``error``), ``flops_per_sample``,
        ``n_params``, ``seconds``, ``enqueued`` (a warm-start configuration).
    space : the searched space (:meth:`ArchitectureSpace.to_dict`), seed : the sampler's and the models' seed.
    """

    trials: tuple[dict[str, Any], ...]
    space: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("accuracy") is not None]

    @property
    def best(self) -> dict[str, Any]:
        """The most accurate trial (the earliest of ties)."""
        done = self.completed
        if not done:
            raise ValidationError("the search has no completed trial; every configuration failed")
        return max(done, key=lambda t: (t["accuracy"], -t["number"]))

    def ranked(self) -> list[dict[str, Any]]:
        """Completed trials, most accurate first (earlier first among ties)."""
        return sorted(self.completed, key=lambda t: (-t["accuracy"], t["number"]))

    def trials_to_reach(self, accuracy: float) -> int | None:
        """How many trials ran until the first whose accuracy is >= ``accuracy`` (1 = the first
        trial), or None if none reached it. Failed trials count: they were spent."""
        for k, t in enumerate(self.trials, start=1):
            if t.get("accuracy") is not None and t["accuracy"] >= accuracy - 1e-12:
                return k
        return None

    def pareto(self) -> list[dict[str, Any]]:
        """The non-dominated completed trials (accuracy high, FLOPs low), by FLOPs ascending."""
        done = self.completed
        return [done[i] for i in pareto_front([t["accuracy"] for t in done], [t["flops_per_sample"] for t in done])]

    def to_dict(self) -> dict[str, Any]:
        best = self.best if self.completed else None
        return {"seed": self.seed, "space": self.space, "trials": [dict(t) for t in self.trials], "best": best,
                "pareto": [t["number"] for t in self.pareto()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchResult:
        return cls(trials=tuple(dict(t) for t in data["trials"]), space=dict(data.get("space", {})),
                   seed=data.get("seed"))


def _config_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def warm_start_configs(results: Sequence[SearchResult], k: int = 3) -> list[dict[str, Any]]:
    """The top-``k`` configurations of each source search, deduplicated, best first.

    Ordered by rank, then accuracy: every source's best configuration comes before any source's
    second best, so a short budget still tries each source's winner.

    Example
    -------
    >>> a = SearchResult(({"number": 0, "params": {"w": 1}, "accuracy": 0.9},
    ...                   {"number": 1, "params": {"w": 2}, "accuracy": 0.8}))
    >>> b = SearchResult(({"number": 0, "params": {"w": 2}, "accuracy": 0.7},))
    >>> warm_start_configs([a, b], k=2)
    [{'w': 1}, {'w': 2}]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValidationError(f"k must be an integer >= 1; got {k!r}")
    ranked = [(rank, -t["accuracy"], src, t["params"]) for src, r in enumerate(results)
              for rank, t in enumerate(r.ranked()[:k])]
    seen: set[tuple] = set()
    configs = []
    for *_, params in sorted(ranked, key=lambda x: x[:3]):
        key = _config_key(params)
        if key not in seen:
            seen.add(key)
            configs.append(dict(params))
    return configs


@contextmanager
def _quiet_optuna(optuna: Any, verbosity: int) -> Iterator[None]:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(verbosity)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _split_data(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(data, Domain):
        return data.X_train, data.y_train, data.X_val, data.y_val
    try:
        X_train, y_train, X_val, y_val = data
    except (TypeError, ValueError):
        raise ValidationError(
            f"data must be a Domain or a tuple (X_train, y_train, X_val, y_val); got {type(data).__name__}"
        ) from None
    return X_train, y_train, X_val, y_val


def search_architecture(
    space: ArchitectureSpace,
    data: Domain | tuple[Any, Any, Any, Any],
    *,
    n_trials: int,
    seed: int,
    warm_start: Sequence[Mapping[str, Any]] = (),
    timeout: float | None = None,
    optuna_verbosity: int = logging.WARNING,
) -> SearchResult:
    """Search ``space`` on one domain with Optuna's seeded TPE sampler.

    Parameters
    ----------
    space : the architectures to try and the training settings.
    data : a :class:`~crossfeed.data.Domain` (its train and val splits) or ``(X_train, y_train,
        X_val, y_val)``, X of shape (n_samples, n_features).
    n_trials : trials to run, the warm-start ones included.
    seed : seeds the sampler and every trial's model (``random_state``), so one seed gives the same trials.
    warm_start : configurations to evaluate first (e.g. :func:`warm_start_configs` of other
        domains' searches); duplicates are dropped, and configurations outside ``space`` are skipped
        with a logged warning.
    timeout : stop starting trials after this many seconds.
    optuna_verbosity : Optuna's log level during the search (restored after).

    Returns
    -------
    SearchResult : every trial with its validation accuracy, FLOPs per sample and parameter count.

    Example
    -------
    >>> from crossfeed.data import load_suite
    >>> domain = load_suite("mnist1d", seed=0, n_per_domain=200).domains[0]
    >>> space = ArchitectureSpace("mlp", categorical={"width": [16, 32]}, epochs=1)
    >>> result = search_architecture(space, domain, n_trials=2, seed=0, warm_start=[{"width": 32}])
    >>> result.trials[0]["params"], result.trials[0]["enqueued"]
    ({'width': 32}, True)
    """
    try:
        import optuna
    except ImportError:
        raise missing_dependency("optuna", "search") from None
    if not isinstance(space, ArchitectureSpace):
        raise ValidationError(f"space must be an ArchitectureSpace; got {type(space).__name__}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValidationError(f"n_trials must be an integer >= 1; got {n_trials!r}")
    X_train, y_train, X_val, y_val = _split_data(data)
    X_train, X_val = np.asarray(X_train), np.asarray(X_val)
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    n_features = int(np.prod(X_train.shape[1:]))
    space.check(n_features, max(2, len(np.unique(y_train))))

    queue, seen = [], set()
    for params in warm_start:
        params = dict(params)
        key = _config_key(params)
        if key in seen:
            continue
        seen.add(key)
        if not space.contains(params):
            logger.warning("warm-start configuration %s is outside the %s search space %s; skipped", params,
                           space.architecture, space.to_dict())
            continue
        queue.append(params)

    records: dict[int, dict[str, Any]] = {}

    def objective(trial: Any) -> float:
        params: dict[str, Any] = {}
        for name in space.names:
            if name in space.categorical:
                params[name] = trial.suggest_categorical(name, list(space.categorical[name]))
            else:
                params[name] = trial.suggest_int(name, *space.int_ranges[name])
        record: dict[str, Any] = {"number": trial.number, "params": params, "accuracy": None,
                                  "flops_per_sample": None, "n_params": None, "seconds": 0.0,
                                  "enqueued": bool(trial.user_attrs.get("enqueued", False))}
        records[trial.number] = record
        start = time.perf_counter()
        try:
            model = space.estimator(params, random_state=seed).fit(X_train, y_train)
        except ValidationError as exc:  # e.g. too deep for the input length
            record["error"], record["seconds"] = str(exc), time.perf_counter() - start
            raise
        accuracy = float(np.mean(model.predict(X_val) == y_val))
        record["seconds"] = time.perf_counter() - start
        record["accuracy"] = accuracy
        record["flops_per_sample"] = flops_per_sample(model, X_val[:1])
        record["n_params"] = count_params(model)
        trial.set_user_attr("flops_per_sample", record["flops_per_sample"])
        trial.set_user_attr("n_params", record["n_params"])
        return accuracy

    with _quiet_optuna(optuna, optuna_verbosity):
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        for params in queue:
            study.enqueue_trial(params, user_attrs={"enqueued": True})
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValidationError,))
    trials = tuple(records[n] for n in sorted(records))
    return SearchResult(trials=trials, space=space.to_dict(), seed=seed)
