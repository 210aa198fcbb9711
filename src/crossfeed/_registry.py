"""One generic registry: components are looked up by name from code and from YAML configs."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from crossfeed.exceptions import DuplicateNameError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping where duplicates raise and unknown names suggest the closest.

    Example
    -------
    >>> suites = Registry("suite")
    >>> @suites.register("tiny")
    ... def tiny():
    ...     return 1
    >>> suites.get("tiny")()
    1
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise DuplicateNameError(
                f"a {self.kind} named {name!r} is already registered "
                f"({self._items[name]!r}); choose another name"
            )
        self._items[name] = obj

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return what was registered (unknown names raise)."""
        obj = self.get(name)
        del self._items[name]
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._items)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        plural = f"{self.kind[:-1]}ies" if self.kind.endswith("y") else f"{self.kind}s"
        return f"unknown {self.kind} {name!r}; known {plural}: {', '.join(known)}{hint}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
