"""The public API of crossfeed.spawn: curated, sorted, documented, with runnable examples."""

from __future__ import annotations

import doctest
import importlib

import pytest

import crossfeed.spawn as spawn

MODULES = [
    "crossfeed.spawn._cli",
    "crossfeed.spawn._distill",
    "crossfeed.distill._hook",
    "crossfeed.spawn._experts",
    "crossfeed.spawn._export",
    "crossfeed.spawn._finetune",
    "crossfeed.distill._hints",
    "crossfeed.distill._kd",
    "crossfeed.spawn._prune",
    "crossfeed.spawn._quantize",
]


def test_all_is_sorted_and_documented() -> None:
    assert spawn.__all__ == sorted(spawn.__all__)
    for name in spawn.__all__:
        obj = getattr(spawn, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
