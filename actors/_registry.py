"""Who is alive in this process: the registry of actors by name, and their threads.

An actor registers here under its name (a :class:`~llmos.actors.lowlevel.Cell` does, when it
starts); the process-wide operations (``get``, ``find``, ``running``, ``stop_all``) read it.
It knows an actor only as :class:`Registered`, so it imports no other module of the core that
would import it back.
"""

from __future__ import annotations

import itertools
import threading
from typing import Protocol

from llmos.actors._errors import NameTaken
from llmos.actors._local_ref import LocalRef

__all__ = [
    "Registered",
    "add_thread",
    "discard_thread",
    "live_cells",
    "live_threads",
    "lookup",
    "next_number",
    "register",
    "unregister",
]


class Registered(Protocol):
    """What the registry and the process-wide operations use of a live actor."""

    @property
    def name(self) -> str: ...
    @property
    def ref(self) -> LocalRef: ...
    @property
    def stopped_event(self) -> threading.Event: ...
    def request_stop(self) -> None: ...


_cells: dict[str, Registered] = {}
_lock = threading.Lock()
_threads: set[threading.Thread] = set()
_numbers = itertools.count(1)


def next_number() -> int:
    """A process-wide serial for default actor names (``ClassName-N``)."""
    return next(_numbers)


def register(cell: Registered) -> None:
    """Hold ``cell.name`` for ``cell``.

    Raises:
        NameTaken: a live actor already holds the name.
    """
    with _lock:
        if cell.name in _cells:
            raise NameTaken(
                f"an actor named {cell.name!r} is already running; stop it first or pick "
                "another name"
            )
        _cells[cell.name] = cell


def unregister(cell: Registered) -> None:
    """Release the name if ``cell`` still holds it."""
    with _lock:
        if _cells.get(cell.name) is cell:
            del _cells[cell.name]


def lookup(name: str) -> Registered | None:
    """The live actor registered under ``name``, or None."""
    return _cells.get(name)


def live_cells() -> list[Registered]:
    """Every registered actor."""
    with _lock:
        return list(_cells.values())


def add_thread(thread: threading.Thread) -> None:
    with _lock:
        _threads.add(thread)


def discard_thread(thread: threading.Thread) -> None:
    with _lock:
        _threads.discard(thread)


def live_threads() -> list[threading.Thread]:
    """The actor threads still running (a stopped actor's thread may outlive its cell)."""
    with _lock:
        return [t for t in _threads if t.is_alive()]
