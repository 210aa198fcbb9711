"""The fashion suite: finding the files (never the network), disjoint seeded domains, transformations."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from crossfeed.data import _fashion as fashion
from crossfeed.data import load_suite
from crossfeed.data._fashion import (
    FASHION_DOMAINS,
    MissingDataError,
    draw_disjoint,
    load_fashion,
    load_fashion_official,
)
from crossfeed.exceptions import CrossfeedError, ValidationError

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
HAVE_REAL = all((SYSTEM / name).is_file() for name in fashion.OFFICIAL_MD5)
needs_real = pytest.mark.skipif(
    not HAVE_REAL, reason=f"Fashion-MNIST files absent from {SYSTEM}: sudo apt install dataset-fashion-mnist"
)


def _idx(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *array.shape))
    return header + array.astype(np.uint8).tobytes()


def _synthetic_files(n_train_per_class: int = 35, n_test_per_class: int = 5, seed: int = 0) -> dict[str, bytes]:
    """Tiny Fashion-MNIST look-alikes (gzip IDX files): class c is a bright bar at row 2c plus noise."""
    rng = np.random.default_rng(seed)
    files = {}
    for part, per_class in (("train", n_train_per_class), ("t10k", n_test_per_class)):
        labels = np.repeat(np.arange(10), per_class)
        images = rng.integers(0, 40, size=(len(labels), 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 7, 4:24] = 255
        files[f"{part}-images-idx3-ubyte.gz"] = gzip.compress(_idx(images))
        files[f"{part}-labels-idx1-ubyte.gz"] = gzip.compress(_idx(labels))
    return files


def _write(folder: Path, files: dict[str, bytes], *, skip: str | None = None, raw: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name != skip:
            (folder / (name.removesuffix(".gz") if raw else name)).write_bytes(gzip.decompress(data) if raw else data)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails the test."""

    def refuse(url):
        raise AssertionError(f"the loader tried to fetch {url}")

    monkeypatch.setattr(fashion, "_fetch", refuse)


def test_missing_files_say_which_where_and_how(tmp_path, offline):
    with pytest.raises(MissingDataError) as info:
        load_fashion(directory=tmp_path, n_per_domain=80, cache=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CrossfeedError)
    for expected in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", str(tmp_path),
                     "apt install dataset-fashion-mnist", "directory=", "download=True"):
        assert expected in message


