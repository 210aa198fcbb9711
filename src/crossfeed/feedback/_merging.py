"""The maths of weight merging, as pure functions on state dicts (name -> tensor).

Models fine-tuned from one base share its parameter names and shapes, so their weights can be
combined entry by entry. With the *task vector* ``tau_k = theta_k - theta_base`` of expert ``k``:

- :func:`average_weights`: the (weighted) mean of the models' weights ("model soup"; Wortsman
  et al. ICML 2022, arXiv 2203.05482).
- :func:`task_arithmetic`: ``theta_base + lam · sum_k tau_k`` (Ilharco et al., "Editing Models
  with Task Arithmetic", ICLR 2023, arXiv 2212.04089).
- :func:`ties_merge`: TIES-Merging (Yadav et al., "Resolving Interference When Merging Models",
  NeurIPS 2023, arXiv 2306.01708): trim every task vector to its largest-magnitude entries
  (:func:`trim_top_k`), elect one sign per entry (:func:`elect_signs`), average only the values
  that agree with it (:func:`disjoint_mean`), then ``theta_base + lam · merged``.

Only floating-point tensors are merged; integer entries (BatchNorm's ``num_batches_tracked``) are
taken from the base (or, for :func:`average_weights`, the first model). No model, no loop: see
``tests/feedback/test_merging_maths.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from crossfeed.exceptions import ValidationError

__all__ = [
    "average_weights",
    "disjoint_mean",
    "elect_signs",
    "relative_distance",
    "task_arithmetic",
    "task_vectors",
    "ties_merge",
    "trim_top_k",
]

StateDict = Mapping[str, torch.Tensor]


def _check_states(states: Sequence[StateDict], reference: StateDict | None = None) -> StateDict:
    """Raise unless ``states`` is non-empty and every state has the reference's names and shapes."""
    if not isinstance(states, Sequence) or len(states) == 0:
        raise ValidationError("merging needs a non-empty sequence of state dicts (name -> tensor)")
    ref = states[0] if reference is None else reference
    shapes = {k: tuple(v.shape) for k, v in ref.items()}
    for i, state in enumerate(states):
        theirs = {k: tuple(v.shape) for k, v in state.items()}
        if theirs != shapes:
            diff = sorted(set(shapes.items()) ^ set(theirs.items()))[:4]
            raise ValidationError(
                f"state dict {i} does not have the same tensor names and shapes as the "
                f"{'base' if reference is not None else 'first'} one (differences, e.g. {diff}); only models "
                "fine-tuned from one architecture can be merged"
            )
    return ref


def _check_lam(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValidationError(f"lam (the scaling coefficient of the task vectors) must be a finite number; got {lam!r}")
    return float(lam)


def _check_density(density: float) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ValidationError(
            f"density (the fraction of each task vector's entries TIES keeps) must be in (0, 1]; got {density!r}"
        )
    return float(density)


def _floating(state: StateDict) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point()]


def average_weights(states: Sequence[StateDict], weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """The weighted mean of several models' weights, entry by entry.

    Parameters
    ----------
    states : sequence of state dicts with the same names and shapes.
    weights : one non-negative number per state (normalised to sum 1); equal weights by default.

    Returns
    -------
    dict name -> tensor; integer tensors are copied from the first state.

    Example
    -------
    >>> average_weights([{"w": torch.tensor([0.0, 2.0])}, {"w": torch.tensor([2.0, 4.0])}])["w"]
    tensor([1., 3.])
    """
    ref = _check_states(states)
    if weights is None:
        w = torch.full((len(states),), 1.0 / len(states), dtype=torch.float64)
    else:
        w = torch.as_tensor(list(weights), dtype=torch.float64)
        if w.shape != (len(states),) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValidationError(
                f"weights must be {len(states)} non-negative finite numbers, not all zero; got {list(weights)!r}"
            )
        w = w / w.sum()
    out = {k: v.clone() for k, v in ref.items()}
    for k in _floating(ref):
        mixed = sum(float(wi) * s[k].double() for wi, s in zip(w, states, strict=True))
        out[k] = mixed.to(ref[k].dtype)
    return out


def task_vectors(base: StateDict, states: Sequence[StateDict]) -> list[dict[str, torch.Tensor]]:
    """``tau_k = theta_k - theta_base`` for every floating-point entry of every state.

    Returns
    -------
    list of dicts name -> tensor, one per state (integer entries left out).

    Example
    -------
    >>> task_vectors({"w": torch.tensor([1.0])}, [{"w": torch.tensor([3.0])}])[0]["w"]
    tensor([2.])
    """
    _check_states(states, base)
    keys = _floating(base)
    return [{k: s[k] - base[k] for k in keys} for s in states]


def relative_distance(base: StateDict, state: StateDict) -> float:
    """``||theta - theta_base|| / ||theta_base||`` over all floating-point entries.

    A base of all zeros gives 0 for an equal state and ``inf`` otherwise.

    Small for a model fine-tuned from the base (about 0.1-0.2 for a few epochs), about 1 or more for
    one trained from another initialisation, whose weights merging cannot combine meaningfully.

    Example
    -------
    >>> relative_distance({"w": torch.tensor([3.0, 4.0])}, {"w": torch.tensor([3.0, 3.0])})
    0.2
    """
    (tau,) = task_vectors(base, [state])
    norm = math.sqrt(sum(float((base[k].double() ** 2).sum()) for k in tau))
    dist = math.sqrt(sum(float((t.double() ** 2).sum()) for t in tau.values()))
    if norm == 0:
        return 0.0 if dist == 0 else math.inf
    return dist / norm


def _apply(base: StateDict, delta: Mapping[str, torch.Tensor], lam: float) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in base.items()}
    for k, d in delta.items():
        out[k] = (base[k] + lam * d).to(base[k].dtype)
    return out


