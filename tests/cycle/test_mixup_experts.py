"""``experts.mixup``: each expert's distillation also learns on mixup rows the large model labels."""

import numpy as np
import pytest

import crossfeed.cycle._cycle as cycle_module
from crossfeed.cycle._cycle import run_fingerprint
from crossfeed.data import load_suite
from crossfeed.exceptions import ValidationError
from crossfeed.experiments import config_from_dict, run_experiment
from crossfeed.models import TorchClassifier
from crossfeed.spawn import spawn_experts

TINY = {
    "name": "mixup-experts",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 200, "domains": ["default", "noisy"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "tiny"}, "epochs": 2, "lr": 0.005, "patience": None},
    "experts": {"method": "distill", "epochs": 2, "finetune_epochs": 1, "mixup": 300},
    "feedback": {"strategy": "multi_teacher_kd", "epochs": 1},
    "generations": 1,
}


def test_mixup_rows_change_the_experts_the_cycle_spawns(tmp_path, monkeypatch):
    suite = load_suite("mnist1d", seed=0, n_per_domain=200, domains=["default", "noisy"])
    large = TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=2, random_state=0).fit(*suite.pooled("train"))
    X_test, _ = suite.pooled("test")
    plain = spawn_experts(large, suite, epochs=2, finetune_epochs=0, domains=["noisy"])["noisy"]
    mixed = spawn_experts(large, suite, epochs=2, finetune_epochs=0, mixup=300, domains=["noisy"])["noisy"]
    assert np.abs(plain.predict_proba(X_test) - mixed.predict_proba(X_test)).max() > 1e-3

    seen = []
    real = cycle_module.spawn_experts

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["mixup"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cycle_module, "spawn_experts", recording)
    run_experiment(config_from_dict(TINY), tmp_path)
    assert seen == [300]


def test_mixup_is_checked_when_the_config_loads_and_stays_out_of_other_runs_fingerprints():
    def with_experts(**changes):
        return {**TINY, "experts": {**TINY["experts"], **changes}}

    with pytest.raises(ValidationError, match="experts.mixup must be a whole number of extra rows >= 0"):
        config_from_dict(with_experts(mixup=-1))
    with pytest.raises(ValidationError, match="experts.mixup: expected an integer"):
        config_from_dict(with_experts(mixup=2.5))
    with pytest.raises(ValidationError, match="distils nothing"):
        config_from_dict(with_experts(method="finetune"))
    assert "mixup" not in run_fingerprint(config_from_dict(with_experts(mixup=0)), 0)["config"]["experts"]
    assert run_fingerprint(config_from_dict(TINY), 0)["config"]["experts"]["mixup"] == 300
