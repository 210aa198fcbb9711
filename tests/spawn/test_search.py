"""Architecture search with Optuna: spaces, warm start across domains, Pareto fronts, errors.

Tiny on purpose (300 samples per domain, 1-3 epochs, a few trials): the whole file runs in well
under a minute on one core.
"""

from __future__ import annotations

import doctest
import importlib
import logging
import sys

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from crossfeed.data import DomainSuite, load_suite  # noqa: E402
from crossfeed.exceptions import MissingDependencyError, ValidationError  # noqa: E402
from crossfeed.report import pareto_png  # noqa: E402
from crossfeed.spawn import (  # noqa: E402
    ArchitectureSpace,
    SearchResult,
    pareto_front,
    prior_configs,
    search_architecture,
    tpe_search,
    trial_scorer,
    warm_start_configs,
)

#: A small, fast MLP space: 8 configurations.
SPACE = ArchitectureSpace("mlp", categorical={"width": [8, 32, 128, 256]}, int_ranges={"layers": (1, 2)}, epochs=3,
                          lr=1e-2)


@pytest.fixture(scope="module")
def tiny() -> DomainSuite:
    return load_suite("mnist1d", seed=0, n_per_domain=300)


def _trial(number: int, accuracy: float | None, flops: float, **params: object) -> dict:
    return {"number": number, "params": params or {"w": number}, "accuracy": accuracy, "flops_per_sample": flops,
            "n_params": 1, "seconds": 0.0, "enqueued": False}


# -- the space ------------------------------------------------------------------------------
def test_default_spaces_fit_mnist1d() -> None:
    for name, n in (("cnn1d", 108), ("mlp", 36)):
        space = ArchitectureSpace.default(name, epochs=2)
        assert space.architecture == name and space.epochs == 2
        assert space.n_configurations == n == len(list(space.configurations()))
        space.check(40, 10)  # raises if no configuration builds for 40 features


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"architecture": "transformer"}, r"unknown architecture 'transformer' .*expected one of \['cnn1d', 'mlp'\]"),
        ({"architecture": "mlp", "categorical": {"width": []}}, r"categorical\['width'\] is empty; expected"),
        ({"architecture": "mlp", "int_ranges": {"layers": (3, 1)}}, r"low > high \(3 > 1\)"),
        ({"architecture": "mlp", "int_ranges": {"layers": (1.0, 2)}}, r"must hold two integers"),
        ({"architecture": "cnn1d", "categorical": {"width": [8]}}, r"no searchable parameter 'width'; expected"),
        ({"architecture": "mlp", "epochs": 0}, r"epochs must be an integer >= 1"),
    ],
)
def test_bad_space_is_refused_on_creation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ArchitectureSpace(**kwargs)


def test_unknown_default_space() -> None:
    with pytest.raises(ValidationError, match=r"no default space for 'linear'; expected one of"):
        ArchitectureSpace.default("linear")


def test_space_with_no_valid_configuration() -> None:
    # Every depth halves a 3-feature signal too often: 3 blocks need >= 4 features.
    space = ArchitectureSpace("cnn1d", categorical={"channels": [4]}, int_ranges={"blocks": (3, 4)}, epochs=1)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)).astype(np.float32), np.arange(20) % 2
    with pytest.raises(ValidationError, match=r"no valid configuration for input of 3 features \(2 configuration"):
        search_architecture(space, (X, y, X, y), n_trials=1, seed=0)
    with pytest.raises(ValidationError, match="no valid configuration"):
        space.check(3)
    space.check(8)


def test_contains() -> None:
    assert SPACE.contains({"width": 32, "layers": 2})
    assert not SPACE.contains({"width": 33, "layers": 2})
    assert not SPACE.contains({"width": 32, "layers": 3})
    assert not SPACE.contains({"width": 32})
    assert not SPACE.contains({"width": 32, "layers": 1, "dropout": 0.1})


# -- searching ------------------------------------------------------------------------------
def test_search_records_trials(tiny: DomainSuite) -> None:
    result = search_architecture(SPACE, tiny.domains[0], n_trials=3, seed=0)
    assert [t["number"] for t in result.trials] == [0, 1, 2]
    for t in result.trials:
        assert SPACE.contains(t["params"])
        assert 0.0 <= t["accuracy"] <= 1.0 and t["flops_per_sample"] > 0 and t["n_params"] > 0
        assert t["seconds"] > 0 and t["enqueued"] is False
    assert result.best["accuracy"] == max(t["accuracy"] for t in result.trials)
    again = SearchResult.from_dict(result.to_dict())
    assert again.trials == result.trials and again.best == result.best


def test_same_seed_same_trials(tiny: DomainSuite) -> None:
    domain = tiny.domains[1]
    a = search_architecture(SPACE, domain, n_trials=4, seed=3)
    b = search_architecture(SPACE, domain, n_trials=4, seed=3)
    key = [(t["params"], t["accuracy"], t["flops_per_sample"]) for t in a.trials]
    assert key == [(t["params"], t["accuracy"], t["flops_per_sample"]) for t in b.trials]
    c = search_architecture(SPACE, domain, n_trials=4, seed=4)
    assert [t["params"] for t in c.trials] != [t["params"] for t in a.trials]


