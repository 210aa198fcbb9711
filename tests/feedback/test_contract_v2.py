"""Strategy contract v2: declared parameters, explicit settings, the typed channel, discovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import crossfeed.feedback as feedback_pkg
from crossfeed.config import config_from_dict, load_config
from crossfeed.exceptions import ValidationError
from crossfeed.feedback import (
    STRATEGIES,
    DistillData,
    FeedbackStrategy,
    MultiTeacherKD,
    Param,
    TrainSettings,
    absorb,
    check_params,
    discover,
    register,
)
from crossfeed.models import TorchClassifier
from tests.feedback.conftest import context

EXAMPLES = Path(__file__).parents[2] / "examples"


# -- parameters declared once -----------------------------------------------------------------
def test_param_checks_types_bounds_choices_and_normalises():
    spec = {"t": Param(float, low=0.0, low_open=True), "n": Param(int, low=1), "m": Param(str, choices=("a", "b")),
            "flag": Param(bool), "maybe": Param(float, none=True), "names": Param(list, items=str)}
    ok = check_params(spec, {"t": 2, "n": np.int64(3), "m": "a", "flag": False, "maybe": None, "names": ("x",)},
                      owner="s")
    assert ok == {"t": 2.0, "n": 3, "m": "a", "flag": False, "maybe": None, "names": ["x"]}
    assert isinstance(ok["t"], float) and isinstance(ok["n"], int)
    for bad, match in [({"t": 0.0}, "t must be a number > 0"), ({"t": "x"}, "t must be"), ({"n": 1.5}, "integer"),
                       ({"n": True}, "integer"), ({"m": "c"}, "one of 'a', 'b'"), ({"flag": "yes"}, "true or false"),
                       ({"t": float("nan")}, "t must be"), ({"names": [1]}, "list of str"), ({"t": None}, "t must be")]:
        with pytest.raises(ValidationError, match=match):
            check_params(spec, bad, owner="s")
    with pytest.raises(ValidationError, match="did you mean 't'"):
        check_params({"tt": Param(float), "t": Param(float)}, {"tx": 1.0}, owner="s")


def test_every_registered_strategy_declares_exactly_its_constructor_arguments():
    import inspect

    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        init = [] if cls.__init__ is object.__init__ else list(inspect.signature(cls.__init__).parameters)[1:]
        assert set(cls.params) == set(init), name
        assert cls().get_params() == {k: getattr(cls(), k) for k in cls.params}


def test_register_refuses_a_strategy_whose_declaration_drifts_from_its_constructor():
    with pytest.raises(TypeError, match="declares"):
        @register("drifting_strategy")
        class Drifting(FeedbackStrategy):
            params = {"a": Param(float)}

            def __init__(self, a: float = 1.0, b: int = 2) -> None:
                self.a, self.b = a, b
    with pytest.raises(TypeError, match="no \\*args"):
        @register("kwargs_strategy")
        class Loose(FeedbackStrategy):
            def __init__(self, **kwargs) -> None:
                self.kwargs = kwargs
    with pytest.raises(ValidationError, match="must be a number > 0"):  # a default that breaks its own constraint
        @register("bad_default_strategy")
        class BadDefault(FeedbackStrategy):
            params = {"t": Param(float, low=0.0, low_open=True)}

            def __init__(self, t: float = 0.0) -> None:
                self.t = t
    assert "drifting_strategy" not in STRATEGIES and "bad_default_strategy" not in STRATEGIES


def test_bad_strategy_parameters_fail_when_the_config_loads_before_any_training(tmp_path, monkeypatch):
    """The issue's cases: temperature -1 in multi_teacher_kd.yaml, merge method 'bogus', a typo."""
    def no_training(*args, **kwargs):  # loading must never train
        raise AssertionError("training started while loading a config")

    monkeypatch.setattr(TorchClassifier, "fit", no_training)
    text = (EXAMPLES / "multi_teacher_kd.yaml").read_text()
    assert "temperature" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("temperature: 2.0", "temperature: -1.0"))
    with pytest.raises(ValidationError, match=r"feedback.kwargs \(strategy 'multi_teacher_kd'\): temperature must be "
                                              r"a number > 0"):
        load_config(bad)
    merge = (EXAMPLES / "merge.yaml").read_text()
    bad.write_text(merge.replace("method: ties", "method: bogus"))
    with pytest.raises(ValidationError, match="method must be one of 'average', 'task_arithmetic', 'ties'; got 'bogus'"):
        load_config(bad)
    with pytest.raises(ValidationError, match="has no parameter 'temprature'; did you mean 'temperature'"):
        config_from_dict({"feedback": {"strategy": "multi_teacher_kd", "kwargs": {"temprature": 2.0}}})
    with pytest.raises(ValidationError, match=r"compare\[0\].kwargs"):
        config_from_dict({"feedback": {"strategy": "data_feedback", "compare": [{"strategy": "lwf",
                                                                                  "kwargs": {"lwf_weight": -1}}]}})


