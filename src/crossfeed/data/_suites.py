"""``load_suite(name)``: the registry of built-in suites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crossfeed._registry import Registry
from crossfeed.data._amazon import load_amazon
from crossfeed.data._domain import DomainSuite
from crossfeed.data._fashion import load_fashion
from crossfeed.data._mnist1d import load_mnist1d
from crossfeed.data._movielens import load_movielens

SUITES: Registry[Callable[..., DomainSuite]] = Registry("suite")
SUITES.add("mnist1d", load_mnist1d)


# The real-data suites import their modules (and optional dependencies) only when loaded.
def _load_fashion(**kwargs: Any) -> DomainSuite:
    return load_fashion(**kwargs)


def _load_amazon(**kwargs: Any) -> DomainSuite:
    return load_amazon(**kwargs)


def _load_movielens(**kwargs: Any) -> DomainSuite:
    return load_movielens(**kwargs)


SUITES.add("fashion", _load_fashion)
SUITES.add("amazon", _load_amazon)
SUITES.add("movielens", _load_movielens)


def load_suite(name: str, seed: int = 0, **kwargs: Any) -> DomainSuite:
    """Load a built-in suite by name.

    Parameters
    ----------
    name : str
        One of ``SUITES.names()`` (``"mnist1d"`` is built in and needs no download).
    seed : int
        Seed of the data generation and splits.
    **kwargs
        Passed to the suite's loader (e.g. ``n_per_domain`` for ``mnist1d``).

    Example
    -------
    >>> suite = load_suite("mnist1d", seed=0, n_per_domain=200)
    >>> suite.names
    ['default', 'noisy', 'sheared', 'shifted', 'scaled']
    """
    return SUITES.get(name)(seed=seed, **kwargs)
