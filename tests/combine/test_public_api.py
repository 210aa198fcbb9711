"""The public API of crossfeed.combine: curated, sorted, documented, with runnable examples."""

from __future__ import annotations

import doctest
import importlib

import pytest

import crossfeed.combine as combine

MODULES = [
    "crossfeed.combine._calibration",
    "crossfeed.combine._cascade",
    "crossfeed.combine._confidence",
    "crossfeed.combine._math",
    "crossfeed.combine._mean",
    "crossfeed.combine._router",
    "crossfeed.combine._routing",
    "crossfeed.combine._risk",
    "crossfeed.combine._stacking",
    "crossfeed.combine._weighted",
]


def test_all_is_sorted_and_complete() -> None:
    assert combine.__all__ == sorted(combine.__all__)
    for name in combine.__all__:
        obj = getattr(combine, name)
        assert obj is not None
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, extraglobs={"np": importlib.import_module("numpy")}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