def test_enqueued_configs_run_first(tiny: DomainSuite, caplog: pytest.LogCaptureFixture) -> None:
    first, second = {"width": 256, "layers": 2}, {"width": 8, "layers": 1}
    outside = {"width": 4096, "layers": 1}
    with caplog.at_level(logging.WARNING, logger="crossfeed.spawn._search"):
        result = search_architecture(SPACE, tiny.domains[0], n_trials=4, seed=0,
                                     warm_start=[first, second, dict(first), outside])
    assert [t["params"] for t in result.trials[:2]] == [first, second]
    assert [t["enqueued"] for t in result.trials] == [True, True, False, False]
    assert "outside the mlp search space" in caplog.text and "4096" in caplog.text
    cold = search_architecture(SPACE, tiny.domains[0], n_trials=2, seed=0)
    assert [t["params"] for t in cold.trials[:2]] != [first, second]  # the warm start changed what ran


def test_warm_start_from_another_domain_reaches_cold_best_sooner(tiny: DomainSuite) -> None:
    """Fails if warm start were a no-op: on these seeds the cold search needs several trials to find
    its best, the warm start from the source domain's best configuration gets there first."""
    source, target = tiny.domains[0], tiny.domains[3]
    src = search_architecture(SPACE, source, n_trials=5, seed=1)
    cold = search_architecture(SPACE, target, n_trials=5, seed=1)
    warm = search_architecture(SPACE, target, n_trials=5, seed=1, warm_start=warm_start_configs([src], k=1))
    best = cold.best["accuracy"]
    assert warm.trials[0]["params"] == src.best["params"] and warm.trials[0]["enqueued"]
    assert warm.trials_to_reach(best) is not None
    assert warm.trials_to_reach(best) < cold.trials_to_reach(best)


def test_a_search_replays_from_a_table_of_its_scores(tiny: DomainSuite) -> None:
    """trial_scorer is what search_architecture trains with: a table of its scores replays the search."""
    domain = tiny.domains[2]
    score = trial_scorer(SPACE, domain, seed=5)
    table = {repr(sorted(p.items())): score(p) for p in SPACE.configurations()}
    real = search_architecture(SPACE, domain, n_trials=5, seed=5)
    replayed = tpe_search(SPACE, lambda p: table[repr(sorted(p.items()))], n_trials=5, seed=5)
    assert [(t["params"], t["accuracy"]) for t in real.trials] == [(t["params"], t["accuracy"]) for t in replayed.trials]


def test_a_repeated_proposal_is_answered_not_retrained() -> None:
    """Fails if a configuration proposed again were scored and counted again: TPE over 8
    configurations proposes repeats long before it has tried all 8."""
    calls: list[dict] = []

    def score(params: dict) -> dict:
        calls.append(dict(params))
        return {"accuracy": params["width"] / 256 + 0.1 * params["layers"]}

    result = tpe_search(SPACE, score, n_trials=8, seed=0)
    keys = [tuple(sorted(t["params"].items())) for t in result.trials]
    assert len(calls) == len(result.trials) == 8 and len(set(keys)) == 8  # every configuration, once each
    assert result.repeats > 0  # the sampler did propose repeats; they cost nothing
    assert SearchResult.from_dict(result.to_dict()).repeats == result.repeats
    more = tpe_search(SPACE, score, n_trials=50, seed=0)  # more trials than configurations: stops at 8
    assert len(more.trials) == 8


def test_a_failing_configuration_counts_once() -> None:
    def score(params: dict) -> dict:
        if params["layers"] == 2:
            raise ValidationError("too deep")
        return {"accuracy": params["width"] / 256}

    result = tpe_search(SPACE, score, n_trials=8, seed=1)
    failed = [t for t in result.trials if t["accuracy"] is None]
    assert len(failed) == 4 and all(t["error"] == "too deep" for t in failed)
    assert len({tuple(sorted(t["params"].items())) for t in result.trials}) == len(result.trials) == 8


def test_prior_weighs_each_source_by_its_own_ranking() -> None:
    """Fails if raw accuracies were pooled: source c reaches 0.99 on its domain with width 8 (the
    only width it tried), a and b (lower accuracies) rank width 256 first; as quantiles within each
    search, width 256 wins, and the prior proposes its untried pairing with 2 layers too."""
    space = ArchitectureSpace("mlp", categorical={"width": [8, 32, 256]}, int_ranges={"layers": (1, 2)})
    a = SearchResult((_trial(0, 0.70, 1, width=256, layers=1), _trial(1, 0.60, 1, width=32, layers=1),
                      _trial(2, 0.50, 1, width=8, layers=1)))
    b = SearchResult((_trial(0, 0.40, 1, width=256, layers=1), _trial(1, 0.35, 1, width=32, layers=2),
                      _trial(2, 0.30, 1, width=8, layers=2)))
    c = SearchResult((_trial(0, 0.99, 1, width=8, layers=1), _trial(1, 0.98, 1, width=8, layers=2)))
    picked = prior_configs([a, b, c], space, n=6)
    assert picked[0]["width"] == 256 and picked[1]["width"] == 256  # the tried (256, 1) and the untried (256, 2)
    assert sorted(p["layers"] for p in picked[:2]) == [1, 2]
    assert picked[-1]["width"] == 8 and len(picked) == 6
    assert prior_configs([a, b, c], space, n=2, seed=3) == prior_configs([a, b, c], space, n=2, seed=3)


