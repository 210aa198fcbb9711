"""The built-in ``mnist1d`` suite: five domains of controlled shift, generated locally.

MNIST-1D (Greydanus & Kobak, ICML 2024, arXiv 2011.14439) draws 1-D signals of length 40 from ten
digit templates with random padding, scaling, translation, correlated and i.i.d. noise and shear.
Each domain below is the package's own generator (``mnist1d.data.make_dataset``, never its
download path) with different arguments, so the shift between domains is controlled and
reproducible.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np
from mnist1d.data import get_dataset_args, make_dataset

from crossfeed._cache import cache_dir, load_arrays, save_arrays
from crossfeed.data._domain import Domain, DomainSuite, stratified_split
from crossfeed.exceptions import ValidationError

logger = logging.getLogger(__name__)

#: Generator arguments of each domain, as overrides of ``mnist1d.data.get_dataset_args()``.
MNIST1D_DOMAINS: dict[str, dict[str, Any]] = {
    "default": {},
    "noisy": {"corr_noise_scale": 0.45, "iid_noise_scale": 0.05},
    "sheared": {"shear_scale": 2.5},
    "shifted": {"max_translation": 1, "padding": [12, 36]},
    "scaled": {"scale_coeff": 1.6, "padding": [12, 24], "max_translation": 36},
}

_VERSION = 1


def _generate(overrides: dict[str, Any], n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    args = get_dataset_args()
    args.num_samples = n_samples
    args.train_split = 1.0
    args.seed = seed
    for key, value in overrides.items():
        setattr(args, key, value)
    # make_dataset seeds numpy's global generator; keep the caller's stream untouched.
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return data["x"].astype(np.float32), data["y"].astype(np.int64)


def load_mnist1d(
    seed: int = 0,
    *,
    n_per_domain: int = 4000,
    domains: list[str] | None = None,
    cache: bool = True,
) -> DomainSuite:
    """Build the ``mnist1d`` suite.

    Parameters
    ----------
    seed : int
        Seeds the generator of every domain (domain ``i`` uses ``seed * 1000 + i``).
    n_per_domain : int
        Samples per domain (a multiple of 10 is used: the generator draws equally per class),
        split 50% train, 12.5% val, 25% test and 12.5% unlabelled field data.
    domains : list of str, optional
        A subset of ``MNIST1D_DOMAINS`` (all five by default).
    cache : bool
        Keep generated arrays under ``$CROSSFEED_CACHE`` (default ``~/.cache/crossfeed``).
    """
    if n_per_domain < 80:
        raise ValidationError(
            f"n_per_domain must be at least 80 so that every split holds each of the 10 classes; got {n_per_domain}"
        )
    names = list(MNIST1D_DOMAINS) if domains is None else list(domains)
    unknown = [n for n in names if n not in MNIST1D_DOMAINS]
    if unknown:
        raise ValidationError(f"unknown mnist1d domain(s) {unknown}; available: {list(MNIST1D_DOMAINS)}")
    n = (n_per_domain // 10) * 10
    built = []
    for name in names:
        i = list(MNIST1D_DOMAINS).index(name)
        overrides = MNIST1D_DOMAINS[name]
        domain_seed = seed * 1000 + i
        key = json.dumps({"v": _VERSION, "name": name, "args": overrides, "n": n, "seed": domain_seed}, sort_keys=True)
        path = cache_dir() / "mnist1d" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        arrays = load_arrays(path) if cache else None
        if arrays is None:
            logger.info("generating mnist1d domain %r (%d samples)", name, n)
            X, y = _generate(overrides, n, domain_seed)
            if cache:
                save_arrays(path, {"X": X, "y": y})
        else:
            X, y = arrays["X"], arrays["y"]
        built.append(_split(name, X, y, domain_seed, {"generator_args": overrides, "seed": domain_seed}))
    return DomainSuite.from_domains(
        "mnist1d", built, meta={"seed": seed, "n_per_domain": n, "general_domain": "default"}
    )


def _split(name: str, X: np.ndarray, y: np.ndarray, seed: int, meta: dict) -> Domain:
    """Stratified split into train / val / test / field."""
    return Domain.from_indices(name, X, y, stratified_split(y, np.random.default_rng(seed)), meta)