def task_arithmetic(base: StateDict, states: Sequence[StateDict], lam: float = 0.4) -> dict[str, torch.Tensor]:
    """Task arithmetic: ``theta_base + lam · sum_k (theta_k - theta_base)``.

    ``lam = 1 / n_states`` is the plain average of the states; Ilharco et al. pick ``lam`` on
    held-out data (values around 0.3-0.5 for several tasks).

    Example
    -------
    >>> base = {"w": torch.tensor([1.0, 1.0])}
    >>> task_arithmetic(base, [{"w": torch.tensor([2.0, 1.0])}, {"w": torch.tensor([1.0, 3.0])}], lam=0.5)["w"]
    tensor([1.5000, 2.0000])
    """
    lam = _check_lam(lam)
    taus = task_vectors(base, states)
    total = {k: torch.stack([t[k] for t in taus]).sum(dim=0) for k in taus[0]}
    return _apply(base, total, lam)


def trim_top_k(tau: Mapping[str, torch.Tensor], density: float) -> dict[str, torch.Tensor]:
    """Keep the ``ceil(density · n)`` largest-magnitude entries of a whole task vector, zero the rest.

    The ranking runs over all ``n`` entries of all tensors of ``tau`` together, as in the TIES
    paper's code (a task vector is one flat vector); ties at the threshold go to the earlier entry.

    Example
    -------
    >>> trim_top_k({"a": torch.tensor([0.1, -0.5]), "b": torch.tensor([0.3, 0.0])}, 0.5)
    {'a': tensor([ 0.0000, -0.5000]), 'b': tensor([0.3000, 0.0000])}
    """
    density = _check_density(density)
    keys = list(tau)
    flat = torch.cat([tau[k].reshape(-1) for k in keys]) if keys else torch.zeros(0)
    k = math.ceil(density * flat.numel())
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[torch.sort(flat.abs(), descending=True, stable=True).indices[:k]] = True
    out, start = {}, 0
    for name in keys:
        n = tau[name].numel()
        out[name] = torch.where(mask[start:start + n].reshape(tau[name].shape), tau[name], torch.zeros_like(tau[name]))
        start += n
    return out


def elect_signs(taus: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """TIES sign election: per entry, the sign of the summed (trimmed) task vectors.

    The sign with the larger total magnitude wins; an entry whose values sum to exactly zero gets
    sign 0 (nothing is elected there, so it stays at the base value).

    Example
    -------
    >>> elect_signs([{"w": torch.tensor([1.0, -1.0, 2.0])}, {"w": torch.tensor([-3.0, -1.0, -2.0])}])["w"]
    tensor([-1., -1.,  0.])
    """
    return {k: torch.sign(torch.stack([t[k] for t in taus]).sum(dim=0)) for k in taus[0]}


def disjoint_mean(taus: Sequence[Mapping[str, torch.Tensor]],
                  signs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TIES disjoint merge: per entry, the mean of the values whose sign is the elected one.

    Zeros (trimmed entries) and values of the other sign are left out of the mean; an entry
    where no value agrees is 0.

    Example
    -------
    >>> taus = [{"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([4.0, -1.0])}, {"w": torch.tensor([-1.0, 0.0])}]
    >>> disjoint_mean(taus, {"w": torch.tensor([1.0, -1.0])})["w"]
    tensor([ 3., -1.])
    """
    out = {}
    for k, sign in signs.items():
        stacked = torch.stack([t[k] for t in taus])
        agree = (torch.sign(stacked) == sign) & (stacked != 0)
        count = agree.sum(dim=0).clamp_min(1)
        out[k] = torch.where(agree, stacked, torch.zeros_like(stacked)).sum(dim=0) / count
    return out


def ties_merge(base: StateDict, states: Sequence[StateDict], lam: float = 1.0,
               density: float = 0.2) -> dict[str, torch.Tensor]:
    """TIES-Merging: trim, elect signs, disjoint mean, then ``theta_base + lam · merged``.

    Parameters
    ----------
    base : state dict the experts were fine-tuned from.
    states : the experts' state dicts (same names and shapes).
    lam : float, scaling of the merged task vector (the paper uses 1 for most settings).
    density : float in (0, 1], fraction of each task vector's entries kept by magnitude (the
        paper's ``k``; 0.2 by default). With ``density = 1`` and a single state this returns it.

    Returns
    -------
    dict name -> tensor.

    Example
    -------
    >>> base = {"w": torch.zeros(3)}
    >>> states = [{"w": torch.tensor([1.0, -2.0, 0.5])}, {"w": torch.tensor([3.0, 1.0, 0.0])}]
    >>> ties_merge(base, states, lam=1.0, density=1.0)["w"]
    tensor([ 2.0000, -2.0000,  0.5000])
    """
    lam = _check_lam(lam)
    density = _check_density(density)
    trimmed = [trim_top_k(t, density) for t in task_vectors(base, states)]
    return _apply(base, disjoint_mean(trimmed, elect_signs(trimmed)), lam)