def test_cross_field_rule_merge_needs_finetuned_experts():
    with pytest.raises(ValidationError, match="experts.method: finetune"):
        config_from_dict({"feedback": {"strategy": "merge"}, "experts": {"method": "distill"}})
    config_from_dict({"feedback": {"strategy": "merge"}, "experts": {"method": "finetune"}})


def test_every_example_config_loads():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        load_config(path)


# -- explicit settings ------------------------------------------------------------------------
def test_train_settings_are_checked_and_like_copies_only_what_is_asked(v0):
    for bad in [{"epochs": -1}, {"lr": 0.0}, {"batch_size": 0}, {"optimizer": "lbfgs"}, {"threads": 0},
                {"weight_decay": float("inf")}, {"epochs": 1.5}]:
        with pytest.raises(ValidationError, match="TrainSettings"):
            TrainSettings(**bad)
    model = TorchClassifier("mlp", batch_size=64, weight_decay=0.01, optimizer="sgd", lr=0.5, epochs=99)
    s = TrainSettings.like(model, epochs=3)
    assert (s.batch_size, s.weight_decay, s.optimizer, s.epochs, s.lr) == (64, 0.01, "sgd", 3, 1e-3)


def test_hooks_receive_the_settings_of_the_step(v0, experts, suite):
    seen = []

    class Spy(FeedbackStrategy):
        def prepare(self, ctx):
            seen.append(ctx.settings)
            return None

    settings = TrainSettings(epochs=1, lr=5e-4, batch_size=32, weight_decay=0.1, seed=7)
    _, report = absorb(v0, experts, suite, Spy(), settings)
    assert seen == [settings] and report.settings == settings
    _, report = absorb(v0, experts, suite, Spy(), settings, epochs=2, random_state=1)
    assert seen[-1] == settings.replace(epochs=2, seed=1) == report.settings


def test_the_feedback_step_trains_with_its_own_settings_not_the_large_models(v0, experts, suite):
    """Different batch sizes give different models: the settings reach the loop."""
    a, _ = absorb(v0, experts, suite, "data_feedback", TrainSettings(epochs=1, batch_size=32))
    b, _ = absorb(v0, experts, suite, "data_feedback", TrainSettings(epochs=1, batch_size=256))
    assert not np.allclose(a.predict_proba(suite["noisy"].X_test), b.predict_proba(suite["noisy"].X_test))


# -- the typed channel and finiteness -------------------------------------------------------------
def test_distill_data_carries_the_teacher_logits_and_refuses_non_finite_ones(v0, experts, suite):
    data = MultiTeacherKD().prepare(context(v0, experts, suite))
    assert isinstance(data, DistillData) and data.teacher_logits.shape == (len(data.X), 10)
    assert not any(k.startswith("_") for k in data.info)
    logits = data.teacher_logits.copy()
    logits[3, 2] = np.nan
    with pytest.raises(ValidationError, match="not finite on 1 of"):
        DistillData(data.X, data.y, labelled_mask=data.labelled_mask, teacher_logits=logits)


