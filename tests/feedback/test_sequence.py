"""absorb_sequence: domains one after another with one strategy instance, and its report's maths."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.exceptions import ValidationError
from crossfeed.feedback import SequenceReport, SequentialKD, absorb_sequence

FAST = {"epochs": 1, "lr": 1e-3, "random_state": 0}


class Recording(SequentialKD):
    """Sequential KD that records what each step showed it."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[list[str]] = []
        self.remembered: list[tuple[list[str], object]] = []

    def prepare(self, ctx):
        self.prepared.append(list(ctx.experts))
        return super().prepare(ctx)

    def remember(self, ctx, new_large, data):
        self.remembered.append((list(ctx.experts), new_large))


@pytest.fixture(scope="module")
def two_steps(v0, experts, suite):
    strategy = Recording()
    pair = {name: experts[name] for name in ("noisy", "sheared")}
    final, report = absorb_sequence(v0, pair, suite, strategy, order=["sheared", "noisy"], **FAST)
    return strategy, final, report


def _accuracy(model, domain):
    return float(np.mean(model.predict(domain.X_test) == domain.y_test))


def test_one_instance_serves_every_step_in_order(two_steps):
    strategy, final, report = two_steps
    assert strategy.prepared == [["sheared"], ["noisy"]]
    assert [names for names, _ in strategy.remembered] == [["sheared"], ["noisy"]]
    assert strategy.remembered[-1][1] is final
    assert isinstance(report, SequenceReport) and report.order == ["sheared", "noisy"]
    assert report.strategy == "sequential_kd" and len(report.steps) == 2 and report.wall_seconds > 0


def test_report_maths(two_steps, v0, suite):
    _, final, report = two_steps
    first, second = report.steps
    for domain in suite:
        assert report.initial(domain.name) == pytest.approx(_accuracy(v0, domain))
        assert report.accuracy(domain.name) == pytest.approx(_accuracy(final, domain))
        assert second.domains[domain.name].acc_v0 == first.domains[domain.name].acc_v1  # steps chain
    # only the step's own expert is measured
    assert [n for n, d in first.domains.items() if d.acc_expert is not None] == ["sheared"]
    assert [n for n, d in second.domains.items() if d.acc_expert is not None] == ["noisy"]
    assert report.general_domain == "default"
    assert report.forgetting("default") == pytest.approx(report.initial("default") - report.accuracy("default"))
    assert report.forgetting("sheared") == pytest.approx(first.domains["sheared"].acc_v1 - report.accuracy("sheared"))
    assert report.forgetting("noisy") == pytest.approx(0.0)  # the last domain cannot be forgotten yet
    assert report.mean_forgetting() == pytest.approx(report.forgetting("sheared"))
    expert = first.domains["sheared"].acc_expert
    v0_acc = report.initial("sheared")
    assert expert > v0_acc
    assert report.absorption("sheared") == pytest.approx((report.accuracy("sheared") - v0_acc) / (expert - v0_acc))


def test_default_order_is_the_suites_and_one_domain_forgets_nothing(v0, experts, suite):
    pair = {name: experts[name] for name in ("sheared", "noisy")}
    _, report = absorb_sequence(v0, pair, suite, "sequential_kd", **FAST)
    assert report.order == [n for n in suite.names if n in pair] == ["noisy", "sheared"]
    _, single = absorb_sequence(v0, {"noisy": experts["noisy"]}, suite, "sequential_kd", **FAST)
    assert single.mean_forgetting() == 0.0 and len(single.steps) == 1


@pytest.mark.parametrize(
    "order",
    [["noisy"], ["noisy", "sheared", "sheared"], ["noisy", "sheared", "scaled"], ["noisy", "nowhere"]],
)
def test_order_must_list_every_expert_once(order, v0, experts, suite):
    pair = {name: experts[name] for name in ("noisy", "sheared")}
    with pytest.raises(ValidationError, match="order must list every expert's domain exactly once"):
        absorb_sequence(v0, pair, suite, "sequential_kd", order=order, **FAST)


def test_strategy_keywords_reach_the_strategy(v0, experts, suite):
    _, report = absorb_sequence(v0, {"noisy": experts["noisy"]}, suite, "replay", params={"memory_size": 30}, **FAST)
    assert report.steps[0].info["replayed"] == 30
    with pytest.raises(ValidationError, match="only used with a strategy name"):
        absorb_sequence(v0, {"noisy": experts["noisy"]}, suite, SequentialKD(), params={"memory_size": 30}, **FAST)
