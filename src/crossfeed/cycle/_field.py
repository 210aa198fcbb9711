"""Field data that keeps arriving: one batch per domain per generation, checked and hashed.

A *field source* gives, for generation ``g``, the batch each domain collected during it
(:class:`FieldBatch`: unlabelled ``X`` plus hidden labels ``y`` for evaluation only). The cycle
holds, at generation ``g``, every batch of generations ``1..g`` (:func:`collect`). Three sources:

- :class:`SuiteField`: the suite's field split cut into ``generations`` equal batches (round 1);
- :class:`FolderField`: ``path/gen-<g>/<domain>.npz`` files (arrays ``X``, optional ``y``; read
  with ``allow_pickle=False``);
- :class:`IterableField`: any iterable whose ``i``-th item maps domains to the batches of
  generation ``i + 1`` (an ``X`` array or an ``(X, y)`` pair).

A domain joins with its first batch and must deliver one (possibly with zero rows) every
generation after that; a batch whose samples have the wrong shape, hold non-finite values or
carry labels the domain does not know is refused before anything trains. Every batch is hashed
(:func:`data_sha256`) into the generation's lineage, so a resumed or reproduced run can check that
it sees the same data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crossfeed.data import DomainSuite
from crossfeed.exceptions import EmptyDataError, ValidationError

__all__ = ["FieldBatch", "FieldSource", "FolderField", "IterableField", "SuiteField", "collect", "data_sha256"]


@dataclass(frozen=True)
class FieldBatch:
    """What one domain collected in one generation: ``X`` (unlabelled) and, optionally, hidden ``y``."""

    X: np.ndarray
    y: np.ndarray | None = None


class FieldSource(Protocol):
    """Gives each generation's new field batches: ``batches(g)`` -> domain -> :class:`FieldBatch`."""

    def batches(self, generation: int) -> Mapping[str, FieldBatch]: ...


