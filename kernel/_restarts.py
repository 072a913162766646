"""Restarts: how a supervisor brings its failed children back (plain, no thread of its own).

A failure is judged against the restart type and the intensity window (the supervisor's, or
with ``escalate=False`` the child's own). An allowed restart takes the group the strategy names,
waits what the backoff says, and starts the group again, in start order, once every member is
down and the wait ran out. The :class:`~llmos.kernel.Supervisor` calls it from its own thread
only, and acts on its judgements itself (its hooks, stopping a child for good, escalating).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

from llmos.kernel._children import ChildRecord, Children, RestartGroup
from llmos.kernel._errors import SupervisionError
from llmos.kernel._policy import RestartWindow, give_up_error, restart_group, should_restart
from llmos.kernel._spec import Backoff, Strategy
from llmos.kernel._timer import Timer

__all__ = ["Action", "Restarts"]

Action = Literal["restart", "stop", "give_up", "escalate"]
"""What a supervisor does about a failed child (see :meth:`Supervisor.on_child_failure`)."""


class Restarts:
    """A supervisor's restart policy, applied to its children table.

    Args:
        table: the supervisor's children.
        strategy: which siblings restart with a failed child.
        window: the supervisor's intensity window.
        backoff: the waits between consecutive restarts of a child.
        escalate: True: past the window the supervisor fails; False: each child has a window
            of its own, and past it only that child stops for good.
        timer: the clock, and what waits out a backoff.
        wait_over: called (in the timer's thread) with a group's id when its backoff ran out.
    """

    def __init__(
        self,
        table: Children,
        *,
        strategy: Strategy,
        window: RestartWindow,
        backoff: Backoff,
        escalate: bool,
        timer: Timer,
        wait_over: Callable[[int], None],
    ) -> None:
        self.table = table
        self.strategy: Strategy = strategy
        self.window = window
        self.backoff = backoff
        self.escalate = escalate
        self.timer = timer
        self._wait_over = wait_over
        self._rng = random.Random()

    def child_window(self) -> RestartWindow | None:
        """A new child's own intensity window (None: it counts against the supervisor's)."""
        if self.escalate:
            return None
        return RestartWindow(self.window.max_restarts, self.window.within)

    def judge(
        self, rec: ChildRecord, error: BaseException, now: float, supervisor: str
    ) -> tuple[Action, SupervisionError | None]:
        """What to do about ``rec``'s failure ``error``.

        ``stop``: its restart type says no. ``restart``: within the window (counted in it).
        ``escalate`` or ``give_up``, with the SupervisionError saying so: past the window.
        """
        if not should_restart(rec.spec.restart, error):
            return "stop", None
        window = rec.window if rec.window is not None else self.window
        if window.allow(now):
            return "restart", None
        err = give_up_error(
            supervisor, rec.cell.name, error, window, self.escalate, rec.window is None
        )
        return ("escalate" if self.escalate else "give_up"), err

    def restart(self, rec: ChildRecord, error: BaseException, now: float, supervisor: str) -> None:
        """Restart ``rec``, which :meth:`judge` allowed, with its group, after its backoff."""
        table = self.table
        name = rec.cell.name
        current = table.group_of(rec)
        if current is not None:  # already going down with a group restart
            current.down.add(name)
            self.fire_if_ready(current)
            return
        if rec.last_restart is not None and now - rec.last_restart >= self.backoff.reset_after:
            rec.attempt = 0
        delay = self.backoff.delay(rec.attempt, self._rng)
        rec.attempt += 1
        names = restart_group(self.strategy, table.names(), name)
        reason = SupervisionError(
            f"restarted together with {name!r}, which failed ({self.strategy} "
            f"in supervisor {supervisor!r})"
        )
        reason.__cause__ = error
        group, others = table.plan(names, name, delay, reason)
        if delay > 0:
            group.handle = self.timer.call_later(delay, lambda: self._wait_over(group.id))
        for old in others:
            self.fire_if_ready(old)
        self.fire_if_ready(group)

    def halted(self, rec: ChildRecord) -> None:
        """``rec`` ended its instance for a group restart: start the group if it is ready."""
        group = self.table.group_of(rec)
        if group is None:
            rec.cell.restart()  # its group went away meanwhile: bring it back on its own
            return
        group.down.add(rec.cell.name)
        self.fire_if_ready(group)

    def due(self, group_id: int, timed: bool) -> None:
        """Group ``group_id``'s backoff ran out (``timed``), or one of its members went away."""
        group = self.table.group(group_id)
        if group is not None:
            group.due = group.due or timed
            self.fire_if_ready(group)

    def fire_if_ready(self, group: RestartGroup) -> None:
        """Start the group's members again if all are down and its wait ran out."""
        recs = self.table.take_ready(group)
        if recs is None:
            return
        now = self.timer.now()
        for rec in recs:
            rec.last_restart = now
            rec.cell.restart()
