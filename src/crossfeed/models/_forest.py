"""A meta decision forest: split structure learnt across domains, leaves refitted in k shots.

:class:`MetaForest` grows an extremely randomised forest (scikit-learn's ``ExtraTreesClassifier``)
on the pooled data of the source domains. ``adapt(X, y)`` specialises it to a new domain from a
few labelled samples, in two moves:

1. **leaf refit**: each leaf's class distribution becomes a Bayesian update of the source one,
   ``p = (m * q_source + counts_new) / (m + n_new)``: leaves the new samples reach move toward
   them, the others keep what the sources taught;
2. **fresh trees**: a forest grown on the new samples alone, mixed in with weight ``w``.

``m`` and ``w`` are meta-learnt when ``fit`` gets domain labels: for each source domain in turn, a
forest of the other sources adapts to ``k`` shots of it for every candidate (m, w), and the pair
with the best held-out accuracy is kept per ``k`` (``adaptation_table_``). More shots usually want
a smaller ``m`` and a larger ``w``; the table learns how much, for this family of domains.

A fitted (and adapted) forest is plain arrays: :meth:`MetaForest.state` gives them (every tree's
children, split features, thresholds and leaf values, the source leaf counts, the adapted leaf
tables) and :meth:`MetaForest.from_state` rebuilds a forest that predicts and adapts exactly as
the saved one; :func:`crossfeed.models.save_model` writes them as safetensors + JSON, no pickle.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.utils.validation import check_is_fitted

from crossfeed._validation import check_features, check_labels, encode_labels, numeric_array
from crossfeed.exceptions import LabelMismatchError, ValidationError

__all__ = ["ArrayForest", "MetaForest", "sample_shots"]


def sample_shots(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` samples of every class of ``y`` (without replacement)."""
    y = np.asarray(y)
    out = []
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        if len(where) < k:
            raise ValidationError(
                f"k={k} shots per class, but class {c!r} has only {len(where)} samples here; choose k <= {len(where)}"
            )
        out.append(rng.choice(where, size=k, replace=False))
    return np.concatenate(out)