def test_prior_bad_input() -> None:
    space = ArchitectureSpace("mlp", categorical={"width": [8, 32]})
    outside = SearchResult((_trial(0, 0.7, 1, width=4096),))
    with pytest.raises(ValidationError, match="no completed trial of the 1 source search"):
        prior_configs([outside], space)
    with pytest.raises(ValidationError, match="no completed trial of the 0 source search"):
        prior_configs([], space)
    with pytest.raises(ValidationError, match="n must be an integer >= 1"):
        prior_configs([outside], space, n=0)


def test_optuna_logging_is_restored(tiny: DomainSuite) -> None:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        search_architecture(SPACE, tiny.domains[0], n_trials=1, seed=0)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(before)


def test_bad_search_input(tiny: DomainSuite) -> None:
    with pytest.raises(ValidationError, match=r"n_trials must be an integer >= 1; got 0"):
        search_architecture(SPACE, tiny.domains[0], n_trials=0, seed=0)
    with pytest.raises(ValidationError, match=r"data must be a Domain or a tuple \(X_train, y_train, X_val, y_val\)"):
        search_architecture(SPACE, (1, 2), n_trials=1, seed=0)
    with pytest.raises(ValidationError, match="space must be an ArchitectureSpace"):
        search_architecture({"architecture": "mlp"}, tiny.domains[0], n_trials=1, seed=0)  # type: ignore[arg-type]


def test_missing_optuna(monkeypatch: pytest.MonkeyPatch, tiny: DomainSuite) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[search\]'"):
        search_architecture(SPACE, tiny.domains[0], n_trials=1, seed=0)


# -- results: pure functions on hand-made trials --------------------------------------------
def test_pareto_front_hand_made() -> None:
    acc = [0.50, 0.90, 0.70, 0.60, 0.90, 0.40, 0.70]
    flops = [10.0, 100.0, 50.0, 60.0, 200.0, 10.0, 50.0]
    # 3 (0.6 @ 60) is dominated by 2 (0.7 @ 50); 4 by 1; 5 by 0; 6 duplicates 2 (first kept).
    assert pareto_front(acc, flops) == [0, 2, 1]
    assert pareto_front([], []) == []
    with pytest.raises(ValidationError, match="differ in length"):
        pareto_front([0.1], [1.0, 2.0])


def test_search_result_pareto_best_and_trials_to_reach() -> None:
    trials = (_trial(0, 0.5, 10), _trial(1, None, 0), _trial(2, 0.8, 40), _trial(3, 0.8, 20), _trial(4, 0.6, 30))
    result = SearchResult(trials)
    assert [t["number"] for t in result.pareto()] == [0, 3]
    assert result.best["number"] == 2  # earliest of the ties
    assert [t["number"] for t in result.ranked()] == [2, 3, 4, 0]
    assert result.trials_to_reach(0.8) == 3 and result.trials_to_reach(0.5) == 1
    assert result.trials_to_reach(0.9) is None
    with pytest.raises(ValidationError, match="no completed trial"):
        _ = SearchResult((_trial(0, None, 0),)).best


def test_warm_start_configs_top_k_dedup_best_first() -> None:
    a = SearchResult((_trial(0, 0.7, 1, w=1), _trial(1, 0.9, 1, w=2), _trial(2, 0.8, 1, w=3)))
    b = SearchResult((_trial(0, 0.95, 1, w=4), _trial(1, 0.6, 1, w=2), _trial(2, 0.5, 1, w=1)))
    # each source's best first (b's 0.95 before a's 0.9), then the second bests; w=2 once
    assert warm_start_configs([a, b], k=2) == [{"w": 4}, {"w": 2}, {"w": 3}]
    assert warm_start_configs([a, b], k=1) == [{"w": 4}, {"w": 2}]
    assert warm_start_configs([]) == []
    with pytest.raises(ValidationError, match="k must be an integer >= 1"):
        warm_start_configs([a], k=0)


def test_pareto_png() -> None:
    cold = SearchResult((_trial(0, 0.5, 1e3), _trial(1, 0.8, 1e4), _trial(2, 0.7, 1e5)))
    warm = SearchResult((_trial(0, 0.85, 2e4),))
    png = pareto_png({"a": cold, "b": {"cold": cold, "warm": warm}})
    assert png[:4] == b"\x89PNG"
    with pytest.raises(ValidationError, match="results_by_domain is empty"):
        pareto_png({})


@pytest.mark.parametrize("module", ["crossfeed.spawn._search", "crossfeed.report._search_report"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
