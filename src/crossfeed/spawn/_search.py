"""Architecture search of the small models with Optuna, warm-started across domains.

Optuna's TPE sampler (Bergstra et al. 2011, "Algorithms for Hyper-Parameter Optimization",
NeurIPS; Akiba et al. 2019, arXiv 1907.10902) searches an :class:`ArchitectureSpace` for one
domain: every trial trains a :class:`~crossfeed.models.TorchClassifier` on the train split and is
scored by its validation accuracy, with its FLOPs per sample and parameter count recorded beside.
The search for a new domain is warm-started (meta-learning across tasks in the simplest form, as
in Feurer et al. 2015, "Initializing Bayesian Hyperparameter Optimization via Meta-Learning",
AAAI) by enqueuing the best configurations the searches of the other domains found
(:func:`warm_start_configs`), or the configurations a surrogate fitted on all of their trials rates
best (:func:`prior_configs`, a meta-learned prior): they are evaluated first, then TPE goes on from
them. A trial is one distinct configuration: a configuration the sampler proposes again is answered
from its first trial (:func:`tpe_search`). :func:`trial_scorer` is the scoring alone, so a table of
its scores replays a search without training (``benchmarks/nas_tabular.py``).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfeed.data import Domain
from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.models import TorchClassifier, count_params, flops_per_sample

__all__ = ["ArchitectureSpace", "SearchResult", "pareto_front", "prior_configs", "search_architecture", "tpe_search",
           "trial_scorer", "warm_start_configs"]

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
#: A search stops after this many proposals of configurations it had already tried (see :func:`tpe_search`).
MAX_REPEATS = 200


def _same_choice(value: Any, choice: Choice) -> bool:
    """``value`` is ``choice`` (``True`` is not the choice ``1``, nor ``1`` the choice ``True``)."""
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)


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
                if not any(_same_choice(value, c) for c in self.categorical[name]):
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
    repeats : proposals of configurations already tried, answered without a new trial.
    """

    trials: tuple[dict[str, Any], ...]
    space: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    repeats: int = 0

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
                "pareto": [t["number"] for t in self.pareto()], "repeats": self.repeats}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchResult:
        return cls(trials=tuple(dict(t) for t in data["trials"]), space=dict(data.get("space", {})),
                   seed=data.get("seed"), repeats=int(data.get("repeats", 0)))


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


def prior_configs(results: Sequence[SearchResult], space: ArchitectureSpace, n: int = 5, *,
                  seed: int = 0) -> list[dict[str, Any]]:
    """The ``n`` configurations of ``space`` that a surrogate fitted on other searches rates best.

    A meta-learned prior for a new domain's search, in the quantile-pooling spirit of Salinas et
    al. 2020 ("A Quantile-based Approach for Hyperparameter Transfer Learning", ICML): every
    completed trial of every source search is one example, its configuration encoded one column per
    parameter (numbers as they are, other choices one-hot) and its target the trial's accuracy as a
    quantile within its own search (0 its worst, 1 its best), so domains that reach different
    accuracies weigh alike. A seeded random forest (scikit-learn) fitted on the pooled examples
    rates every configuration of ``space`` (a random ``MAX_RATED`` of them when the space is
    larger), those no source tried included; the ``n`` best rated come back, best first. Unlike
    :func:`warm_start_configs` it can propose a configuration no source ran, and it weighs what the
    sources agree on over one source's single winner.

    Example
    -------
    >>> space = ArchitectureSpace("mlp", categorical={"width": [16, 32, 64]}, int_ranges={"layers": (1, 2)})
    >>> a = SearchResult(tuple({"number": i, "params": p, "accuracy": acc} for i, (p, acc) in enumerate([
    ...     ({"width": 64, "layers": 2}, 0.9), ({"width": 16, "layers": 1}, 0.6), ({"width": 32, "layers": 2}, 0.8)])))
    >>> prior_configs([a], space, n=2)[0]
    {'layers': 2, 'width': 64}
    """
    from scipy.stats import rankdata
    from sklearn.ensemble import RandomForestRegressor

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"n must be an integer >= 1; got {n!r}")
    if not isinstance(space, ArchitectureSpace):
        raise ValidationError(f"space must be an ArchitectureSpace; got {type(space).__name__}")
    rows, targets = [], []
    for result in results:
        done = [t for t in result.completed if space.contains(t["params"])]
        if not done:
            continue
        ranks = rankdata([t["accuracy"] for t in done], method="average")
        quantiles = (ranks - 1) / (len(done) - 1) if len(done) > 1 else np.full(1, 0.5)
        rows += [t["params"] for t in done]
        targets += list(quantiles)
    if not rows:
        raise ValidationError(
            f"no completed trial of the {len(results)} source search(es) lies in the {space.architecture} space "
            f"{space.to_dict()}; pass searches of the same space with at least one completed trial"
        )
    rng = np.random.default_rng(seed)
    if space.n_configurations <= MAX_RATED:
        candidates = list(space.configurations())
    else:
        candidates = [_random_config(space, rng) for _ in range(MAX_RATED)]
    forest = RandomForestRegressor(n_estimators=200, random_state=seed)
    forest.fit(_encode(space, rows), np.asarray(targets))
    rated = forest.predict(_encode(space, candidates))
    order = sorted(range(len(candidates)), key=lambda i: (-rated[i], i))
    picked, seen = [], set()
    for i in order:
        key = _config_key(candidates[i])
        if key not in seen:
            seen.add(key)
            picked.append(dict(candidates[i]))
        if len(picked) == n:
            break
    return picked


