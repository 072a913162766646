"""Process-wide operations: look actors up by name, stop them all."""

from __future__ import annotations

import atexit
import time

from llmos.actors._errors import ActorDeadError, ActorError
from llmos.actors._local_ref import LocalRef
from llmos.actors._registry import live_cells, live_threads, lookup

__all__ = ["find", "get", "running", "stop_all"]


def get(name: str) -> LocalRef:
    """The ref of the live actor named ``name`` in this process.

    Raises:
        ActorDeadError: no live actor has that name.
    """
    cell = lookup(name)
    if cell is None:
        raise ActorDeadError(f"no actor named {name!r} is running in this process")
    return cell.ref


def find(name: str) -> LocalRef | None:
    """The ref of the live actor named ``name`` in this process, or None (``get`` raises)."""
    cell = lookup(name)
    return cell.ref if cell is not None else None


def running() -> list[LocalRef]:
    """Refs of every live actor in this process."""
    return [cell.ref for cell in live_cells()]


def stop_all(timeout: float = 10.0) -> None:
    """Stop every actor in this process and wait until all their threads have ended.

    Each actor handles what is already in its mailbox, then stops. Actors started while this
    runs are stopped too.

    Raises:
        ActorError: some threads were still running after ``timeout`` (named in the message).
    """
    deadline = time.monotonic() + timeout
    while True:
        cells = live_cells()
        for cell in cells:
            cell.request_stop()
        for cell in cells:
            cell.stopped_event.wait(max(0.0, deadline - time.monotonic()))
        for thread in live_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        if not live_cells() or time.monotonic() >= deadline:
            break
    left = live_threads()
    if left or live_cells():
        names = sorted({t.name for t in left} | {c.name for c in live_cells()})
        raise ActorError(
            f"{len(names)} actor(s) still running {timeout} s after stop_all: "
            f"{', '.join(names[:10])}; a handler may be stuck"
        )


def _stop_at_exit() -> None:
    try:
        stop_all(timeout=5.0)
    except ActorError:
        pass


atexit.register(_stop_at_exit)
