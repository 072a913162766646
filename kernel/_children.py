"""A supervisor's children table and the messages its children's threads send it.

:class:`Children` is plain bookkeeping (no threads of its own, one lock): the records in start
order, and the restart groups waiting for their members to go down and their backoff to run
out. The :class:`~llmos.kernel.Supervisor` actor drives it: from callers' threads (spawn), from
children's threads (a child stopped), and from its own thread (decisions).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence

from llmos.actors import NameTaken, message
from llmos.actors.lowlevel import Cell
from llmos.kernel._errors import SupervisionError
from llmos.kernel._policy import RestartWindow
from llmos.kernel._spec import ChildSpec
from llmos.kernel._timer import TimerHandle

__all__ = [
    "ChildFailed",
    "ChildHalted",
    "ChildRecord",
    "Children",
    "RestartDue",
    "RestartGroup",
    "Sync",
    "stop_children",
]

log = logging.getLogger("llmos.kernel")

_serials = itertools.count(1)
_group_ids = itertools.count(1)


@message("llmos.kernel.ChildFailed", local_only=True)
class ChildFailed:
    """Told by a failed child's thread to its supervisor (decided in the supervisor's thread)."""

    name: str
    serial: int
    incarnation: int


@message("llmos.kernel.ChildHalted", local_only=True)
class ChildHalted:
    """A sibling ended its instance for a group restart and waits to be started again."""

    name: str
    serial: int
    incarnation: int


@message("llmos.kernel.RestartDue", local_only=True)
class RestartDue:
    """A group restart's backoff ran out (``timed``) or one of its members went away."""

    group: int
    timed: bool = True


@message("llmos.kernel.Sync")
class Sync:
    """Ask it to wait until a supervisor has handled everything sent to it before (tests)."""


class ChildRecord:
    """One supervised child: its spec, its cell, and its restart bookkeeping."""

    __slots__ = (
        "attempt",
        "cell",
        "group",
        "initial",
        "last_restart",
        "serial",
        "spec",
        "window",
    )

    def __init__(
        self, spec: ChildSpec, cell: Cell, window: RestartWindow | None, initial: bool
    ) -> None:
        self.spec = spec
        self.cell = cell
        self.serial = next(_serials)  # process-wide, so a stale report never matches
        self.attempt = 0
        self.last_restart: float | None = None
        self.group = 0
        self.window = window
        self.initial = initial


class RestartGroup:
    """Children that come back together, once all are down and the backoff has run out."""

    __slots__ = ("down", "due", "handle", "id", "names")

    def __init__(self, due: bool) -> None:
        self.id = next(_group_ids)
        self.names: list[str] = []
        self.down: set[str] = set()
        self.due = due
        self.handle: TimerHandle | None = None


class Children:
    """The children of one supervisor, in start order, and its pending restart groups."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.lock = threading.RLock()
        self.closing = False
        self._recs: dict[str, ChildRecord] = {}
        self._groups: dict[int, RestartGroup] = {}

    def add(self, rec: ChildRecord) -> None:
        """Raises NameTaken or SupervisionError (closing); the caller starts the cell after."""
        name = rec.cell.name
        with self.lock:
            if self.closing:
                raise SupervisionError(
                    f"supervisor {self.owner!r} is stopping; start {name!r} under a running "
                    "supervisor"
                )
            if name in self._recs:
                raise NameTaken(
                    f"supervisor {self.owner!r} already has a child named {name!r}; pick "
                    "another name"
                )
            self._recs[name] = rec

    def discard(self, rec: ChildRecord) -> None:
        with self.lock:
            if self._recs.get(rec.cell.name) is rec:
                del self._recs[rec.cell.name]

    def get(self, name: str) -> ChildRecord | None:
        return self._recs.get(name)

    def known(self, cell: Cell) -> ChildRecord | None:
        """The record of ``cell`` if it is still this supervisor's child."""
        rec = self._recs.get(cell.name)
        return rec if rec is not None and rec.cell is cell else None

    def records(self) -> list[ChildRecord]:
        with self.lock:
            return list(self._recs.values())

    def names(self) -> list[str]:
        with self.lock:
            return list(self._recs)

    def remove(self, cell: Cell) -> tuple[ChildRecord | None, RestartGroup | None]:
        """Forget a child that stopped for good (and drop it from its pending group)."""
        with self.lock:
            rec = self.known(cell)
            if rec is None:
                return None, None
            del self._recs[cell.name]
            group = self._groups.get(rec.group)
            if group is not None and cell.name in group.names:
                group.names.remove(cell.name)
                group.down.discard(cell.name)
            return rec, group

    def group_of(self, rec: ChildRecord) -> RestartGroup | None:
        with self.lock:
            return self._groups.get(rec.group)

    def group(self, group_id: int) -> RestartGroup | None:
        with self.lock:
            return self._groups.get(group_id)

    def plan(
        self, names: Sequence[str], failed: str, delay: float, reason: BaseException
    ) -> tuple[RestartGroup, list[RestartGroup]]:
        """Form the group that restarts ``names``; running siblings are asked to halt.

        Returns:
            The new group, and the older groups that lost members to it (maybe ready now).
        """
        group = RestartGroup(due=delay <= 0)
        others: list[RestartGroup] = []
        with self.lock:
            for name in names:
                rec = self._recs.get(name)
                if rec is None:
                    continue
                old = self._groups.get(rec.group)
                if old is not None and name in old.names:
                    old.names.remove(name)
                    old.down.discard(name)
                    others.append(old)
                cell = rec.cell
                if name == failed or cell.state in ("failed", "restarting"):
                    group.down.add(name)
                elif not cell.request_restart(reason):
                    continue  # stopping, stopped or not started: not ours to restart
                group.names.append(name)
                rec.group = group.id
            self._groups[group.id] = group
        return group, others

    def take_ready(self, group: RestartGroup) -> list[ChildRecord] | None:
        """The group's members in start order if it is due and all are down (it is removed)."""
        with self.lock:
            if not group.due or not group.down.issuperset(group.names):
                return None
            if self._groups.pop(group.id, None) is None:
                return None
            recs = [self._recs[n] for n in group.names if n in self._recs]
            for rec in recs:
                rec.group = 0
            return recs

    def close(self) -> tuple[list[ChildRecord], list[RestartGroup]]:
        """Refuse new children; hand back the children and the pending groups."""
        with self.lock:
            self.closing = True
            groups = list(self._groups.values())
            self._groups.clear()
            return list(self._recs.values()), groups


def stop_children(recs: Sequence[ChildRecord], reason: str, graceful: bool, timeout: float) -> None:
    """Stop children newest first and wait for them, at most ``timeout`` in all.

    Graceful: each finishes what is queued (``request_stop``). Otherwise each stops now
    (``finalize``): queued asks fail with ActorDeadError, queued tells go to dead letters.
    """
    for rec in reversed(recs):
        if graceful:
            rec.cell.request_stop()
        else:
            rec.cell.finalize(reason)
    deadline = time.monotonic() + timeout
    for rec in recs:
        if not rec.cell.stopped_event.wait(max(0.0, deadline - time.monotonic())):
            log.error("child %s did not stop within %g s; stopping it now", rec.cell.name, timeout)
            rec.cell.finalize(f"{reason} (did not finish in {timeout:g} s)")
