"""Domains and suites: the data every verb works on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from crossfeed.exceptions import (
    EmptyDataError,
    LabelMismatchError,
    UnknownNameError,
    ValidationError,
)

SPLITS = ("train", "val", "test")
#: Default shares of a domain's samples going to train / val / test / field (every built-in suite).
SPLIT_FRACTIONS = {"train": 0.5, "val": 0.125, "test": 0.25, "field": 0.125}


def stratified_split(strata: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Positions of ``strata`` split into train / val / test / field in the shares of ``SPLIT_FRACTIONS``,
    within every stratum (a class, a star rating), each split shuffled.

    Example
    -------
    >>> parts = stratified_split(np.repeat([0, 1], 8), np.random.default_rng(0))
    >>> {k: len(v) for k, v in parts.items()}
    {'train': 8, 'val': 2, 'test': 4, 'field': 2}
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SPLIT_FRACTIONS}
    for value in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == value))
        bounds = np.cumsum([round(f * len(idx)) for f in SPLIT_FRACTIONS.values()])[:-1]
        for key, chunk in zip(SPLIT_FRACTIONS, np.split(idx, bounds)):
            parts[key].append(chunk)
    return {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}


@dataclass(frozen=True)
class Domain:
    """One domain: labelled train / val / test arrays and an optional unlabelled ``field`` split.

    Parameters
    ----------
    name : str
    X_train, y_train, X_val, y_val, X_test, y_test : arrays
        Features of shape (n_samples, ...) and integer labels of shape (n_samples,).
    X_field : array of shape (n_field, ...), optional
        Unlabelled data collected in the field (what a deployed domain model sees).
    y_field : array of shape (n_field,), optional
        Hidden labels of the field data, for *evaluation only* (e.g. the accuracy of pseudo-labels);
        training code must never read them.
    meta : dict
        Free-form description (generator arguments, source files, ...).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    X_field: np.ndarray | None = None
    y_field: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in SPLITS:
            X, y = self.split(split)
            if len(X) == 0:
                raise EmptyDataError(
                    f"domain {self.name!r}: the {split} split is empty; every domain needs samples in "
                    f"train, val and test"
                )
            if len(X) != len(y):
                raise ValidationError(
                    f"domain {self.name!r}: X_{split} has {len(X)} samples but y_{split} has {len(y)}"
                )
            if X.shape[1:] != self.X_train.shape[1:]:
                raise ValidationError(
                    f"domain {self.name!r}: X_{split} has per-sample shape {X.shape[1:]}, "
                    f"X_train has {self.X_train.shape[1:]}; all splits need the same shape"
                )
        if self.X_field is not None and self.y_field is not None and len(self.X_field) != len(self.y_field):
            raise ValidationError(f"domain {self.name!r}: X_field and y_field differ in length")

    @classmethod
    def from_indices(cls, name: str, X: np.ndarray, y: np.ndarray, indices: dict[str, np.ndarray],
                     meta: dict | None = None) -> Domain:
        """A domain whose train / val / test / field rows are ``X[indices[split]]`` (e.g. from :func:`stratified_split`)."""
        rows = {k: indices[k] for k in SPLIT_FRACTIONS}
        return cls(
            name=name,
            X_train=X[rows["train"]], y_train=y[rows["train"]],
            X_val=X[rows["val"]], y_val=y[rows["val"]],
            X_test=X[rows["test"]], y_test=y[rows["test"]],
            X_field=X[rows["field"]], y_field=y[rows["field"]],
            meta=dict(meta or {}),
        )

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(X, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if which not in SPLITS:
            raise ValidationError(f"unknown split {which!r}; expected one of {SPLITS}")
        return getattr(self, f"X_{which}"), getattr(self, f"y_{which}")

    @property
    def classes(self) -> np.ndarray:
        return np.unique(np.concatenate([self.y_train, self.y_val, self.y_test]))

    @property
    def n_features(self) -> int:
        return int(np.prod(self.X_train.shape[1:]))

    def __repr__(self) -> str:
        n_field = 0 if self.X_field is None else len(self.X_field)
        return (
            f"Domain({self.name!r}, train={len(self.X_train)}, val={len(self.X_val)}, "
            f"test={len(self.X_test)}, field={n_field}, shape={self.X_train.shape[1:]})"
        )


@dataclass(frozen=True)
class DomainSuite:
    """Domains that share one label space, with pooled views.

    Example
    -------
    >>> from crossfeed.data import load_suite
    >>> suite = load_suite("mnist1d", seed=0, n_per_domain=400)   # doctest: +SKIP
    >>> X, y = suite.pooled("train")                               # doctest: +SKIP
    """

    name: str
    domains: tuple[Domain, ...]
    classes: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_domains(cls, name: str, domains: Sequence[Domain], meta: dict | None = None) -> DomainSuite:
        """Build a suite, checking the domains share a feature shape and a label space."""
        if not domains:
            raise EmptyDataError(f"suite {name!r} has no domains; pass at least one Domain")
        names = [d.name for d in domains]
        if len(set(names)) != len(names):
            raise ValidationError(f"suite {name!r}: domain names must be unique, got {names}")
        shape = domains[0].X_train.shape[1:]
        for d in domains[1:]:
            if d.X_train.shape[1:] != shape:
                raise ValidationError(
                    f"suite {name!r}: domain {d.name!r} has samples of shape {d.X_train.shape[1:]}, "
                    f"domain {domains[0].name!r} has {shape}; a suite needs one input shape"
                )
        classes = np.unique(np.concatenate([d.classes for d in domains]))
        for d in domains:
            missing = np.setdiff1d(classes, np.unique(d.y_train))
            if len(missing):
                raise LabelMismatchError(
                    f"suite {name!r}: domain {d.name!r} has no training samples of classes "
                    f"{missing.tolist()}; every domain must cover the shared label space {classes.tolist()}"
                )
        return cls(name=name, domains=tuple(domains), classes=classes, meta=dict(meta or {}))

    def __getitem__(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise UnknownNameError(f"suite {self.name!r} has no domain {name!r}; domains: {self.names}")

    def __iter__(self) -> Iterator[Domain]:
        return iter(self.domains)

    def __len__(self) -> int:
        return len(self.domains)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    @property
    def general_domain(self) -> str:
        """The general domain (the large model's home ground): ``meta["general_domain"]``, else the first domain."""
        return self.meta.get("general_domain", self.names[0])

    def pooled(self, which: str, domains: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Concatenate one split over ``domains`` (all by default)."""
        chosen = [self[n] for n in domains] if domains is not None else list(self.domains)
        parts = [d.split(which) for d in chosen]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def pooled_with_domain(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`pooled`, plus the integer domain index of every sample."""
        X, y = self.pooled(which)
        idx = np.concatenate([np.full(len(d.split(which)[1]), i) for i, d in enumerate(self.domains)])
        return X, y, idx

    def __repr__(self) -> str:
        return f"DomainSuite({self.name!r}, domains={self.names}, classes={len(self.classes)})"