def test_default_search_lists_every_folder(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(fashion, "SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingDataError) as info:
        load_fashion(n_per_domain=80)
    message = str(info.value)
    assert f"{tmp_path / 'system'} (does not exist)" in message
    assert str(tmp_path / "cache" / "fashion-mnist") in message


def test_a_partial_folder_names_the_missing_file(tmp_path, offline):
    _write(tmp_path, _synthetic_files(), skip="t10k-labels-idx1-ubyte.gz")
    with pytest.raises(MissingDataError, match=r"lacks t10k-labels-idx1-ubyte.gz\)"):
        load_fashion(directory=tmp_path, n_per_domain=80, cache=False)


@pytest.mark.parametrize("layout", ["gzip", "raw", "torchvision"])
def test_loads_from_a_given_directory(tmp_path, layout, offline):
    files = _synthetic_files()
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision" else tmp_path
    _write(folder, files, raw=layout == "raw")
    suite = load_suite("fashion", seed=0, n_per_domain=80, directory=tmp_path, cache=False)
    assert suite.names == list(FASHION_DOMAINS)
    assert suite.meta["general_domain"] == "plain" and suite.meta["image_shape"] == [1, 28, 28]
    for d in suite:
        assert d.X_train.shape == (40, 784) and d.X_train.dtype == np.float32
        assert len(d.X_val) == 10 and len(d.X_test) == 20 and len(d.X_field) == 10
        assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
        assert np.bincount(np.concatenate([d.y_train, d.y_val, d.y_test, d.y_field])).tolist() == [8] * 10


def test_download_checks_md5_and_writes_only_good_files(tmp_path, monkeypatch):
    files = _synthetic_files()
    monkeypatch.setattr(fashion, "OFFICIAL_MD5", {k: hashlib.md5(v).hexdigest() for k, v in files.items()})
    fetched = []

    def serve(url):
        fetched.append(url)
        return files[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(fashion, "_fetch", serve)
    suite = load_fashion(directory=tmp_path, n_per_domain=80, download=True, cache=False)
    assert len(fetched) == 4 and all(url.startswith(fashion.MIRRORS[0]) for url in fetched)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    assert len(suite) == 5

    bad = tmp_path / "bad"
    monkeypatch.setattr(fashion, "_fetch", lambda url: b"tampered")
    with pytest.raises(MissingDataError, match="checksum mismatch") as info:
        load_fashion(directory=bad, n_per_domain=80, download=True, cache=False)
    assert str(info.value).count("checksum mismatch") == len(fashion.MIRRORS)
    assert not bad.exists() or not any(bad.iterdir())


def test_download_falls_back_to_the_next_mirror(tmp_path, monkeypatch):
    files = _synthetic_files()
    monkeypatch.setattr(fashion, "OFFICIAL_MD5", {k: hashlib.md5(v).hexdigest() for k, v in files.items()})

    def flaky(url):
        if url.startswith(fashion.MIRRORS[0]):
            raise OSError("connection refused")
        return files[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(fashion, "_fetch", flaky)
    paths = fashion.locate_files(tmp_path, download=True)
    assert sorted(paths) == sorted(files)


def test_corrupt_or_truncated_files_are_clear_errors(tmp_path, offline):
    files = _synthetic_files()
    _write(tmp_path, files)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))
    with pytest.raises(ValidationError, match="train-labels-idx1-ubyte.gz is not an IDX label file"):
        load_fashion(directory=tmp_path, n_per_domain=80, cache=False)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.decompress(files["train-labels-idx1-ubyte.gz"])[:-3])
    with pytest.raises(ValidationError, match="truncated"):
        load_fashion(directory=tmp_path, n_per_domain=80, cache=False)


def test_too_few_images_for_the_request_says_how_many_fit(tmp_path, offline):
    _write(tmp_path, _synthetic_files())
    with pytest.raises(ValidationError, match="at most 80"):
        load_fashion(directory=tmp_path, n_per_domain=200, cache=False)


def test_bad_arguments_list_the_options():
    with pytest.raises(ValidationError, match="available"):
        load_fashion(domains=["sepia"])
    with pytest.raises(ValidationError, match="distinct"):
        load_fashion(domains=["plain", "plain"])
    for n in (10, 14010, 100.5):
        with pytest.raises(ValidationError, match="n_per_domain"):
            load_fashion(n_per_domain=n)


def test_draw_disjoint_is_stratified_disjoint_and_stable():
    labels = np.repeat(np.arange(10), 50)
    slots = draw_disjoint(labels, n_per_class=9, n_slots=5, seed=3)
    assert all(np.bincount(labels[s], minlength=10).tolist() == [9] * 10 for s in slots)
    assert len(np.unique(np.concatenate(slots))) == 5 * 90
    again = draw_disjoint(labels, n_per_class=9, n_slots=5, seed=3)
    other = draw_disjoint(labels, n_per_class=9, n_slots=5, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(slots, again))
    assert not np.array_equal(slots[0], other[0])


def test_transformations_do_what_they_say():
    images = np.zeros((4, 28, 28), np.float32)
    images[:, 8:20, 12:16] = 1.0  # a vertical bar
    same = fashion.transform_images(images, FASHION_DOMAINS["plain"], seed=0)
    np.testing.assert_array_equal(same, images)
    np.testing.assert_allclose(fashion.transform_images(images, FASHION_DOMAINS["inverted"], 0), 1 - images)
    noisy = fashion.transform_images(images, FASHION_DOMAINS["noisy"], 0)
    assert 0 <= noisy.min() and noisy.max() <= 1 and (noisy[:, :4] > 0).mean() > 0.3
    blurred = fashion.transform_images(images, FASHION_DOMAINS["blurred"], 0)
    assert np.abs(np.diff(blurred, axis=2)).max() < 0.5 and blurred[:, 14, 14].min() > 0.5
    rotated = fashion.transform_images(images, FASHION_DOMAINS["rotated"], 0)
    assert not np.allclose(rotated, images)
    # 15-45 degrees either way about the centre (13.5, 13.5): row 9 of the bar moves sideways by >= 1.1 pixels
    centre_of_row = (rotated[:, 9] * np.arange(28)).sum(1) / rotated[:, 9].sum(1)
    assert np.all(np.abs(centre_of_row - 13.5) > 0.8)
    np.testing.assert_array_equal(rotated, fashion.transform_images(images, FASHION_DOMAINS["rotated"], 0))
    assert not np.array_equal(rotated, fashion.transform_images(images, FASHION_DOMAINS["rotated"], 1))


@needs_real
def test_real_suite_is_deterministic_cached_and_disjoint(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path))
    suite = load_suite("fashion", seed=0, n_per_domain=200)
    assert suite.names == ["plain", "rotated", "noisy", "inverted", "blurred"]
    assert suite.classes.tolist() == list(range(10)) and suite.meta["class_names"][9] == "Ankle boot"
    assert list((tmp_path / "fashion").glob("*.npz")), "the built domains are cached on disk"
    rebuilt = load_fashion(seed=0, n_per_domain=200, cache=False)
    alone = load_fashion(seed=0, n_per_domain=200, domains=["blurred"], cache=False)
    other = load_fashion(seed=1, n_per_domain=200, domains=["plain"], cache=False)
    np.testing.assert_array_equal(suite["noisy"].X_test, rebuilt["noisy"].X_test)
    np.testing.assert_array_equal(suite["blurred"].X_train, alone["blurred"].X_train)
    assert not np.array_equal(suite["plain"].X_train, other["plain"].X_train)

    def rows(X):
        return {np.round(x, 4).tobytes() for x in X}

    plain = rows(np.concatenate([suite["plain"].split(s)[0] for s in ("train", "val", "test")]))
    undone = rows(1.0 - np.concatenate([suite["inverted"].split(s)[0] for s in ("train", "val", "test")]))
    assert len(plain) > 100 and not plain & undone, "domains draw disjoint images"


