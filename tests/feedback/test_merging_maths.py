"""The merging maths on tiny hand-made state dicts, against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._merging import (
    average_weights,
    disjoint_mean,
    elect_signs,
    relative_distance,
    task_arithmetic,
    task_vectors,
    ties_merge,
    trim_top_k,
)

BASE = {"w": torch.tensor([[1.0, 1.0], [1.0, 1.0]]), "b": torch.tensor([0.0, 0.0]), "n": torch.tensor(5)}
A = {"w": torch.tensor([[2.0, 1.0], [0.0, 1.5]]), "b": torch.tensor([1.0, -1.0]), "n": torch.tensor(7)}
B = {"w": torch.tensor([[4.0, 0.0], [1.0, 1.0]]), "b": torch.tensor([-3.0, 0.5]), "n": torch.tensor(9)}


def test_average_weights():
    out = average_weights([A, B])
    assert torch.equal(out["w"], torch.tensor([[3.0, 0.5], [0.5, 1.25]]))
    assert torch.equal(out["b"], torch.tensor([-1.0, -0.25]))
    assert out["n"].item() == 7 and out["n"].dtype == torch.int64  # integers: the first state's
    weighted = average_weights([A, B], weights=[3, 1])
    assert torch.allclose(weighted["b"], torch.tensor([0.0, -0.625]))
    assert torch.equal(average_weights([A])["w"], A["w"])


def test_task_vectors_and_task_arithmetic():
    taus = task_vectors(BASE, [A, B])
    assert set(taus[0]) == {"w", "b"}  # integer entries are no part of a task vector
    assert torch.equal(taus[1]["w"], torch.tensor([[3.0, -1.0], [0.0, 0.0]]))
    out = task_arithmetic(BASE, [A, B], lam=0.5)
    # base + 0.5 * ((A - base) + (B - base))
    assert torch.equal(out["w"], torch.tensor([[3.0, 0.5], [0.5, 1.25]]))
    assert torch.equal(out["b"], torch.tensor([-1.0, -0.25]))
    assert out["n"].item() == 5  # the base's counter
    # lam = 1 / n_states is the plain average; lam = 0 is the base
    assert torch.equal(task_arithmetic(BASE, [A, B], lam=0.5)["w"], average_weights([A, B])["w"])
    assert torch.equal(task_arithmetic(BASE, [A, B], lam=0.0)["w"], BASE["w"])


def test_trim_top_k_ranks_the_whole_task_vector():
    tau = {"w": torch.tensor([[1.0, -4.0], [0.5, 0.0]]), "b": torch.tensor([3.0, -0.2])}
    kept = trim_top_k(tau, 0.5)  # 6 entries -> 3 kept: -4, 3, 1
    assert torch.equal(kept["w"], torch.tensor([[1.0, -4.0], [0.0, 0.0]]))
    assert torch.equal(kept["b"], torch.tensor([3.0, 0.0]))
    assert torch.equal(trim_top_k(tau, 1.0)["w"], tau["w"])
    assert torch.equal(trim_top_k(tau, 0.1)["w"], torch.tensor([[0.0, -4.0], [0.0, 0.0]]))  # ceil(0.6) = 1


def test_elect_signs_and_disjoint_mean():
    taus = [{"v": torch.tensor([1.0, -2.0, 0.0, 1.0])},
            {"v": torch.tensor([3.0, 1.0, 0.0, -1.0])},
            {"v": torch.tensor([-1.0, -2.0, 0.0, 0.0])}]
    signs = elect_signs(taus)
    assert torch.equal(signs["v"], torch.tensor([1.0, -1.0, 0.0, 0.0]))  # sums 3, -3, 0, 0
    merged = disjoint_mean(taus, signs)
    # entry 0: mean of 1 and 3 (the -1 disagrees); entry 1: mean of -2 and -2; no elected sign: 0
    assert torch.equal(merged["v"], torch.tensor([2.0, -2.0, 0.0, 0.0]))


def test_ties_merge():
    base = {"v": torch.zeros(4), "n": torch.tensor(1)}
    s1 = {"v": torch.tensor([0.5, -3.0, 0.1, 2.0]), "n": torch.tensor(2)}
    s2 = {"v": torch.tensor([1.0, 1.0, -0.2, 4.0]), "n": torch.tensor(3)}
    # density 0.5: s1 keeps -3, 2; s2 keeps 4, 1 (ties at |1| broken by position: entry 0)
    # signs: [+1, -1, 0, +1]; disjoint means: [1, -3, 0, 3]
    out = ties_merge(base, [s1, s2], lam=1.0, density=0.5)
    assert torch.equal(out["v"], torch.tensor([1.0, -3.0, 0.0, 3.0]))
    assert out["n"].item() == 1
    assert torch.equal(ties_merge(base, [s1, s2], lam=0.5, density=0.5)["v"], torch.tensor([0.5, -1.5, 0.0, 1.5]))
    # one state, nothing trimmed: the state itself
    assert torch.equal(ties_merge(base, [s1], lam=1.0, density=1.0)["v"], s1["v"])


def test_bad_input():
    with pytest.raises(ValidationError, match="non-empty"):
        average_weights([])
    with pytest.raises(ValidationError, match="names and shapes"):
        average_weights([A, {"w": torch.zeros(3), "b": torch.zeros(2), "n": torch.tensor(0)}])
    with pytest.raises(ValidationError, match="names and shapes"):
        task_arithmetic(BASE, [{"w": A["w"]}])
    with pytest.raises(ValidationError, match="weights"):
        average_weights([A, B], weights=[1.0, -1.0])
    with pytest.raises(ValidationError, match="weights"):
        average_weights([A, B], weights=[1.0])
    with pytest.raises(ValidationError, match="density"):
        ties_merge(BASE, [A], density=0.0)
    with pytest.raises(ValidationError, match="density"):
        trim_top_k({"w": A["w"]}, 1.5)
    with pytest.raises(ValidationError, match="lam"):
        task_arithmetic(BASE, [A], lam=float("nan"))
    with pytest.raises(ValidationError, match="lam"):
        ties_merge(BASE, [A], lam="big")


def test_relative_distance():
    base = {"w": torch.tensor([3.0, 4.0]), "n": torch.tensor(1)}
    assert relative_distance(base, {"w": torch.tensor([3.0, 3.0]), "n": torch.tensor(8)}) == pytest.approx(0.2)
    assert relative_distance(base, base) == 0.0
    zero = {"w": torch.zeros(2)}
    assert relative_distance(zero, zero) == 0.0 and relative_distance(zero, {"w": torch.ones(2)}) == float("inf")