class MetaForest(ClassifierMixin, BaseEstimator):
    """Extremely randomised trees over the source domains that adapt to a new domain in k shots.

    Parameters
    ----------
    n_estimators, max_features, min_samples_leaf : of the source forest (``ExtraTreesClassifier``).
    n_fresh : trees of the forest grown on the new domain's samples in :meth:`adapt`.
    prior_strengths : candidate ``m`` (pseudo-counts of the source leaf distribution).
    mixtures : candidate ``w`` (weight of the fresh trees).
    meta_shots : shots per class at which (m, w) are meta-learnt.
    meta_repeats : k-shot draws per held-out source domain and k.
    prior_strength, mixture : used when ``fit`` gets no domain labels (nothing to meta-learn from).
    random_state : seeds trees and shot draws.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = (X[:, 0] > 0).astype(int); d = np.repeat([0, 1, 2], 100)
    >>> forest = MetaForest(n_estimators=20, n_fresh=10, meta_shots=(2,), random_state=0).fit(X, y, domains=d)
    >>> sorted(forest.adaptation_table_)
    [2]
    >>> forest.adapt(X[:4], y[:4]).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        n_estimators: int = 200,
        *,
        max_features: str | float | None = "sqrt",
        min_samples_leaf: int = 1,
        n_fresh: int = 50,
        prior_strengths: Sequence[float] = (0.3, 1.0, 3.0, 10.0),
        mixtures: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        meta_shots: Sequence[int] = (1, 5, 10, 50),
        meta_repeats: int = 1,
        prior_strength: float = 1.0,
        mixture: float = 0.0,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.n_fresh = n_fresh
        self.prior_strengths = prior_strengths
        self.mixtures = mixtures
        self.meta_shots = meta_shots
        self.meta_repeats = meta_repeats
        self.prior_strength = prior_strength
        self.mixture = mixture
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting on the sources
    def _forest(self, n: int, seed: int) -> ExtraTreesClassifier:
        return ExtraTreesClassifier(n_estimators=n, max_features=self.max_features,
                                    min_samples_leaf=self.min_samples_leaf, random_state=seed)

    def _check_params(self) -> None:
        if int(self.n_estimators) < 1 or int(self.n_fresh) < 1 or int(self.meta_repeats) < 1:
            raise ValidationError("n_estimators, n_fresh and meta_repeats must be >= 1")
        if not self.prior_strengths or any(m < 0 for m in self.prior_strengths) or self.prior_strength < 0:
            raise ValidationError(f"prior strengths must be >= 0 (and at least one), got {self.prior_strengths}")
        if not self.mixtures or any(not 0 <= w <= 1 for w in (*self.mixtures, self.mixture)):
            raise ValidationError(f"mixtures must lie in [0, 1] (and at least one), got {self.mixtures}")
        if not self.meta_shots or any(int(k) < 1 for k in self.meta_shots):
            raise ValidationError(f"meta_shots must be positive shot counts, got {self.meta_shots}")

    def fit(self, X: Any, y: Any, domains: Any = None) -> MetaForest:
        """Grow the source forest on ``X, y``; with ``domains`` (a domain label per row, >= 2
        domains) also meta-learn (m, w) per number of shots."""
        self._check_params()
        X = _flat(check_features(numeric_array(X), owner='MetaForest'))
        y = check_labels(y, len(X))
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValidationError(f"MetaForest needs at least 2 classes in y, got {self.classes_.tolist()}")
        codes = encode_labels(y, self.classes_)
        self.n_features_in_ = X.shape[1]
        seed = 0 if self.random_state is None else int(self.random_state)
        self.forest_ = self._forest(int(self.n_estimators), seed).fit(X, codes)
        self.source_counts_ = _leaf_counts(self.forest_, X, codes, len(self.classes_))
        self.adaptation_table_ = {}
        if domains is not None:
            domains = np.asarray(domains)
            if len(domains) != len(X):
                raise ValidationError(f"domains has {len(domains)} labels for {len(X)} rows; give one per row")
            if len(np.unique(domains)) >= 2:
                self.adaptation_table_ = self._meta_learn(X, codes, domains, seed)
        return self

    def _meta_learn(self, X: np.ndarray, codes: np.ndarray, domains: np.ndarray, seed: int) -> dict[int, dict[str, float]]:
        rng = np.random.default_rng(seed)
        n_classes = len(self.classes_)
        grid = [(m, w) for m in self.prior_strengths for w in self.mixtures]
        scores = {int(k): np.zeros(len(grid)) for k in self.meta_shots}
        counts = {int(k): 0 for k in self.meta_shots}
        for d in np.unique(domains):
            held = domains == d
            rest = ~held
            if len(np.unique(codes[rest])) < n_classes:
                continue  # the other sources must know every class
            inner = self._forest(max(1, int(self.n_estimators) // 2), seed + 1).fit(X[rest], codes[rest])
            source = _leaf_counts(inner, X[rest], codes[rest], n_classes)
            Xd, yd = X[held], codes[held]
            for k in self.meta_shots:
                k = int(k)
                if np.bincount(yd, minlength=n_classes).min() <= k:
                    continue  # not enough samples in this domain to hold k shots out
                for _ in range(int(self.meta_repeats)):
                    shots = sample_shots(yd, k, rng)
                    test = np.setdiff1d(np.arange(len(yd)), shots)
                    fresh = self._forest(int(self.n_fresh), int(rng.integers(2**31))).fit(Xd[shots], yd[shots])
                    fresh_p = _aligned_proba(fresh, Xd[test], n_classes)
                    leaves_new, leaves_test = inner.apply(Xd[shots]), inner.apply(Xd[test])
                    q, c = _gathered(source, leaves_new, yd[shots], leaves_test)
                    refit = {m: _posterior(q, c, m).mean(0) for m in self.prior_strengths}
                    for i, (m, w) in enumerate(grid):
                        p = (1 - w) * refit[m] + w * fresh_p
                        scores[k][i] += float((p.argmax(1) == yd[test]).mean())
                    counts[k] += 1
        table = {}
        for k, s in scores.items():
            if counts[k]:
                m, w = grid[int(np.argmax(s))]
                table[k] = {"prior_strength": float(m), "mixture": float(w), "meta_accuracy": float(s.max() / counts[k])}
        return table

    # ------------------------------------------------------------------ adapting to a new domain
    def adapt(self, X: Any, y: Any) -> MetaForest:
        """A copy specialised to a new domain from its labelled samples ``X, y`` (the source
        forest is left as it is, so one fitted forest adapts to many domains)."""
        check_is_fitted(self, "forest_")
        X = _flat(check_features(numeric_array(X), n_features=self.n_features_in_, owner='MetaForest'))
        y = check_labels(y, len(X))
        unknown = sorted(set(np.unique(y).tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise LabelMismatchError(
                f"the new domain has classes {unknown} the sources never showed (known: {self.classes_.tolist()}); "
                "a forest can only refit leaves over the classes it was grown with"
            )
        codes = encode_labels(y, self.classes_)
        per_class = np.bincount(codes, minlength=len(self.classes_))
        k = int(np.median(per_class[per_class > 0]))
        m, w = self.prior_strength, self.mixture
        if self.adaptation_table_:
            nearest = min(self.adaptation_table_, key=lambda s: abs(np.log(s) - np.log(max(k, 1))))
            m, w = self.adaptation_table_[nearest]["prior_strength"], self.adaptation_table_[nearest]["mixture"]
        adapted = copy.copy(self)
        adapted.adapt_leaves_, adapted.adapt_codes_ = self.forest_.apply(X), codes  # what the refit read (saved)
        adapted.leaf_proba_ = _leaf_tables(self.source_counts_, adapted.adapt_leaves_, codes, m)
        adapted.fresh_ = self._forest(int(self.n_fresh), 0 if self.random_state is None else int(self.random_state) + 7).fit(X, codes) if w > 0 else None
        adapted.adapted_with_ = {"shots_per_class": k, "prior_strength": float(m), "mixture": float(w), "n_samples": len(X)}
        return adapted

    # ------------------------------------------------------------------ predicting
    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "forest_")
        X = _flat(check_features(numeric_array(X), n_features=self.n_features_in_, owner='MetaForest'))
        leaves = self.forest_.apply(X)
        tables = getattr(self, "leaf_proba_", None)
        if tables is None:  # not adapted: the source forest
            tables = [_normalised(c) for c in self.source_counts_]
        p = np.mean([t[leaves[:, i]] for i, t in enumerate(tables)], axis=0)
        fresh = getattr(self, "fresh_", None)
        if fresh is not None:
            w = self.adapted_with_["mixture"]
            p = (1 - w) * p + w * _aligned_proba(fresh, X, len(self.classes_))
        return p

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    # ------------------------------------------------------------------ as arrays
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)``: everything a fitted forest predicts and adapts with, as named arrays
        and JSON values (see :meth:`from_state`). Compact: the source trees' structure (no leaf
        values: the leaf tables replace them), the source leaf counts as sparse (leaf, class,
        count) triplets, and for an adapted forest the leaves and classes of the rows it was
        adapted on, from which :meth:`from_state` recomputes the refitted leaf tables exactly."""
        check_is_fitted(self, "forest_")
        arrays: dict[str, np.ndarray] = {}
        for t, tree in enumerate(ArrayForest.of(self.forest_).trees):
            for key in ("left", "right", "feature"):
                arrays[f"forest.{t}.{key}"] = np.asarray(tree[key], dtype=np.int32)
            arrays[f"forest.{t}.threshold"] = np.asarray(tree["threshold"], dtype=np.float64)
        for t, counts in enumerate(self.source_counts_):
            leaf, cls = np.nonzero(counts)
            arrays[f"source.{t}.leaf"], arrays[f"source.{t}.class"] = leaf.astype(np.int32), cls.astype(np.int32)
            arrays[f"source.{t}.count"] = counts[leaf, cls].astype(np.int64)  # counts of samples: integers
        meta: dict[str, Any] = {"trees": len(self.source_counts_), "n_features_in": int(self.n_features_in_),
                                "nodes": [int(c.shape[0]) for c in self.source_counts_],
                                "adaptation_table": {str(k): v for k, v in self.adaptation_table_.items()}}
        if getattr(self, "leaf_proba_", None) is not None:
            arrays["adapt.leaves"] = np.asarray(self.adapt_leaves_, dtype=np.int64)
            arrays["adapt.codes"] = np.asarray(self.adapt_codes_, dtype=np.int64)
            meta["adapted_with"] = dict(self.adapted_with_)
            fresh = getattr(self, "fresh_", None)
            if fresh is not None:
                fresh = ArrayForest.of(fresh)
                for t, tree in enumerate(fresh.trees):
                    for key in ArrayForest.KEYS:
                        arrays[f"fresh.{t}.{key}"] = tree[key]
                arrays["fresh.classes"] = np.asarray(fresh.classes_, dtype=np.int64)
                meta["fresh_trees"] = len(fresh.trees)
        # C order throughout: safetensors writes the raw buffer (scikit-learn's apply returns Fortran order)
        return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta

    @classmethod
    def from_state(cls, params: dict[str, Any], classes: np.ndarray, arrays: dict[str, np.ndarray],
                   meta: dict[str, Any]) -> MetaForest:
        """The forest :meth:`state` described (its trees as an :class:`ArrayForest`)."""
        model = cls(**params)
        n, k = int(meta["trees"]), len(classes)
        model.classes_, model.n_features_in_ = np.asarray(classes), int(meta["n_features_in"])
        model.forest_ = ArrayForest([{key: arrays[f"forest.{t}.{key}"] for key in ("left", "right", "feature",
                                                                                  "threshold")} for t in range(n)],
                                    np.arange(k))
        model.source_counts_ = []
        for t, nodes in enumerate(meta["nodes"]):
            counts = np.zeros((int(nodes), k))
            counts[arrays[f"source.{t}.leaf"], arrays[f"source.{t}.class"]] = arrays[f"source.{t}.count"]
            model.source_counts_.append(counts)
        model.adaptation_table_ = {int(s): dict(v) for s, v in meta.get("adaptation_table", {}).items()}
        if "adapted_with" in meta:
            model.adapted_with_ = dict(meta["adapted_with"])
            model.adapt_leaves_, model.adapt_codes_ = arrays["adapt.leaves"], arrays["adapt.codes"]
            model.leaf_proba_ = _leaf_tables(model.source_counts_, model.adapt_leaves_, model.adapt_codes_,
                                             model.adapted_with_["prior_strength"])
            model.fresh_ = None
            if "fresh_trees" in meta:
                trees = [{key: arrays[f"fresh.{t}.{key}"] for key in ArrayForest.KEYS}
                         for t in range(int(meta["fresh_trees"]))]
                model.fresh_ = ArrayForest(trees, arrays["fresh.classes"])
        return model


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1)


