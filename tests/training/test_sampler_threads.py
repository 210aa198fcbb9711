"""BalancedSampler gives every group its share of each batch; torch_threads sets and restores threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossfeed.exceptions import ValidationError
from crossfeed.models import TorchClassifier
from crossfeed.training import BalancedSampler, TrainConfig, default_threads, torch_threads, train


def test_balanced_batches_hold_every_group_equally_and_cover_the_largest_once():
    groups = np.array(["big"] * 90 + ["small"] * 10)
    batches = list(BalancedSampler(groups).batches(0, 100, 20, torch.Generator().manual_seed(0)))
    assert len(batches) == 9  # the largest group (90 rows, 10 per batch) is seen once
    for b in batches:
        counts = np.unique(groups[b.numpy()], return_counts=True)[1]
        assert counts.tolist() == [10, 10]
    big = np.concatenate([b.numpy() for b in batches])
    assert sorted(set(big[big < 90].tolist())) == list(range(90))  # every big row exactly once
    assert len(set(big[big >= 90].tolist())) == 10  # small rows repeated


def test_balanced_sampler_changes_what_is_learned():
    """90% class 0 in group A, 10 rows of class 1 in group B: balanced batches learn class 1, shuffling barely does."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    X[360:, 0] += 2.0
    y = np.r_[np.zeros(360, int), np.ones(40, int)]
    def recall(hooks):
        clf = TorchClassifier("linear", epochs=3, lr=0.05, batch_size=40, random_state=0).fit(X, y, hooks=hooks)
        return float(np.mean(clf.predict(X[360:]) == 1))
    assert recall([BalancedSampler(y)]) > recall([]) + 0.3


def test_balanced_sampler_refuses_mismatched_groups_and_tiny_batches():
    sampler = BalancedSampler(np.array([0, 1, 2]))
    with pytest.raises(ValidationError, match="3 rows"):
        next(iter(sampler.batches(0, 4, 8, torch.Generator())))
    with pytest.raises(ValidationError, match="smaller than the number of groups"):
        next(iter(sampler.batches(0, 3, 2, torch.Generator())))


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValidationError, match="threads"):
        with torch_threads(0):
            pass
    assert 1 <= default_threads() <= 8


def test_the_loop_trains_with_the_configured_threads():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return self.lin(x)

    X, y = np.zeros((8, 2), np.float32), np.array([0, 1] * 4)
    before = torch.get_num_threads()
    train(Spy(), X, y, config=TrainConfig(epochs=1, threads=2))
    assert set(seen) == {2} and torch.get_num_threads() == before
    with pytest.raises(ValidationError, match="threads"):
        train(Spy(), X, y, config=TrainConfig(epochs=1, threads=0))
