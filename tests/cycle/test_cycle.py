"""The cycle: generations checkpointed atomically; a killed run resumes to the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from crossfeed.cycle import field_batches, run_cycle
from crossfeed.cycle._checkpoint import finished_generations
from crossfeed.exceptions import EmptyDataError, ValidationError
from crossfeed.experiments import config_from_dict

TINY = {
    "name": "tiny",
    "suite": {"name": "mnist1d", "kwargs": {"n_per_domain": 400, "domains": ["default", "noisy", "shifted"]}},
    "large": {"module": "cnn1d", "module_kwargs": {"size": "small"}, "epochs": 12, "lr": 0.005, "patience": None},
    "experts": {"student": "cnn1d:tiny", "epochs": 4, "finetune_epochs": 3},
    "feedback": {"strategy": "data_feedback", "kwargs": {"threshold": 0.5}, "epochs": 4},
    "gate": {"test": "none", "route": False, "holdout": 0.0, "advance": "all"},
    "generations": 2,
}


def accuracies(result) -> list:
    return [(g.generation, g.accuracy, g.val_accuracy, g.accepted, g.field_samples) for g in result.generations]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_cycle(config_from_dict(TINY), seed=0, out=tmp_path_factory.mktemp("full"))


def test_generations_are_checkpointed_and_measured(uninterrupted, tmp_path):
    result = uninterrupted
    assert [g.generation for g in result.generations] == [0, 1, 2]
    assert result.large_matrix().shape == (3, 3)
    last = result.generations[-1]
    assert set(last.accuracy) == {"large", "served", "expert:noisy", "expert:shifted"}
    assert last.field_samples == {"noisy": 50, "shifted": 50}  # all the experts' field data by the last generation
    assert result.generations[1].field_samples == {"noisy": 25, "shifted": 25}
    assert last.feedback.strategy == "data_feedback"
    assert set(last.feedback.domains) == {"default", "noisy", "shifted"}


class _Interrupt(Exception):
    pass


class _StopAt:
    """A progress sink that interrupts the run when a stage starts."""

    def __init__(self, stage: str) -> None:
        self.stage_prefix = stage

    def stage(self, message: str) -> None:
        if message.startswith(self.stage_prefix):
            raise _Interrupt(message)

    def training(self, name, epochs):
        return lambda logs: None


def test_interrupted_run_resumes_to_the_same_results(uninterrupted, tmp_path):
    config = config_from_dict(TINY)
    with pytest.raises(_Interrupt):
        run_cycle(config, seed=0, out=tmp_path, progress=_StopAt("generation 2: feedback"))
    assert finished_generations(tmp_path) == [0, 1]
    resumed = run_cycle(config, seed=0, out=tmp_path)
    assert resumed.resumed_from == 1
    assert accuracies(resumed) == accuracies(uninterrupted)


def test_a_killed_process_resumes_to_the_same_results(uninterrupted, tmp_path):
    """SIGKILL in the middle of generation 2, then resume: the results of the uninterrupted run."""
    code = (
        "import torch, sys; torch.set_num_threads(1)\n"
        "from crossfeed.cycle import run_cycle\nfrom crossfeed.experiments import config_from_dict\n"
        f"run_cycle(config_from_dict({TINY!r}), seed=0, out=sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "gen-001" / "generation.json").exists():
            assert proc.poll() is None, "the run ended before its first generation finished"
            assert time.monotonic() < deadline, "generation 1 took too long"
            time.sleep(0.05)
        time.sleep(0.5)  # now inside generation 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = finished_generations(tmp_path)
    assert 1 in done
    resumed = run_cycle(config_from_dict(TINY), seed=0, out=tmp_path)
    assert accuracies(resumed) == accuracies(uninterrupted)
    assert not list(tmp_path.glob(".gen-*.tmp")), "no half-written generation is left behind"


def test_resume_refuses_another_config_or_an_existing_run(uninterrupted, tmp_path):
    config = config_from_dict({**TINY, "generations": 1})
    run_cycle(config, seed=0, out=tmp_path)
    other = config_from_dict({**TINY, "generations": 1, "feedback": {**TINY["feedback"], "epochs": 5}})
    with pytest.raises(ValidationError, match=r"different config.*differs in: config.feedback.epochs"):
        run_cycle(other, seed=0, out=tmp_path)
    renamed = config_from_dict({**TINY, "generations": 1, "name": "renamed", "seeds": [0, 5]})
    assert run_cycle(renamed, seed=0, out=tmp_path).resumed_from == 1  # name and seed list do not matter
    with pytest.raises(ValidationError, match="already holds this run"):
        run_cycle(config, seed=0, out=tmp_path, resume=False)
    record = json.loads((tmp_path / "gen-001" / "generation.json").read_text())
    assert record["generation"] == 1


def test_gate_keeps_the_previous_large_model_when_feedback_hurts(sabotage):
    harmful = {**TINY, "generations": 1, "feedback": {"strategy": sabotage, "epochs": 6, "lr": 0.01},
               "gate": {"test": "tolerance", "margin": 0.02, "route": False, "holdout": 0.0, "advance": "all"}}
    gated = run_cycle(config_from_dict(harmful), seed=0)
    ungated = run_cycle(config_from_dict({**harmful, "gate": {**harmful["gate"], "test": "none"}}), seed=0)
    assert not gated.generations[1].accepted and ungated.generations[1].accepted
    assert gated.generations[1].accuracy["large"] == gated.generations[0].accuracy["large"]
    assert np.mean(list(ungated.generations[1].accuracy["large"].values())) < np.mean(
        list(gated.generations[1].accuracy["large"].values()))


def test_resume_starts_at_the_first_missing_generation(uninterrupted, tmp_path):
    import shutil

    config = config_from_dict(TINY)
    run_cycle(config, seed=0, out=tmp_path)
    shutil.rmtree(tmp_path / "gen-001")  # a middle generation deleted (e.g. its record was corrupt)
    assert finished_generations(tmp_path) == [0]
    resumed = run_cycle(config, seed=0, out=tmp_path)
    assert resumed.resumed_from == 0 and accuracies(resumed) == accuracies(uninterrupted)


def test_field_batches_and_missing_field_data(small_suite):
    first = field_batches(small_suite, 1, 3)
    assert all(len(a.X_field) == len(b.X_field) // 3 for a, b in zip(first, small_suite))
    assert all(np.array_equal(a.X_field, b.X_field[: len(a.X_field)]) for a, b in zip(first, small_suite))
    with pytest.raises(EmptyDataError, match="field samples"):
        field_batches(small_suite, 1, 10_000)
    only = field_batches(small_suite, 1, 2, ["noisy"])
    assert len(only["noisy"].X_field) == len(small_suite["noisy"].X_field) // 2
    assert only["default"] is small_suite["default"]  # other domains are left as they are


def test_cycle_result_is_json_ready(uninterrupted):
    data = json.loads(json.dumps(uninterrupted.to_dict()))
    assert data["generations"][2]["feedback"]["strategy"] == "data_feedback"


def test_too_few_field_samples_for_the_generations_fail_before_any_training(monkeypatch):
    """Cross-field rule: every generation needs a batch of field data; checked before generation 0 trains."""
    from crossfeed.models import TorchClassifier

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the field data was checked")

    monkeypatch.setattr(TorchClassifier, "fit", no_training)
    with pytest.raises(EmptyDataError, match="one per generation"):
        run_cycle(config_from_dict({**TINY, "generations": 1000}), seed=0)


def test_the_feedback_step_records_its_settings_and_takes_the_large_models_where_unset():
    from crossfeed.cycle._cycle import feedback_settings
    from crossfeed.models import TorchClassifier

    large = TorchClassifier("mlp", batch_size=64, weight_decay=0.01, optimizer="sgd")
    unset = feedback_settings(config_from_dict(TINY), large, seed=3)
    assert (unset.batch_size, unset.weight_decay, unset.optimizer, unset.epochs, unset.seed) == (64, 0.01, "sgd", 4, 3)
    chosen = config_from_dict({**TINY, "feedback": {**TINY["feedback"], "batch_size": 32, "optimizer": "adam"}})
    s = feedback_settings(chosen, large, seed=3)
    assert (s.batch_size, s.optimizer, s.weight_decay) == (32, "adam", 0.01)
