"""The movielens suite: where the loader looks, what it reads, how it splits.

Most tests run on a small synthetic MovieLens written in both formats (recbole wheel, GroupLens
folder) in a temporary folder: MovieLens itself may not be redistributed. One test reads the real
wheel and skips, saying how to get it, only when the wheel is absent.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from crossfeed.data import load_suite
from crossfeed.data._movielens import (
    AGE_BANDS,
    COLUMNS,
    GENRES,
    OCCUPATIONS,
    WHEEL_MEMBERS,
    WHEEL_NAME,
    MissingDataError,
    find_movielens,
    load_movielens,
    pooled_ratings,
)
from crossfeed.exceptions import CrossfeedError, ValidationError

N_USERS, N_ITEMS = 48, 60


def _synthetic(seed: int = 0) -> dict[str, list]:
    """Users spread over every age band, items with genres, 40 ratings per user."""
    rng = np.random.default_rng(seed)
    ages = [(15, 22, 28, 31, 38, 41, 50, 63)[k % 8] for k in range(N_USERS)]
    users = [(u + 1, ages[u], "MF"[u % 2], OCCUPATIONS[u % len(OCCUPATIONS)]) for u in range(N_USERS)]
    items = [(i + 1, [GENRES[1 + i % 18], GENRES[1 + (i * 7) % 18]]) for i in range(N_ITEMS)]
    ratings = []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, size=40, replace=False):
            ratings.append((u + 1, int(i) + 1, int(rng.integers(1, 6)), 880000000 + len(ratings)))
    return {"users": users, "items": items, "ratings": ratings}


def _write_wheel(path, data, *, drop: str | None = None):
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in data["ratings"])
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
        f"{u}\t{a}\t{g}\t{o}\t00000\n" for u, a, g, o in data["users"])
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
        f"{i}\tMovie {i}\t1995\t{' '.join(sorted(set(g)))}\n" for i, g in data["items"])
    with zipfile.ZipFile(path, "w") as archive:
        for key, text in {"ratings": inter, "users": user, "items": item}.items():
            if key != drop:
                archive.writestr(WHEEL_MEMBERS[key], text)
        archive.writestr("recbole/__init__.py", "")
    return path


def _write_grouplens(folder, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in data["ratings"]))
    (folder / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|00000\n" for u, a, g, o in data["users"]))
    lines = []
    for i, genres in data["items"]:
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        lines.append(f"{i}|Movie {i} (1995)|01-Jan-1995||http://example.org|{flags}\n")
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    return folder


@pytest.fixture
def no_default_places(tmp_path, monkeypatch):
    """No env var and an empty cache: only explicit arguments can find the data."""
    monkeypatch.delenv("CROSSFEED_RECBOLE_WHEEL", raising=False)
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def wheel(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    return _write_wheel(folder / WHEEL_NAME, _synthetic())


def test_suite_layout_labels_and_ratings(no_default_places, wheel):
    suite = load_movielens(seed=0, wheel=wheel)
    assert suite.names == list(AGE_BANDS) and suite.meta["general_domain"] == "25to34"
    assert suite.classes.tolist() == [0, 1]
    assert suite.meta["n_users"] == N_USERS and suite.meta["n_items"] == N_ITEMS
    assert suite.meta["columns"] == list(COLUMNS) and len(COLUMNS) == 24
    X, y = suite.pooled("train")
    assert X.dtype == np.float32 and X.shape[1] == 24
    ratings = pooled_ratings(suite, "train")
    np.testing.assert_array_equal(y, (ratings >= 4).astype(int))
    # every rating lands in exactly one split of one domain
    total = sum(len(pooled_ratings(suite, s)) for s in ("train", "val", "test", "field"))
    assert total == N_USERS * 40
    for domain in suite:
        low, high = domain.meta["age_band"]
        ages = domain.X_train[:, COLUMNS.index("age")]
        assert ages.min() >= low and ages.max() < high
        assert len(domain.X_train) == pytest.approx(2 * len(domain.X_test), rel=0.05)


def test_features_encode_users_and_items(no_default_places, wheel):
    data = _synthetic()
    suite = load_movielens(seed=0, wheel=wheel)
    X = np.concatenate([suite.pooled(s)[0] for s in ("train", "val", "test")])
    row = X[0]
    user, item = int(row[0]), int(row[1])
    _, age, gender, occupation = data["users"][user]
    assert row[2] == age and row[3] == (gender == "M") and row[4] == OCCUPATIONS.index(occupation)
    flags = row[5:]
    assert sorted(np.array(GENRES)[flags == 1].tolist()) == sorted(set(data["items"][item][1]))


def test_grouplens_folder_and_wheel_give_the_same_suite(no_default_places, wheel, tmp_path):
    folder = _write_grouplens(tmp_path / "ml-100k", _synthetic())
    a = load_movielens(seed=1, wheel=wheel)
    b = load_movielens(seed=1, directory=folder)
    for da, db in zip(a, b):
        np.testing.assert_array_equal(da.X_train, db.X_train)
        np.testing.assert_array_equal(da.meta["ratings"]["test"], db.meta["ratings"]["test"])
    assert b.meta["source"].startswith("directory:")


def test_splits_are_seeded(no_default_places, wheel):
    a, b, c = (load_movielens(seed=s, wheel=wheel) for s in (3, 3, 4))
    np.testing.assert_array_equal(a["under25"].X_test, b["under25"].X_test)
    assert not np.array_equal(a["under25"].X_test, c["under25"].X_test)


def test_max_users_keeps_a_subset_with_the_full_id_space(no_default_places, wheel):
    suite = load_movielens(seed=0, wheel=wheel, max_users=24)
    X = np.concatenate([suite.pooled(s)[0] for s in ("train", "val", "test")])
    assert X[:, 0].max() < 24 and suite.meta["n_users"] == N_USERS
    with pytest.raises(ValidationError, match="max_users"):
        load_movielens(seed=0, wheel=wheel, max_users=0)


def test_lookup_order_argument_env_then_cache(no_default_places, wheel, monkeypatch):
    folder = wheel.parent
    assert find_movielens(wheel=folder).path == wheel  # a folder holding the wheel
    assert find_movielens(wheel=wheel).path == wheel  # the wheel itself
    monkeypatch.setenv("CROSSFEED_RECBOLE_WHEEL", str(wheel))
    assert find_movielens().path == wheel
    monkeypatch.delenv("CROSSFEED_RECBOLE_WHEEL")
    cached = no_default_places / "cache" / "downloads" / WHEEL_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(wheel.read_bytes())
    assert find_movielens().path == cached
    assert load_suite("movielens", seed=0).meta["source"] == f"wheel:{cached}"


def test_missing_data_error_says_what_where_and_how(no_default_places, monkeypatch):
    monkeypatch.setenv("CROSSFEED_RECBOLE_WHEEL", str(no_default_places / "nowhere"))
    with pytest.raises(MissingDataError) as info:
        load_suite("movielens")
    message = str(info.value)
    for needed in (WHEEL_NAME, *WHEEL_MEMBERS.values(), "u.data", "u.user", "u.item",  # which files
                   "CROSSFEED_RECBOLE_WHEEL", str(no_default_places / "nowhere"),       # where it looked
                   str(no_default_places / "cache" / "downloads" / WHEEL_NAME),
                   "pip download --no-deps recbole==1.2.1 -d"):                         # how to get them
        assert needed in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CrossfeedError)


def test_explicit_places_that_lack_the_files(no_default_places, tmp_path):
    with pytest.raises(MissingDataError, match="u.user, u.item"):
        (tmp_path / "partial").mkdir()
        (tmp_path / "partial" / "u.data").write_text("1\t1\t5\t0\n")
        load_movielens(directory=tmp_path / "partial")
    with pytest.raises(MissingDataError, match="pip download"):
        load_movielens(wheel=tmp_path / "absent.whl")
    bad = _write_wheel(tmp_path / WHEEL_NAME, _synthetic(), drop="users")
    with pytest.raises(MissingDataError, match="ml-100k.user"):
        load_movielens(wheel=bad)
    (tmp_path / "junk" ).mkdir()
    junk = tmp_path / "junk" / WHEEL_NAME
    junk.write_bytes(b"not a zip")
    with pytest.raises(MissingDataError, match="not a readable wheel"):
        load_movielens(wheel=junk)
    with pytest.raises(ValidationError, match="not both"):
        load_movielens(wheel=bad, directory=tmp_path)


def test_pooled_ratings_needs_a_movielens_suite(small_suite):
    with pytest.raises(ValidationError, match="load_movielens"):
        pooled_ratings(small_suite, "train")


def test_real_movielens_100k():
    try:
        source = find_movielens()
    except MissingDataError as exc:
        pytest.skip(f"MovieLens-100K is not on this machine (CI fetches it): {exc}")
    suite = load_movielens(seed=0, **{source.kind: source.path})
    assert (suite.meta["n_users"], suite.meta["n_items"]) == (943, 1682)
    assert sum(len(pooled_ratings(suite, s)) for s in ("train", "val", "test", "field")) == 100_000
    assert [len(d.X_train) + len(d.X_val) + len(d.X_test) + len(d.X_field) for d in suite] == [26551, 35444, 19591, 18414]
    all_ratings = np.concatenate([pooled_ratings(suite, s) for s in ("train", "val", "test", "field")])
    assert np.mean(all_ratings >= 4) == pytest.approx(0.55375)
