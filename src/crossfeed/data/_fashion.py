"""The ``fashion`` suite: Fashion-MNIST images in five domains made by transformations.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv 1708.07747) holds 70,000 grey 28 x 28 images
of ten kinds of clothing (60,000 official training + 10,000 official test images, 7,000 per
class). The suite pools all 70,000 and gives each domain its own disjoint, seeded,
class-stratified draw, transformed by the domain's rule (``FASHION_DOMAINS``): ``plain`` (the
general domain), ``rotated``, ``noisy``, ``inverted``, ``blurred``. Every random choice (the draw,
rotation angles, noise) follows the seed.

Where the files come from, in order: the ``directory`` you pass (or, without one, the Debian
package ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist`` and then
``$CROSSFEED_CACHE/fashion-mnist``); with ``download=True`` the four official files are fetched
into that folder and checked against their published MD5 sums. Nothing is fetched otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from crossfeed._cache import (
    atomic_write_bytes,
    cache_dir,
    load_arrays,
    save_arrays,
)
from crossfeed.data._domain import DomainSuite
from crossfeed.data._mnist1d import _split
from crossfeed.exceptions import MissingDataError, ValidationError

logger = logging.getLogger(__name__)


#: Transformation of each domain: its rule and the rule's parameters.
FASHION_DOMAINS: dict[str, dict[str, Any]] = {
    "plain": {"rule": "identity"},
    "rotated": {"rule": "rotate", "min_degrees": 15.0, "max_degrees": 45.0},
    "noisy": {"rule": "gaussian_noise", "sigma": 0.3},
    "inverted": {"rule": "invert"},
    "blurred": {"rule": "gaussian_blur", "sigma": 1.5},
}

#: Label names of the ten classes, in label order.
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: The four official files and the MD5 of each gzip file as published by Zalando Research.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
#: Folders searched when no ``directory`` is given (then ``$CROSSFEED_CACHE/fashion-mnist``).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_VERSION = 1


# -- finding, downloading and reading the files ----------------------------------------------
def _default_dirs() -> list[Path]:
    return [*SYSTEM_DIRS, cache_dir() / "fashion-mnist"]


def _file_in(folder: Path, name: str) -> Path | None:
    """``folder/name`` (gzip) or its uncompressed twin, also under torchvision's ``FashionMNIST/raw``."""
    for base in (folder, folder / "FashionMNIST" / "raw"):
        for candidate in (base / name, base / name.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
    return None


def _missing_message(looked: dict[Path, list[str]], target: Path) -> str:
    where = "; ".join(
        f"{folder} ({'does not exist' if not folder.is_dir() else 'lacks ' + ', '.join(names)})"
        for folder, names in looked.items()
    )
    return (
        f"Fashion-MNIST files not found. Looked in: {where}. Get them with `sudo apt install "
        f"dataset-fashion-mnist` (Debian/Ubuntu, installs /usr/share/datasets/fashion-mnist), or pass "
        f"directory='/path/to/folder' holding the four files {list(OFFICIAL_MD5)} (gzip or uncompressed), "
        f"or pass download=True to fetch the official files (checked by MD5) into {target}"
    )


def _fetch(url: str) -> bytes:
    """The bytes at ``url`` (the one place that touches the network; tests replace it)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _download(folder: Path, names: list[str]) -> None:
    """Fetch ``names`` into ``folder`` from the first mirror that serves bytes with the official MD5."""
    for name in names:
        errors = []
        for mirror in MIRRORS:
            try:
                data = _fetch(mirror + name)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{mirror + name}: {exc}")
                continue
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if digest != OFFICIAL_MD5[name]:
                errors.append(f"{mirror + name}: MD5 {digest}, expected {OFFICIAL_MD5[name]} (checksum mismatch)")
                continue
            atomic_write_bytes(folder / name, data)
            logger.info("downloaded %s into %s", name, folder)
            break
        else:
            raise MissingDataError(
                f"could not download {name}: " + "; ".join(errors) + ". Nothing was written for it; install "
                "the Debian package (`sudo apt install dataset-fashion-mnist`) or pass directory= instead"
            )


def locate_files(directory: str | Path | None = None, *, download: bool = False) -> dict[str, Path]:
    """Paths of the four Fashion-MNIST files, by official file name.

    Parameters
    ----------
    directory : folder holding the files (gzip or uncompressed, or torchvision's
        ``FashionMNIST/raw`` layout inside it). Default: the Debian package's folder, then
        ``$CROSSFEED_CACHE/fashion-mnist``.
    download : fetch missing files (official mirrors, MD5-checked) into ``directory`` or, without
        one, into ``$CROSSFEED_CACHE/fashion-mnist``.

    Returns
    -------
    dict mapping each name of ``OFFICIAL_MD5`` to its path.

    Raises
    ------
    MissingDataError (a ``FileNotFoundError``) naming the missing files, the folders searched and
    how to get the files.
    """
    folders = [Path(directory).expanduser()] if directory is not None else _default_dirs()
    looked: dict[Path, list[str]] = {}
    for folder in folders:
        found = {name: _file_in(folder, name) for name in OFFICIAL_MD5}
        missing = [name for name, path in found.items() if path is None]
        if not missing:
            return {name: path for name, path in found.items() if path is not None}
        looked[folder] = missing
    target = folders[-1]
    if not download:
        raise MissingDataError(_missing_message(looked, target))
    _download(target, looked[target])
    return locate_files(target)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (``magic`` 2051: images of shape (n, rows, cols); 2049: labels of shape (n,))."""
    raw = path.read_bytes()
    try:
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError) as exc:
        raise ValidationError(f"{path} is not a readable gzip file ({exc}); delete it and get it again") from exc
    n_dims = 3 if magic == _IMAGES_MAGIC else 1
    header = 4 * (1 + n_dims)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise ValidationError(
            f"{path} is not an IDX {'image' if n_dims == 3 else 'label'} file (expected magic number {magic}); "
            "delete it and get it again"
        )
    shape = tuple(int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(n_dims))
    if len(data) != header + int(np.prod(shape)):
        raise ValidationError(f"{path} is truncated: its header announces shape {shape}; delete it and get it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_images(directory: str | Path | None = None, *, download: bool = False) -> dict[str, np.ndarray]:
    """The official arrays: ``train_images`` (60000, 28, 28) and ``test_images`` (10000, 28, 28) uint8, labels int64.

    See :func:`locate_files` for ``directory`` and ``download``.
    """
    paths = locate_files(directory, download=download)
    out: dict[str, np.ndarray] = {}
    for part in ("train", "t10k"):
        images = _read_idx(paths[f"{part}-images-idx3-ubyte.gz"], _IMAGES_MAGIC)
        labels = _read_idx(paths[f"{part}-labels-idx1-ubyte.gz"], _LABELS_MAGIC).astype(np.int64)
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise ValidationError(
                f"Fashion-MNIST {part} files disagree: images of shape {images.shape}, {len(labels)} labels with "
                f"maximum {labels.max(initial=0)}; expected (n, 28, 28) images, n labels in 0..9"
            )
        key = "train" if part == "train" else "test"
        out[f"{key}_images"], out[f"{key}_labels"] = images, labels
    return out


def load_fashion_official(
    directory: str | Path | None = None, *, download: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The official split, as the published reference figures use it.

    Returns
    -------
    (X_train, y_train, X_test, y_test): float32 arrays of shape (60000, 784) and (10000, 784) with
    pixels in [0, 1], and int64 labels.

    Example
    -------
    >>> X_train, y_train, X_test, y_test = load_fashion_official()   # doctest: +SKIP
    >>> X_train.shape, X_test.shape                                   # doctest: +SKIP
    ((60000, 784), (10000, 784))
    """
    arrays = read_images(directory, download=download)

    def flat(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)

    return flat(arrays["train_images"]), arrays["train_labels"], flat(arrays["test_images"]), arrays["test_labels"]


# -- the domains ----------------------------------------------------------------------------------
def draw_disjoint(labels: np.ndarray, n_per_class: int, n_slots: int, seed: int) -> list[np.ndarray]:
    """``n_slots`` disjoint, class-stratified index sets of ``n_per_class`` samples of every class.

    Slot ``i`` is the same whichever other slots are used, so a domain holds the same images when
    loaded alone or with the others.

    Example
    -------
    >>> slots = draw_disjoint(np.repeat(np.arange(3), 10), n_per_class=2, n_slots=4, seed=0)
    >>> [len(s) for s in slots], len(np.unique(np.concatenate(slots)))
    ([6, 6, 6, 6], 24)
    """
    rng = np.random.default_rng(seed)
    slots: list[list[np.ndarray]] = [[] for _ in range(n_slots)]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        for i in range(n_slots):
            slots[i].append(idx[i * n_per_class : (i + 1) * n_per_class])
    return [np.sort(np.concatenate(s)) for s in slots]


def transform_images(images: np.ndarray, spec: dict[str, Any], seed: int) -> np.ndarray:
    """Apply a domain rule of ``FASHION_DOMAINS`` to float images of shape (n, 28, 28) in [0, 1].

    Returns float32 images of the same shape, clipped to [0, 1]; random parameters (angles,
    noise) follow ``seed``.
    """
    rng = np.random.default_rng(seed)
    rule = spec["rule"]
    if rule == "identity":
        out = images
    elif rule == "invert":
        out = 1.0 - images
    elif rule == "gaussian_noise":
        out = images + rng.normal(scale=spec["sigma"], size=images.shape)
    elif rule == "gaussian_blur":
        out = ndimage.gaussian_filter(images, sigma=(0, spec["sigma"], spec["sigma"]))
    elif rule == "rotate":
        magnitude = rng.uniform(spec["min_degrees"], spec["max_degrees"], size=len(images))
        angles = magnitude * rng.choice([-1.0, 1.0], size=len(images))
        out = np.stack([ndimage.rotate(img, a, reshape=False, order=1) for img, a in zip(images, angles)])
    else:
        raise ValidationError(f"unknown fashion transformation rule {rule!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _check_args(n_per_domain: int, domains: list[str] | None) -> list[str]:
    names = list(FASHION_DOMAINS) if domains is None else list(domains)
    unknown = [n for n in names if n not in FASHION_DOMAINS]
    if unknown:
        raise ValidationError(f"unknown fashion domain(s) {unknown}; available: {list(FASHION_DOMAINS)}")
    if len(set(names)) != len(names) or not names:
        raise ValidationError(f"domains must be distinct names, at least one; got {names}")
    max_n = 7000 // len(FASHION_DOMAINS) * 10
    if not isinstance(n_per_domain, (int, np.integer)) or not 80 <= n_per_domain <= max_n:
        raise ValidationError(
            f"n_per_domain must be an integer from 80 (every split holds each of the 10 classes) to {max_n} "
            f"(the 70,000 images shared by {len(FASHION_DOMAINS)} disjoint domains); got {n_per_domain!r}"
        )
    return names


def load_fashion(
    seed: int = 0,
    *,
    n_per_domain: int = 6000,
    domains: list[str] | None = None,
    directory: str | Path | None = None,
    download: bool = False,
    cache: bool = True,
) -> DomainSuite:
    """Build the ``fashion`` suite from the Fashion-MNIST files.

    Samples are float32 of shape (n, 784), the 28 x 28 pixels row by row, scaled to [0, 1] (not
    standardised: the CNNs normalise with batch norm; put a ``StandardScaler`` before a linear
    model). ``suite.meta["image_shape"]`` is ``[1, 28, 28]`` and ``suite.meta["class_names"]``
    names the labels.

    Parameters
    ----------
    seed : int
        Seeds the draw of every domain's images and its transformation (domain ``i`` of
        ``FASHION_DOMAINS`` uses ``seed * 1000 + i``).
    n_per_domain : int
        Images per domain (a multiple of 10 is used: equal per class), at most 14,000 so that the
        five domains never share an image; split 50% train, 12.5% val, 25% test and 12.5%
        unlabelled field data.
    domains : list of str, optional
        A subset of ``FASHION_DOMAINS`` (all five by default); a domain holds the same images
        whichever others are loaded.
    directory, download : where the files are, or fetch them; see :func:`locate_files`.
    cache : bool
        Keep the built domains under ``$CROSSFEED_CACHE`` (default ``~/.cache/crossfeed``), keyed
        by seed, size and ``directory``; a cached suite loads without the files.

    Example
    -------
    >>> suite = load_fashion(seed=0, n_per_domain=200)   # doctest: +SKIP
    >>> suite.names                                       # doctest: +SKIP
    ['plain', 'rotated', 'noisy', 'inverted', 'blurred']
    """
    names = _check_args(n_per_domain, domains)
    n = (int(n_per_domain) // 10) * 10
    # Files from a folder you name are cached apart from the default (Debian or downloaded) files.
    source = None if directory is None else str(Path(directory).expanduser().resolve())
    built, pool = [], None
    for name in names:
        i = list(FASHION_DOMAINS).index(name)
        spec, domain_seed = FASHION_DOMAINS[name], seed * 1000 + i
        key = json.dumps({"v": _VERSION, "name": name, "spec": spec, "n": n, "seed": seed, "source": source},
                         sort_keys=True)
        path = cache_dir() / "fashion" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        arrays = load_arrays(path) if cache else None
        if arrays is None:
            pool = pool if pool is not None else _pool(directory, download)
            logger.info("building fashion domain %r (%d images, %s)", name, n, spec["rule"])
            X, y = _build_domain(pool, i, n, seed, spec, domain_seed)
            if cache:
                save_arrays(path, {"X": X, "y": y})
        else:
            X, y = arrays["X"], arrays["y"]
        built.append(_split(name, X, y, domain_seed, {"transformation": spec, "seed": domain_seed}))
    meta = {
        "seed": seed, "n_per_domain": n, "general_domain": "plain", "image_shape": [1, 28, 28],
        "class_names": list(FASHION_CLASSES), "pixels": "float32 in [0, 1], row-major 28 x 28",
    }
    return DomainSuite.from_domains("fashion", built, meta=meta)


def _pool(directory: str | Path | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 images (official train then test) and their labels."""
    arrays = read_images(directory, download=download)
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    return images, np.concatenate([arrays["train_labels"], arrays["test_labels"]])


def _build_domain(
    pool: tuple[np.ndarray, np.ndarray], slot: int, n: int, seed: int, spec: dict[str, Any], domain_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = pool
    n_per_class = n // 10
    available = int(np.bincount(labels, minlength=10).min()) // len(FASHION_DOMAINS)
    if n_per_class > available:
        raise ValidationError(
            f"n_per_domain={n} needs {n_per_class} images of every class per domain; these files hold enough "
            f"for {available} per class and domain; lower n_per_domain to at most {10 * available}"
        )
    idx = draw_disjoint(labels, n_per_class, len(FASHION_DOMAINS), seed)[slot]
    X = transform_images(images[idx] / np.float32(255), spec, domain_seed)
    return X.reshape(len(X), -1), labels[idx]