class ArrayForest:
    """A fitted tree ensemble held as arrays: ``apply`` and ``predict_proba`` as scikit-learn's
    forest computes them (rows as float32 against float64 thresholds, leaf values normalised, the
    mean over trees). What a loaded :class:`MetaForest` predicts with.

    Example
    -------
    >>> X, y = np.random.default_rng(0).normal(size=(60, 3)), np.arange(60) % 2
    >>> forest = ExtraTreesClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> arrays = ArrayForest.of(forest)
    >>> bool((arrays.apply(X) == forest.apply(X)).all()), np.allclose(arrays.predict_proba(X), forest.predict_proba(X))
    (True, True)
    """

    KEYS = ("left", "right", "feature", "threshold", "value")

    def __init__(self, trees: Sequence[dict[str, np.ndarray]], classes: np.ndarray) -> None:
        self.trees, self.classes_ = list(trees), np.asarray(classes)

    @classmethod
    def of(cls, forest: Any) -> ArrayForest:
        if isinstance(forest, ArrayForest):
            return forest
        trees = [{"left": t.children_left.copy(), "right": t.children_right.copy(), "feature": t.feature.copy(),
                  "threshold": t.threshold.copy(), "value": t.value[:, 0, :].copy()}
                 for t in (e.tree_ for e in forest.estimators_)]
        return cls(trees, forest.classes_)

    def apply(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        out = np.empty((len(X), len(self.trees)), dtype=np.intp)
        for j, t in enumerate(self.trees):
            left, right, feature, threshold = (np.asarray(t[k]) for k in ("left", "right", "feature", "threshold"))
            node = np.zeros(len(X), dtype=np.intp)
            active = np.flatnonzero(left[node] != -1)
            while len(active):
                n = node[active]
                node[active] = np.where(X[active, feature[n]] <= threshold[n], left[n], right[n])
                active = active[left[node[active]] != -1]
            out[:, j] = node
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        leaves = self.apply(X)
        total = np.zeros((len(leaves), len(self.classes_)))
        for j, t in enumerate(self.trees):
            v = np.asarray(t["value"], dtype=np.float64)[leaves[:, j]]
            norm = v.sum(axis=1, keepdims=True)
            total += v / np.where(norm == 0, 1.0, norm)
        return total / len(self.trees)


def _counts(leaves: np.ndarray, codes: np.ndarray, n_nodes: int, n_classes: int) -> np.ndarray:
    """The (nodes, classes) table of how many samples of each class reach each node of one tree."""
    table = np.zeros((n_nodes, n_classes))
    np.add.at(table, (leaves, codes), 1)
    return table


def _normalised(counts: np.ndarray) -> np.ndarray:
    """Rows of class counts as distributions (an empty row stays zero)."""
    return counts / np.maximum(counts.sum(-1, keepdims=True), 1)


def _posterior(q: np.ndarray, c: np.ndarray, m: float) -> np.ndarray:
    """The leaf refit ``(m * q + c) / (m + n)``; ``q`` where there is neither prior nor data."""
    n = m + c.sum(-1, keepdims=True)
    return np.where(n > 0, (m * q + c) / np.where(n > 0, n, 1), q)


def _leaf_counts(forest: ExtraTreesClassifier, X: np.ndarray, codes: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Per tree, the (nodes, classes) table of training samples reaching each leaf."""
    leaves = forest.apply(X)
    return [_counts(leaves[:, t], codes, est.tree_.node_count, n_classes) for t, est in enumerate(forest.estimators_)]


def _leaf_tables(source: list[np.ndarray], leaves_new: np.ndarray, codes: np.ndarray, m: float) -> list[np.ndarray]:
    """Per tree, every leaf's refitted distribution (q: the source distribution)."""
    return [_posterior(_normalised(counts), _counts(leaves_new[:, t], codes, *counts.shape), m)
            for t, counts in enumerate(source)]


def _gathered(source: list[np.ndarray], leaves_new: np.ndarray, codes: np.ndarray,
              leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tree, at the rows whose leaves are ``leaves``: the source leaf distribution and the new
    samples' counts in that leaf, stacked as (trees, rows, classes), so every candidate ``m``
    costs one :func:`_posterior` instead of rebuilding the tables."""
    qs, cs = [], []
    for t, counts in enumerate(source):
        qs.append(_normalised(counts[leaves[:, t]]))
        cs.append(_counts(leaves_new[:, t], codes, *counts.shape)[leaves[:, t]])
    return np.stack(qs), np.stack(cs)


def _aligned_proba(forest: ExtraTreesClassifier, X: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba over all ``n_classes`` codes (a forest grown on few samples may miss some)."""
    p = np.zeros((len(X), n_classes))
    p[:, forest.classes_.astype(int)] = forest.predict_proba(X)
    return p
