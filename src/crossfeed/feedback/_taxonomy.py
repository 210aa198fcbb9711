"""A taxonomy of domains, given or learned by clustering the experts' behaviour (hierarchical transfer).

A taxonomy maps group names to the expert domains they hold, ``{"positional": ["shifted",
"scaled"], "distortion": ["noisy", "sheared"]}``; the general domain sits at the root, above every
group. Learning one follows the idea that tasks whose solvers behave alike should share layers
(Zamir et al. 2018, "Taskonomy", arXiv 1804.08328; Standley et al. 2020, "Which Tasks Should Be
Learned Together", arXiv 1905.07553; Lu et al. 2017, "Fully-adaptive Feature Sharing", arXiv
1611.05377, who cluster tasks by how alike their errors are): every expert predicts on a shared
probe set (:func:`behaviour_matrix`), the experts' pairwise distances (:func:`expert_distances`,
mean Jensen-Shannon divergence or disagreement rate) are clustered with average-linkage
agglomerative clustering (:func:`learn_taxonomy`). Pure functions over arrays, no training.

Example
-------
>>> p = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.1, 0.9]]])   # 3 experts, 1 probe row, 2 classes
>>> learn_taxonomy(expert_distances(p), ["a", "b", "c"], n_groups=2)
{'group_1': ['a', 'b'], 'group_2': ['c']}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from crossfeed._validation import check_int
from crossfeed.exceptions import ValidationError

__all__ = ["behaviour_matrix", "check_taxonomy", "expert_distances", "group_index", "learn_taxonomy"]

#: The distances :func:`expert_distances` computes.
DISTANCES = ("js", "disagreement")


def behaviour_matrix(experts: Mapping[str, Any], X_probe: Any) -> np.ndarray:
    """Every expert's predicted class distribution on the shared probe rows.

    Parameters
    ----------
    experts : mapping domain name -> fitted classifier with ``predict_proba`` (same classes).
    X_probe : array of shape (n_probe, n_features), e.g. the pooled field data of the domains.

    Returns
    -------
    array of shape (n_experts, n_probe, n_classes), experts in the mapping's order.
    """
    if not isinstance(experts, Mapping) or not experts:
        raise ValidationError(f"behaviour_matrix expects a non-empty mapping domain -> expert; got {experts!r}")
    if len(X_probe) == 0:
        raise ValidationError("behaviour_matrix got an empty probe set; pass at least one row (e.g. pooled field data)")
    missing = [name for name, e in experts.items() if not hasattr(e, "predict_proba")]
    if missing:
        raise ValidationError(f"the experts of {missing} have no predict_proba; a behaviour matrix needs class "
                              "probabilities (fit them, or wrap them in a probabilistic classifier)")
    probs = [np.asarray(e.predict_proba(X_probe), dtype=np.float64) for e in experts.values()]
    shapes = {p.shape for p in probs}
    if len(shapes) != 1:
        raise ValidationError(f"the experts' probabilities differ in shape ({sorted(shapes)}); experts must share "
                              "one label set")
    return np.stack(probs)


def expert_distances(behaviour: Any, metric: str = "js") -> np.ndarray:
    """Pairwise distances between the experts' behaviour, averaged over the probe rows.

    ``"js"``: mean Jensen-Shannon divergence (base 2, so in [0, 1]) between the experts' class
    distributions; ``"disagreement"``: share of probe rows where their top classes differ.

    Parameters
    ----------
    behaviour : array of shape (n_experts, n_probe, n_classes) of probabilities (rows sum to 1).
    metric : one of ``DISTANCES``.

    Returns
    -------
    symmetric array of shape (n_experts, n_experts) with a zero diagonal.

    Example
    -------
    >>> p = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]])
    >>> expert_distances(p).round(3).tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    >>> expert_distances(p, "disagreement").tolist()[0]
    [0.0, 1.0, 0.0]
    """
    p = np.asarray(behaviour, dtype=np.float64)
    if p.ndim != 3 or 0 in p.shape:
        raise ValidationError(f"behaviour must have shape (n_experts, n_probe, n_classes), none of them 0; got "
                              f"{p.shape}. Build it with behaviour_matrix(experts, X_probe)")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=2), 1.0, atol=1e-4):
        raise ValidationError("behaviour must hold probabilities (finite, >= 0, each row summing to 1); "
                              "pass predict_proba outputs, not logits")
    if metric == "js":
        a, b = p[:, None], p[None, :]
        m = (a + b) / 2
        return np.clip((_kl(a, m) + _kl(b, m)) / 2, 0.0, 1.0).mean(axis=2)
    if metric == "disagreement":
        top = p.argmax(axis=2)
        return (top[:, None] != top[None, :]).mean(axis=2)
    raise ValidationError(f"metric must be one of {DISTANCES}; got {metric!r}")


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) in bits over the last axis (0 log 0 = 0)."""
    p, q = np.broadcast_arrays(p, q)
    ratio = np.divide(p, q, out=np.ones_like(q), where=p > 0)
    return (p * np.log2(ratio)).sum(axis=-1)


