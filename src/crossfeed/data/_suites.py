"""``load_suite(name)``: the registry of built-in suites."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from crossfeed._registry import Registry
from crossfeed.data._amazon import load_amazon
from crossfeed.data._colored import colored_fashion
from crossfeed.data._domain import DomainSuite
from crossfeed.data._fashion import load_fashion
from crossfeed.data._mnist1d import load_mnist1d
from crossfeed.data._movielens import load_movielens
from crossfeed.exceptions import ValidationError

SUITES: Registry[Callable[..., DomainSuite]] = Registry("suite")
SUITES.add("mnist1d", load_mnist1d)


# The real-data suites import their modules (and optional dependencies) only when loaded.
@functools.wraps(load_fashion)  # keeps the loader's signature for check_suite_kwargs
def _load_fashion(**kwargs: Any) -> DomainSuite:
    return load_fashion(**kwargs)


@functools.wraps(load_amazon)
def _load_amazon(**kwargs: Any) -> DomainSuite:
    return load_amazon(**kwargs)


@functools.wraps(load_movielens)
def _load_movielens(**kwargs: Any) -> DomainSuite:
    return load_movielens(**kwargs)


SUITES.add("fashion", _load_fashion)
SUITES.add("amazon", _load_amazon)
SUITES.add("movielens", _load_movielens)
SUITES.add("colored_fashion", colored_fashion)


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

    Raises ``UnknownNameError`` for an unknown suite and ``ValidationError`` for a keyword the
    suite's loader does not take (see :func:`check_suite_kwargs`), before anything is loaded.
    """
    check_suite_kwargs(name, kwargs)
    return SUITES.get(name)(seed=seed, **kwargs)


def check_suite_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check the keyword arguments meant for suite ``name``'s loader against its signature.

    Raises ``UnknownNameError`` for an unknown suite, and ``ValidationError`` naming the keyword,
    the closest one the loader takes ("did you mean") and all of them. ``seed`` is given by
    :func:`load_suite` itself. Cheap: nothing is loaded, so a CLI or a config checks this first.

    Example
    -------
    >>> check_suite_kwargs("mnist1d", {"n_per_domian": 200})
    Traceback (most recent call last):
    ...
    crossfeed.exceptions.ValidationError: suite 'mnist1d' has no option 'n_per_domian'; did you mean 'n_per_domain'? ...
    """
    loader = SUITES.get(name)
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [k for k, p in params.items() if k != "seed"
                and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in kwargs:
        if key == "seed":
            raise ValidationError(f"suite {name!r}: pass the seed as load_suite's seed argument, not among its options")
        if key not in accepted:
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValidationError(
                f"suite {name!r} has no option {key!r}{hint} Its loader {getattr(loader, '__name__', name)} takes: "
                f"{', '.join(accepted) or 'no options'}"
            )
