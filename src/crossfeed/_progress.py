"""How long-running jobs report progress without printing: the CLI renders it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Progress(Protocol):
    """Receives progress of a job. The library never prints; the CLI implements this with rich."""

    def stage(self, message: str) -> None:
        """A new step of the job started."""

    def training(self, name: str, epochs: int) -> Callable[[dict[str, Any]], None]:
        """A model called ``name`` starts training for up to ``epochs`` epochs; returns its epoch callback."""


class SilentProgress:
    """A :class:`Progress` that ignores everything (library default)."""

    def stage(self, message: str) -> None:
        return None

    def training(self, name: str, epochs: int) -> Callable[[dict[str, Any]], None]:
        return lambda logs: None