#: :func:`prior_configs` rates at most this many configurations of a space (a random sample of larger ones).
MAX_RATED = 20000


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _encode(space: ArchitectureSpace, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """One row per configuration: a column per numeric parameter, a one-hot block per other one."""
    columns: list[np.ndarray] = []
    for name in space.names:
        values = [c[name] for c in configs]
        choices = space.categorical.get(name)
        if choices is None or all(_is_number(v) for v in choices):
            columns.append(np.asarray(values, dtype=float)[:, None])
        else:
            columns.append(np.asarray([[_same_choice(v, c) for c in choices] for v in values], dtype=float))
    return np.hstack(columns)


def _random_config(space: ArchitectureSpace, rng: np.random.Generator) -> dict[str, Any]:
    return {name: (space.categorical[name][int(rng.integers(len(space.categorical[name])))]
                   if name in space.categorical else int(rng.integers(space.int_ranges[name][0],
                                                                      space.int_ranges[name][1] + 1)))
            for name in space.names}


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


def trial_scorer(space: ArchitectureSpace, data: Domain | tuple[Any, Any, Any, Any], *,
                 seed: int) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """How :func:`search_architecture` scores one configuration: train it on ``data``'s train split
    (``random_state=seed``) and measure its validation accuracy, FLOPs per sample and parameter count.

    Returns a function ``params -> {"accuracy", "flops_per_sample", "n_params"}`` that raises
    ``ValidationError`` for a configuration that does not build (e.g. too deep for the input).
    Scoring every configuration of a space with it gives a lookup table that :func:`tpe_search`
    can replay exactly (a tabular benchmark, as NAS-Bench-101 does for cells).
    """
    X_train, y_train, X_val, y_val = _split_data(data)
    X_train, X_val = np.asarray(X_train), np.asarray(X_val)
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)

    def score(params: Mapping[str, Any]) -> dict[str, Any]:
        model = space.estimator(params, random_state=seed).fit(X_train, y_train)
        return {"accuracy": float(np.mean(model.predict(X_val) == y_val)),
                "flops_per_sample": flops_per_sample(model, X_val[:1]), "n_params": count_params(model)}

    return score


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
    n_trials : distinct configurations to train, the warm-start ones included (a configuration
        the sampler proposes again is answered from the first trial, not retrained; see
        :func:`tpe_search`).
    seed : seeds the sampler and every trial's model (``random_state``), so one seed gives the same trials.
    warm_start : configurations to evaluate first (e.g. :func:`warm_start_configs` or
        :func:`prior_configs` of other domains' searches); duplicates are dropped, and
        configurations outside ``space`` are skipped with a logged warning.
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
    if not isinstance(space, ArchitectureSpace):
        raise ValidationError(f"space must be an ArchitectureSpace; got {type(space).__name__}")
    X_train, y_train, X_val, y_val = _split_data(data)
    space.check(int(np.prod(np.asarray(X_train).shape[1:])), max(2, len(np.unique(np.asarray(y_train)))))
    return tpe_search(space, trial_scorer(space, (X_train, y_train, X_val, y_val), seed=seed), n_trials=n_trials,
                      seed=seed, warm_start=warm_start, timeout=timeout, optuna_verbosity=optuna_verbosity)


def tpe_search(
    space: ArchitectureSpace,
    score: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    *,
    n_trials: int,
    seed: int,
    warm_start: Sequence[Mapping[str, Any]] = (),
    timeout: float | None = None,
    optuna_verbosity: int = logging.WARNING,
) -> SearchResult:
    """Optuna's seeded TPE sampler over ``space``, each configuration scored by ``score``.

    ``score(params)`` returns at least ``accuracy`` (maximised; ``flops_per_sample`` and
    ``n_params`` are recorded when given) and may raise ``ValidationError`` for a configuration that
    cannot be built (a failed trial: it counts, it was spent). :func:`search_architecture` passes
    :func:`trial_scorer`; a lookup table of scores replays the same search without training.

    A trial is one distinct configuration. TPE over categorical choices proposes a configuration it
    has already tried now and then; such a proposal is answered from the first trial (so the
    sampler still learns from it), is not scored again and is not counted. The search ends after
    ``n_trials`` distinct configurations, when the space has no untried one left, or after
    ``n_trials + MAX_REPEATS`` proposals, whichever comes first. ``SearchResult.repeats`` counts the
    answered proposals.
    """
    try:
        import optuna
    except ImportError:
        raise missing_dependency("optuna", "search") from None
    if not isinstance(space, ArchitectureSpace):
        raise ValidationError(f"space must be an ArchitectureSpace; got {type(space).__name__}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValidationError(f"n_trials must be an integer >= 1; got {n_trials!r}")
    wanted = min(n_trials, space.n_configurations)

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

    records: list[dict[str, Any]] = []
    by_key: dict[tuple, dict[str, Any]] = {}
    repeats = 0

    def objective(trial: Any) -> float:
        nonlocal repeats
        params: dict[str, Any] = {}
        for name in space.names:
            if name in space.categorical:
                params[name] = trial.suggest_categorical(name, list(space.categorical[name]))
            else:
                params[name] = trial.suggest_int(name, *space.int_ranges[name])
        key = _config_key(params)
        if key in by_key:  # answered from the first trial of this configuration
            repeats += 1
            first = by_key[key]
            if first["accuracy"] is None:
                raise ValidationError(first["error"])
            return first["accuracy"]
        record: dict[str, Any] = {"number": len(records), "params": params, "accuracy": None,
                                  "flops_per_sample": None, "n_params": None, "seconds": 0.0,
                                  "enqueued": bool(trial.user_attrs.get("enqueued", False))}
        records.append(record)
        by_key[key] = record
        start = time.perf_counter()
        try:
            scored = score(params)
        except ValidationError as exc:  # e.g. too deep for the input length
            record["error"], record["seconds"] = str(exc), time.perf_counter() - start
            raise
        record["seconds"] = time.perf_counter() - start
        record["accuracy"] = float(scored["accuracy"])
        record["flops_per_sample"] = scored.get("flops_per_sample")
        record["n_params"] = scored.get("n_params")
        return record["accuracy"]

    def enough(study: Any, trial: Any) -> None:
        if len(records) >= wanted:
            study.stop()

    with _quiet_optuna(optuna, optuna_verbosity):
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        for params in queue:
            study.enqueue_trial(params, user_attrs={"enqueued": True})
        study.optimize(objective, n_trials=wanted + MAX_REPEATS, timeout=timeout, catch=(ValidationError,),
                       callbacks=[enough])
    return SearchResult(trials=tuple(records), space=space.to_dict(), seed=seed, repeats=repeats)
