"""Shared setup of the feedback tests: small fixed-seed mnist1d, trained once per package.

v0 is a cnn1d "small" trained only on the general ("default") domain; each shifted domain has a
cnn1d "tiny" expert trained on its own domain. The control is continued training of v0 on the
general data (the base :class:`FeedbackStrategy`), with the same epochs and learning rate.
"""

from __future__ import annotations

import pytest

from crossfeed.data import DomainSuite, load_suite
from crossfeed.feedback import FeedbackContext, FeedbackReport, FeedbackStrategy, TrainSettings, absorb
from crossfeed.models import TorchClassifier
from crossfeed.spawn import finetune

ABSORB = {"epochs": 20, "lr": 1e-3, "random_state": 0}


def context(large, experts, suite, **settings):
    """The FeedbackContext a strategy's hooks receive inside absorb (for calling hooks directly)."""
    return FeedbackContext(large, experts, suite, TrainSettings(**settings))


def run_tiny_cycle(strategy: str, kwargs: dict, folder) -> dict:
    """One generation of the cycle with ``strategy`` on a 2-domain, 200-sample mnist1d; its results.json."""
    import json

    from crossfeed.config import config_from_dict
    from crossfeed.experiments import run_experiment

    cfg = config_from_dict({
        "name": f"tiny-{strategy}", "seeds": [0],
        "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 200, "domains": ["default", "noisy"]}},
        "large": {"module": "cnn1d", "module_kwargs": {"size": "tiny"}, "epochs": 3, "lr": 0.005, "patience": None},
        "experts": {"student": "cnn1d:tiny", "epochs": 2, "finetune_epochs": 2},
        "feedback": {"strategy": strategy, "kwargs": kwargs, "epochs": 2},
        "generations": 1,
    })
    result = run_experiment(cfg, folder)
    assert len(result.cycles) == 1
    return json.loads((folder / "results.json").read_text())


@pytest.fixture(scope="package")
def suite() -> DomainSuite:
    """2000 samples per domain: train 1000, test 500, field 250 per domain."""
    return load_suite("mnist1d", seed=0, n_per_domain=2000)


@pytest.fixture(scope="package")
def v0(suite: DomainSuite) -> TorchClassifier:
    general = suite[suite.meta["general_domain"]]
    return TorchClassifier("cnn1d", module_kwargs={"size": "small"}, epochs=30, lr=3e-3, random_state=0).fit(
        general.X_train, general.y_train
    )


@pytest.fixture(scope="package")
def experts(suite: DomainSuite) -> dict[str, TorchClassifier]:
    return {
        d.name: TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=30, lr=3e-3, random_state=1).fit(
            d.X_train, d.y_train
        )
        for d in suite
        if d.name != suite.meta["general_domain"]
    }


@pytest.fixture(scope="package")
def control(v0: TorchClassifier, experts: dict[str, TorchClassifier], suite: DomainSuite) -> FeedbackReport:
    """The same absorb with the strategy replaced by continued training on the general data."""
    return absorb(v0, experts, suite, FeedbackStrategy(), **ABSORB)[1]


@pytest.fixture(scope="package")
def same_arch_experts(v0: TorchClassifier, suite: DomainSuite) -> dict[str, TorchClassifier]:
    """Fine-tuned copies of v0, one per shifted domain: the experts weight merging needs."""
    return {
        d.name: finetune(v0, d, epochs=10, patience=3, random_state=i)
        for i, d in enumerate(suite)
        if d.name != suite.meta["general_domain"]
    }