def learn_taxonomy(distances: Any, domains: Sequence[str], *, n_groups: int | None = None,
                   threshold: float | None = None) -> dict[str, list[str]]:
    """Groups of domains by average-linkage agglomerative clustering of the experts' distances.

    Give exactly one of ``n_groups`` (cut the tree into that many groups) and ``threshold`` (merge
    while the average distance between two clusters is at most it). Groups are named
    ``group_1, group_2, ...`` in the order of their first domain in ``domains``, and list their
    domains in that order, so the result does not depend on cluster labels.

    Parameters
    ----------
    distances : symmetric array of shape (n_domains, n_domains), zero diagonal (:func:`expert_distances`).
    domains : the domain of each row, in order.

    Returns
    -------
    dict group name -> list of domain names.
    """
    d = np.asarray(distances, dtype=np.float64)
    names = list(domains)
    if d.ndim != 2 or d.shape != (len(names), len(names)) or not names:
        raise ValidationError(f"distances must be a square array with one row per domain ({len(names)} domains "
                              f"{names}); got shape {d.shape}")
    if not np.isfinite(d).all() or (d < 0).any() or not np.allclose(d, d.T) or np.diag(d).any():
        raise ValidationError("distances must be finite, >= 0, symmetric, with a zero diagonal "
                              "(use expert_distances)")
    if (n_groups is None) == (threshold is None):
        raise ValidationError(f"learn_taxonomy needs exactly one of n_groups and threshold; got n_groups={n_groups!r}, "
                              f"threshold={threshold!r}")
    if n_groups is not None and check_int(n_groups, "n_groups", 1) > len(names):
        raise ValidationError(f"n_groups={n_groups} but there are only {len(names)} domains ({names}) to group; "
                              f"choose n_groups <= {len(names)}")
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValidationError(f"threshold must be a finite number >= 0; got {threshold!r}")
    labels = _cluster(d, n_groups, threshold)
    order = list(dict.fromkeys(labels))
    return {f"group_{i + 1}": [n for n, g in zip(names, labels, strict=True) if g == label]
            for i, label in enumerate(order)}


def _cluster(d: np.ndarray, n_groups: int | None, threshold: float | None) -> list[int]:
    """Cluster label of every row (average linkage)."""
    if len(d) == 1:
        return [0]
    tree = linkage(squareform(d, checks=False), method="average")
    if n_groups is not None:
        return fcluster(tree, t=n_groups, criterion="maxclust").tolist()
    return fcluster(tree, t=threshold, criterion="distance").tolist()


def check_taxonomy(taxonomy: Any, domains: Sequence[str], general: str) -> dict[str, list[str]]:
    """``taxonomy`` checked against the expert ``domains``; a normalised copy (lists of names).

    Every domain must sit in exactly one group, no group may be empty, names are strings, and the
    ``general`` domain is not in any group: it is the root, served by the general head.

    Example
    -------
    >>> check_taxonomy({"g": ["a", "b"]}, ["a", "b"], "default")
    {'g': ['a', 'b']}
    >>> check_taxonomy({"g": ["a"]}, ["a", "b"], "default")
    Traceback (most recent call last):
    ...
    crossfeed.exceptions.ValidationError: taxonomy: domain 'b' is in no group; every expert domain must be in exactly one group (groups: {'g': ['a']})
    """
    if not isinstance(taxonomy, Mapping) or not taxonomy:
        raise ValidationError(f"taxonomy must be a non-empty mapping group name -> list of domains, e.g. "
                              f"{{'group_1': {list(domains)[:2]}}}; got {taxonomy!r}")
    out: dict[str, list[str]] = {}
    for group, members in taxonomy.items():
        if not isinstance(group, str):
            raise ValidationError(f"taxonomy: group names must be strings; got {group!r}")
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ValidationError(f"taxonomy: group {group!r} must be a non-empty list of domain names; got {members!r}")
        bad = [m for m in members if not isinstance(m, str)]
        if bad:
            raise ValidationError(f"taxonomy: group {group!r} holds {bad[0]!r}; domain names must be strings")
        out[group] = list(members)
    placed = [m for members in out.values() for m in members]
    for name in placed:
        if name == general:
            raise ValidationError(f"taxonomy: the general domain {general!r} is at the root (the general head), not in "
                                  f"a group; remove it from the taxonomy")
        if name not in domains:
            raise ValidationError(f"taxonomy: domain {name!r} has no expert; the expert domains are {list(domains)}")
        if placed.count(name) > 1:
            raise ValidationError(f"taxonomy: domain {name!r} is in more than one group; put it in exactly one")
    for name in domains:
        if name not in placed:
            raise ValidationError(f"taxonomy: domain {name!r} is in no group; every expert domain must be in exactly "
                                  f"one group (groups: {out})")
    return out


def group_index(taxonomy: Mapping[str, Sequence[str]], domains: Sequence[str]) -> list[int]:
    """The index (in the taxonomy's order) of each domain's group.

    Example
    -------
    >>> group_index({"g1": ["b"], "g2": ["a", "c"]}, ["a", "b", "c"])
    [1, 0, 1]
    """
    of = {d: i for i, members in enumerate(taxonomy.values()) for d in members}
    return [of[d] for d in domains]
