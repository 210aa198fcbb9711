"""Data-parallel training: 2 processes on CPU (gloo) give the model of one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from crossfeed.exceptions import ValidationError
from crossfeed.training import World, init_from_env, world

WORKER = Path(__file__).with_name("ddp_worker.py")


def _single_process(weighted: bool) -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import fit
    finally:
        sys.path.remove(str(WORKER.parent))
    return fit(weighted).module_.state_dict()


def test_shard_deals_rows_out_and_covers_the_batch():
    index = torch.arange(7)
    shards = [World(r, 3).shard(index) for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 3, 6], [1, 4], [2, 5]]
    assert World().shard(index).tolist() == index.tolist()
    assert World(1, 8).shard(torch.arange(1)).numel() == 0  # a rank past the batch's end gets nothing


def test_a_plain_run_has_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_from_env() == World() == world() and not world().parallel


def test_world_size_without_torchrun_variables_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="torchrun"):
        init_from_env()


def test_two_processes_train_the_model_of_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for weighted in (0, 1):
        ranks = [load_file(str(tmp_path / f"rank{r}-weighted{weighted}.safetensors")) for r in (0, 1)]
        rows = [int(safe_open(str(tmp_path / f"rank{r}-weighted{weighted}.safetensors"), "pt").metadata()["rows"])
                for r in (0, 1)]
        single = _single_process(bool(weighted))
        # each process trained on half of every batch (162 training rows x 4 epochs in all), not on all of it
        assert rows == [324, 324]
        assert set(ranks[0]) == set(single)
        for name, value in single.items():
            assert torch.equal(ranks[0][name], ranks[1][name]), f"ranks disagree on {name}"
            np.testing.assert_allclose(ranks[0][name].numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


TINY_YAML = """\
name: tiny-ddp
seeds: [0]
suite: {name: mnist1d, kwargs: {n_per_domain: 300, domains: [default, noisy]}}
large: {module: mlp, module_kwargs: {hidden: [32], dropout: 0.0}, epochs: 3, lr: 0.005, patience: null}
experts: {method: finetune, finetune_epochs: 2}
feedback: {strategy: continued_training, epochs: 1}
gate: {test: none, route: false, holdout: 0.0, advance: all}
generations: 1
"""


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "crossfeed.cli",
           *args]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)


def test_the_cycle_trains_generation_0_under_torchrun_and_resumes_in_one_process(tmp_path):
    from crossfeed.experiments import load_config, run_experiment
    from crossfeed.models import load_model

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(TINY_YAML)
    done = _torchrun("run", str(config_file), "--out", str(tmp_path / "ddp"), "--until", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp" / "seed-0").glob("gen-*")) == ["gen-000"]

    config = load_config(config_file)
    single = run_experiment(config, tmp_path / "single", until=0)
    ddp_large = load_model(tmp_path / "ddp" / "seed-0" / "gen-000" / "large").module_.state_dict()
    for name, value in load_model(tmp_path / "single" / "seed-0" / "gen-000" / "large").module_.state_dict().items():
        np.testing.assert_allclose(ddp_large[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    assert [g.generation for g in single.cycles[0].generations] == [0]

    resumed = run_experiment(config, tmp_path / "ddp")  # one process goes on from the data-parallel generation 0
    assert resumed.cycles[0].resumed_from == 0 and [g.generation for g in resumed.cycles[0].generations] == [0, 1]

    refused = _torchrun("run", str(config_file), "--out", str(tmp_path / "ddp"))
    assert refused.returncode != 0  # each rank exits with 2; torchrun reports the failed workers
    assert "without finished generations" in " ".join(refused.stdout.split())
