"""Who is alive in this process: the registry of actor cells by name, and their threads.

It also holds the binding that tells an ``Actor`` being constructed which cell it belongs to
(a cell builds its instance inside :func:`binding`). Every other module of the core that needs
to find a cell by name imports this one; it imports none of them at run time.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from llmos.actors._errors import NameTaken

if TYPE_CHECKING:
    from llmos.actors._cell import Cell

__all__ = [
    "add_thread",
    "binding",
    "bound_cell",
    "discard_thread",
    "live_cells",
    "live_threads",
    "lookup",
    "next_number",
    "register",
    "unregister",
]

_cells: dict[str, Cell] = {}
_lock = threading.Lock()
_threads: set[threading.Thread] = set()
_numbers = itertools.count(1)
_binding = threading.local()


def next_number() -> int:
    """A process-wide serial for default actor names (``ClassName-N``)."""
    return next(_numbers)


def register(cell: Cell) -> None:
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


def unregister(cell: Cell) -> None:
    """Release the name if ``cell`` still holds it."""
    with _lock:
        if _cells.get(cell.name) is cell:
            del _cells[cell.name]


def lookup(name: str) -> Cell | None:
    """The live cell registered under ``name``, or None."""
    return _cells.get(name)


def live_cells() -> list[Cell]:
    """Every registered cell."""
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


@contextlib.contextmanager
def binding(cell: Cell) -> Iterator[None]:
    """Make ``cell`` the one an Actor constructed in this thread attaches to."""
    previous = getattr(_binding, "cell", None)
    _binding.cell = cell
    try:
        yield
    finally:
        _binding.cell = previous


def bound_cell() -> Cell | None:
    """The cell an Actor constructed now in this thread belongs to (None outside a start)."""
    cell: Cell | None = getattr(_binding, "cell", None)
    return cell
