"""Generation checkpoints: who owns a run folder, and the modes of what is written."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from crossfeed.cycle._checkpoint import RUN_FILE, generation_dir, prepare_run_dir, save_generation
from crossfeed.exceptions import ValidationError
from crossfeed.models import TorchClassifier


@pytest.fixture(scope="module")
def tiny_model() -> TorchClassifier:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)
    return TorchClassifier("mlp", module_kwargs={"hidden": (4,)}, epochs=1, random_state=0).fit(X, y)


def _fingerprint(epochs: int) -> dict:
    return {"config": {"large": {"epochs": epochs}}, "seed": 0}


def test_a_folder_without_a_finished_generation_is_taken_over(tmp_path):
    prepare_run_dir(tmp_path, _fingerprint(50), resume=True)  # a run that then died before generation 0
    prepare_run_dir(tmp_path, _fingerprint(6), resume=True)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == _fingerprint(6)
    prepare_run_dir(tmp_path, _fingerprint(6), resume=False)  # nothing finished: nothing to overwrite


def test_a_folder_with_a_finished_generation_stays_with_its_run(tmp_path, tiny_model):
    prepare_run_dir(tmp_path, _fingerprint(50), resume=True)
    save_generation(tmp_path, 0, tiny_model, {}, {"generation": 0})
    with pytest.raises(ValidationError, match=r"different config or seed \(differs in: config\.large\.epochs\)"):
        prepare_run_dir(tmp_path, _fingerprint(6), resume=True)
    with pytest.raises(ValidationError, match="already holds this run"):
        prepare_run_dir(tmp_path, _fingerprint(50), resume=False)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == _fingerprint(50)


@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_checkpoint_folders_follow_the_umask(tmp_path, tiny_model, umask, folder, file):
    before = os.umask(umask)
    try:
        prepare_run_dir(tmp_path / "run", _fingerprint(1), resume=True)
        final = save_generation(tmp_path / "run", 0, tiny_model, {"noisy": tiny_model}, {"generation": 0})
    finally:
        os.umask(before)
    assert final == generation_dir(tmp_path / "run", 0)
    folders = [final, final / "large", final / "experts", final / "experts" / "noisy"]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(folder)}  # mkdtemp alone gives 0o700
    files = [p for p in final.rglob("*") if p.is_file()]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(file)}