def data_sha256(X: np.ndarray, y: np.ndarray | None = None) -> str:
    """SHA-256 of arrays' dtype, shape and bytes: equal exactly when the data is.

    Example
    -------
    >>> data_sha256(np.zeros((2, 3))) == data_sha256(np.zeros((2, 3)))
    True
    >>> data_sha256(np.zeros((2, 3))) == data_sha256(np.zeros((3, 2)))
    False
    """
    h = hashlib.sha256()
    for a in (X,) if y is None else (X, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class SuiteField:
    """The suite's own field split, cut into ``generations`` equal, disjoint batches."""

    def __init__(self, suite: DomainSuite, generations: int, domains: list[str]) -> None:
        for name in domains:
            d = suite[name]
            if d.X_field is None or len(d.X_field) < generations:
                raise EmptyDataError(
                    f"domain {name!r} has {0 if d.X_field is None else len(d.X_field)} field samples; the cycle needs "
                    f"at least one per generation ({generations}). Collect more field data or run fewer generations"
                )
        self.suite, self.generations, self.domains = suite, generations, list(domains)

    def batches(self, generation: int) -> dict[str, FieldBatch]:
        out = {}
        for name in self.domains:
            d = self.suite[name]
            n = len(d.X_field)
            lo, hi = n * (generation - 1) // self.generations, n * generation // self.generations
            out[name] = FieldBatch(d.X_field[lo:hi], None if d.y_field is None else d.y_field[lo:hi])
        return out


class FolderField:
    """Batches from files: ``path/gen-<g>/<domain>.npz`` with an array ``X`` and optionally ``y``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValidationError(
                f"field_data.path {str(self.path)!r} is not a folder; it should hold gen-001/<domain>.npz, "
                "gen-002/<domain>.npz, ... (arrays X and optionally y)"
            )

    def batches(self, generation: int) -> dict[str, FieldBatch]:
        folder = self.path / f"gen-{generation:03d}"
        out = {}
        for file in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
            try:
                with np.load(file, allow_pickle=False) as data:
                    if "X" not in data:
                        raise ValidationError(f"{file} holds no array 'X' (found: {', '.join(data.files) or 'none'})")
                    out[file.stem] = FieldBatch(data["X"], data["y"] if "y" in data else None)
            except (OSError, ValueError) as exc:  # not an npz, or object arrays that need pickle
                raise ValidationError(f"{file} cannot be read as a numeric .npz without pickle ({exc})") from exc
        return out


class IterableField:
    """Batches from an iterable: item ``i`` maps domains to generation ``i + 1``'s ``X`` or ``(X, y)``.

    Items are read once, in order, and kept (a resumed run reads past the finished generations).
    """

    def __init__(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._items: Iterator[Mapping[str, Any]] = iter(items)
        self._seen: list[dict[str, FieldBatch]] = []

    def batches(self, generation: int) -> dict[str, FieldBatch]:
        while len(self._seen) < generation:
            try:
                item = next(self._items)
            except StopIteration:
                raise EmptyDataError(
                    f"the field-data iterator ended after {len(self._seen)} generations; generation {generation} "
                    "needs its batch (give one mapping of domain -> X or (X, y) per generation)"
                ) from None
            if not isinstance(item, Mapping):
                raise ValidationError(
                    f"field-data item {len(self._seen) + 1} is a {type(item).__name__}; expected a mapping of "
                    "domain name -> X or (X, y)"
                )
            self._seen.append({name: _as_batch(value, name) for name, value in item.items()})
        return self._seen[generation - 1]


def _as_batch(value: Any, name: str) -> FieldBatch:
    if isinstance(value, FieldBatch):
        return value
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValidationError(f"field batch of {name!r}: expected X or a pair (X, y); got a tuple of {len(value)}")
        return FieldBatch(np.asarray(value[0]), None if value[1] is None else np.asarray(value[1]))
    return FieldBatch(np.asarray(value))


def check_batch(batch: FieldBatch, suite: DomainSuite, name: str, generation: int) -> FieldBatch:
    """``batch`` if it fits domain ``name`` of ``suite``; otherwise an error naming what is wrong."""
    where = f"generation {generation}, domain {name!r}"
    d = suite[name]
    X = np.asarray(batch.X)
    shape = d.X_train.shape[1:]
    if X.ndim == 0 or X.shape[1:] != shape:
        raise ValidationError(
            f"field data of {where}: samples of shape {X.shape[1:] if X.ndim else '()'}; the domain's samples have "
            f"shape {shape} ({d.n_features} features). Send rows of the same features as its training data"
        )
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValidationError(f"field data of {where}: X has dtype {X.dtype}; expected numbers")
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise ValidationError(f"field data of {where}: X holds NaN or infinite values; clean or drop those rows")
    y = None
    if batch.y is not None:
        y = np.asarray(batch.y)
        if y.shape != (len(X),):
            raise ValidationError(f"field data of {where}: y has shape {y.shape}; expected ({len(X)},), one label per row")
        unseen = np.setdiff1d(np.unique(y), d.classes)
        if unseen.size:
            raise ValidationError(
                f"field data of {where}: labels {unseen.tolist()} are not among the domain's classes "
                f"{d.classes.tolist()}; the cycle cannot learn new classes from field data"
            )
    return FieldBatch(X, y)


def collect(
    suite: DomainSuite, source: FieldSource, generation: int, candidates: list[str],
) -> tuple[DomainSuite, dict[str, dict[str, Any]]]:
    """The suite as generation ``generation`` sees it, and the lineage of its field data.

    Each domain of ``candidates`` that has delivered a batch holds, as its field split, the batches
    of generations ``1..generation`` concatenated; the others hold none (they have not joined).

    Returns
    -------
    (suite, field) with ``field[domain] = {"joined": first generation, "samples": n,
    "sha256": hash of all its field data, "batches": [hash of each generation's batch]}``.

    Raises
    ------
    ValidationError : a batch for a domain the cycle does not know, a batch that does not fit its
        domain, or a domain that delivered before and is missing now.
    """
    held: dict[str, list[FieldBatch]] = {}
    joined: dict[str, int] = {}
    for g in range(1, generation + 1):
        batches = source.batches(g)
        unknown = sorted(set(batches) - set(candidates))
        if unknown:
            raise ValidationError(
                f"field data of generation {g} names domains {unknown} that have no expert in this cycle; "
                f"expected some of {candidates}"
            )
        gone = sorted(set(held) - set(batches))
        if gone:
            raise ValidationError(
                f"field data of generation {g} has no batch for {gone}, which joined in generation "
                f"{min(joined[n] for n in gone)}; a domain that joined must deliver a batch every generation "
                "(send an empty one, X of shape (0, ...), when it collected nothing)"
            )
        for name, batch in batches.items():
            held.setdefault(name, []).append(check_batch(batch, suite, name, g))
            joined.setdefault(name, g)
    lineage: dict[str, dict[str, Any]] = {}
    domains = []
    for d in suite:
        if d.name not in held:
            domains.append(dataclasses.replace(d, X_field=None, y_field=None) if d.name in candidates else d)
            continue
        parts = held[d.name]
        X = np.concatenate([b.X for b in parts])
        labelled = all(b.y is not None for b in parts)
        y = np.concatenate([b.y for b in parts]) if labelled else None
        lineage[d.name] = {"joined": joined[d.name], "samples": len(X), "sha256": data_sha256(X, y),
                           "batches": [data_sha256(b.X, b.y) for b in parts]}
        domains.append(dataclasses.replace(d, X_field=X, y_field=y))
    return DomainSuite.from_domains(suite.name, domains, meta=suite.meta), lineage


def field_source(config: Any, suite: DomainSuite, domains: list[str], field: Any = None) -> FieldSource:
    """The field source of a run: ``field`` (an iterable or a source) when given, else the config's."""
    if field is not None:
        return field if hasattr(field, "batches") else IterableField(field)
    if config.field_data.source == "folder":
        return FolderField(config.field_data.path)
    return SuiteField(suite, config.generations, domains)
