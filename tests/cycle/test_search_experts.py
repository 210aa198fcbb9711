"""``experts.method: search``: the cycle searches each expert's architecture (Optuna, warm-started from
the domains searched before) and distils the large model into the best configuration."""

import json

import pytest

pytest.importorskip("optuna")

from crossfeed.config import SearchConfig  # noqa: E402
from crossfeed.cycle._cycle import run_fingerprint  # noqa: E402
from crossfeed.exceptions import ValidationError  # noqa: E402
from crossfeed.experiments import config_from_dict, run_experiment  # noqa: E402
from crossfeed.models import load_model  # noqa: E402
from crossfeed.spawn import SearchResult, prior_configs  # noqa: E402

SPACE = {"architecture": "mlp", "categorical": {"width": [8, 64]}, "int_ranges": {"layers": [1, 2]},
         "trials": 3, "warm_start": 1, "epochs": 3, "lr": 0.01}
TINY = {
    "name": "search",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 300, "domains": ["default", "noisy", "shifted"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "small"}, "epochs": 4, "lr": 0.005, "patience": None},
    "experts": {"method": "search", "epochs": 2, "finetune_epochs": 1, "search": SPACE},
    "feedback": {"strategy": "multi_teacher_kd", "epochs": 1},
    "generations": 1,
}


def test_each_expert_has_its_searched_architecture_and_the_report_shows_the_search(tmp_path):
    result = run_experiment(config_from_dict(TINY), tmp_path)
    lineage = json.loads((tmp_path / "results.json").read_text())["seeds"][0]["generations"][1]["lineage"]
    searched = lineage["experts"]["search"]
    assert list(searched) == ["noisy", "shifted"]
    space = SearchConfig(**{k: v for k, v in SPACE.items()}).space()
    for i, (domain, record) in enumerate(searched.items()):
        assert len(record["trials"]) == SPACE["trials"]
        best = max(record["trials"], key=lambda t: (t["accuracy"], -t["number"]))
        assert record["best"] == best["params"] and record["val_accuracy"] == best["accuracy"]
        # the served expert is an MLP of the searched configuration, not the default student (cnn1d:tiny)
        expert = load_model(tmp_path / "seed-0" / "gen-001" / "experts" / domain)
        assert expert.module == "mlp" and expert.module_kwargs == space.module_kwargs(record["best"])
        # the second domain starts from the first one's best configuration
        assert record["warm_start"] == ([] if i == 0 else [searched["noisy"]["best"]])
        assert record["trials"][0]["enqueued"] == (i > 0)
    assert result.cycles[0].generations[1].accuracy["expert:noisy"]
    report = (tmp_path / "report.md").read_text()
    assert "Architecture search of the experts" in report and "cold start" in report
    assert (tmp_path / "search_seed0_g1.png").read_bytes()[:4] == b"\x89PNG"


def test_search_settings_are_checked_when_the_config_loads_and_stay_out_of_other_runs_fingerprints():
    def with_search(**changes):
        return {**TINY, "experts": {**TINY["experts"], "search": {**SPACE, **changes}}}

    with pytest.raises(ValidationError, match="trials must be >= 1"):
        config_from_dict(with_search(trials=0))
    with pytest.raises(ValidationError, match="experts.search.prior must be >= 0"):
        config_from_dict(with_search(prior=-1))
    with pytest.raises(ValidationError, match="no searchable parameter 'depth'"):
        config_from_dict(with_search(categorical={"depth": [1, 2]}))
    with pytest.raises(ValidationError, match="int_ranges.layers must be \\[low, high\\]"):
        config_from_dict(with_search(int_ranges={"layers": 3}))
    with pytest.raises(ValidationError, match="experts.search: "):
        config_from_dict(with_search(categorical={"width": 5}))
    with pytest.raises(ValidationError, match="low > high"):
        config_from_dict(with_search(int_ranges={"layers": [3, 1]}))
    distill = {**TINY, "experts": {"method": "distill", "epochs": 2}}
    assert "search" not in run_fingerprint(config_from_dict(distill), 0)["config"]["experts"]
    assert run_fingerprint(config_from_dict(TINY), 0)["config"]["experts"]["search"]["trials"] == 3


def test_prior_warm_starts_the_next_domain_from_the_surrogate(tmp_path):
    """``prior: 2``: the second domain's search starts from the two configurations the surrogate
    fitted on the first domain's trials rates best (fails if the prior were ignored: top-1 would
    enqueue one configuration)."""
    config = {**TINY, "experts": {**TINY["experts"], "search": {**SPACE, "prior": 2}}}
    run_experiment(config_from_dict(config), tmp_path)
    searched = json.loads((tmp_path / "results.json").read_text())["seeds"][0]["generations"][1]["lineage"][
        "experts"]["search"]
    space = SearchConfig(**SPACE).space()
    first = SearchResult(tuple(searched["noisy"]["trials"]))
    assert searched["noisy"]["warm_start"] == []
    assert searched["shifted"]["warm_start"] == prior_configs([first], space, n=2, seed=0 + 1)
    assert [t["enqueued"] for t in searched["shifted"]["trials"][:2]] == [True, True]