class _NaNExpert:
    """An expert whose probabilities are NaN on every input."""

    def __init__(self, like):
        self.classes_ = like.classes_

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), np.nan)


def test_a_non_finite_teacher_is_refused_never_propagated(v0, experts, suite):
    team = {**experts, "noisy": _NaNExpert(v0)}
    for name in ("multi_teacher_kd", "ensemble_distill", "data_feedback"):
        with pytest.raises(ValidationError, match="non-finite|not finite|NaN"):
            absorb(v0, team, suite, name, epochs=1, keep_weaker_experts=True)


def test_non_finite_expert_weights_are_refused_by_merging(v0, same_arch_experts, suite):
    import copy

    import torch

    broken = copy.deepcopy(same_arch_experts["noisy"])
    with torch.no_grad():
        next(broken.module_.parameters()).fill_(float("inf"))
    with pytest.raises(ValidationError, match="non-finite weights"):
        absorb(v0, {**same_arch_experts, "noisy": broken}, suite, "merge", epochs=0, keep_weaker_experts=True)


def test_a_diverging_feedback_step_is_an_error_not_a_nan_model(v0, experts, suite):
    with pytest.raises(ValidationError, match="training diverged"):
        absorb(v0, experts, suite, "data_feedback", TrainSettings(epochs=2, lr=1e12, optimizer="sgd"))


# -- discovery --------------------------------------------------------------------------------
STRATEGY_MODULE = '''
from crossfeed.feedback import FeedbackStrategy, Param, register


@register("{name}")
class Plugged(FeedbackStrategy):
    """Continued training, with one declared parameter."""

    params = {{"strength": Param(float, low=0.0)}}

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength
'''


def test_a_strategy_in_a_new_package_is_discovered_and_usable_by_name(tmp_path, monkeypatch, v0, experts, suite):
    pkg = tmp_path / "my_feedback_plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugged.py").write_text(STRATEGY_MODULE.format(name="plugged_test_strategy"))
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert discover("my_feedback_plugins", entry_points=False) == ["my_feedback_plugins.plugged"]
        assert "plugged_test_strategy" in STRATEGIES
        config_from_dict({"feedback": {"strategy": "plugged_test_strategy", "kwargs": {"strength": 2.0}}})
        with pytest.raises(ValidationError, match="strength must be a number >= 0"):
            config_from_dict({"feedback": {"strategy": "plugged_test_strategy", "kwargs": {"strength": -2.0}}})
        _, report = absorb(v0, experts, suite, "plugged_test_strategy", epochs=1, params={"strength": 3.0})
        assert report.strategy == "plugged_test_strategy" and report.params == {"strength": 3.0}
    finally:
        STRATEGIES.remove("plugged_test_strategy")
        sys.modules.pop("my_feedback_plugins.plugged", None)
        sys.modules.pop("my_feedback_plugins", None)


def test_a_module_dropped_into_crossfeed_feedback_is_found_without_editing_any_other_file():
    """The real layout: one new file under crossfeed/feedback/, a fresh interpreter finds it."""
    folder = Path(feedback_pkg.__file__).parent
    module = folder / "zz_dropped_in_test_strategy.py"
    module.write_text(STRATEGY_MODULE.format(name="dropped_in_test_strategy"))
    try:
        code = textwrap.dedent("""
            from crossfeed.feedback import STRATEGIES
            print("dropped_in_test_strategy" in STRATEGIES)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
        assert out.stdout.strip() == "True", out.stderr
    finally:
        module.unlink()


def test_suite_options_are_checked_when_the_config_loads():
    with pytest.raises(ValidationError, match=r"suite.kwargs: .*n_per_domian.*did you mean 'n_per_domain'"):
        config_from_dict({"suite": {"name": "mnist1d", "kwargs": {"n_per_domian": 100}}}, source="x.yaml")