@needs_real
def test_real_domains_differ_in_the_stated_way(offline):
    suite = load_suite("fashion", seed=0, n_per_domain=200)
    mean = {d.name: float(d.X_train.mean()) for d in suite}
    edges = {d.name: float(np.abs(np.diff(d.X_train.reshape(-1, 28, 28), axis=2)).mean()) for d in suite}
    background = {d.name: float((d.X_train.reshape(-1, 28, 28)[:, :2] > 0.05).mean()) for d in suite}
    assert mean["inverted"] > 0.5 > mean["plain"]
    assert edges["blurred"] < edges["plain"] < edges["noisy"]
    assert background["noisy"] > background["plain"] + 0.2


@needs_real
def test_real_official_split(offline):
    X_train, y_train, X_test, y_test = load_fashion_official()
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784) and X_train.dtype == np.float32
    assert np.bincount(y_train).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert 0.0 == X_train.min() and X_train.max() == 1.0


def test_cache_keeps_files_from_different_folders_apart(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path / "cache"))
    first = _write(tmp_path / "a", _synthetic_files(seed=0))
    second = _write(tmp_path / "b", _synthetic_files(seed=1))
    a = load_fashion(directory=first, n_per_domain=80, domains=["plain"])
    b = load_fashion(directory=second, n_per_domain=80, domains=["plain"])
    assert not np.array_equal(a["plain"].X_train, b["plain"].X_train)
    for f in (first / "train-images-idx3-ubyte.gz", second / "train-images-idx3-ubyte.gz"):
        f.unlink()  # cached: the files are no longer needed
    again = load_fashion(directory=first, n_per_domain=80, domains=["plain"])
    np.testing.assert_array_equal(a["plain"].X_train, again["plain"].X_train)
