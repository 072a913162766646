"""Timers for supervision and autoscaling: one shared ``llmos:timer`` thread, or a manual clock.

A supervisor waits between restarts (backoff), a pool checks its backlog every so often, and a
restart-intensity window needs the time. All three go through a :class:`Timer`, so a test can
swap in a :class:`ManualTimer` and move time forward by hand instead of sleeping.

:class:`ThreadTimer` runs its callbacks in one thread named ``llmos:timer``. The thread exists
only while something is scheduled: it ends as soon as nothing is pending (cancelled entries
included), so a process whose supervisors have all stopped has no timer thread left.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["ManualTimer", "ThreadTimer", "Timer", "TimerHandle", "default_timer"]

log = logging.getLogger("llmos.kernel")


class TimerHandle:
    """A scheduled callback; :meth:`cancel` keeps it from running if it has not run yet."""

    __slots__ = ("callback", "cancelled", "due", "timer")

    def __init__(self, due: float, callback: Callable[[], None], owner: object) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False
        self.timer: object | None = owner  # the timer it waits on; None once run or cancelled

    def cancel(self) -> None:
        """Cancel the callback (no effect once it has run)."""
        cancel = getattr(self.timer, "cancel_handle", None)
        if cancel is not None:
            cancel(self)

    def run(self) -> None:
        """Run the callback now (the timer does, when it is due); what it raises is logged."""
        try:
            self.callback()
        except Exception:
            log.exception("a timer callback raised; it is dropped")


class Timer(Protocol):
    """What supervisors and pools need from a clock: the time, and callbacks after a delay."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` (in the timer's own thread) after ``delay`` seconds."""
        ...


class ThreadTimer:
    """Real time: callbacks run in one ``llmos:timer`` thread that lives while any is pending."""

    def __init__(self, name: str = "llmos:timer") -> None:
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._live = 0
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay), callback, self)
        with self._cond:
            heapq.heappush(self._heap, (handle.due, next(self._seq), handle))
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        return handle

    def cancel_handle(self, handle: TimerHandle) -> None:
        """Cancel one handle (what ``TimerHandle.cancel`` calls)."""
        with self._cond:
            if not handle.cancelled and handle.timer is self:
                handle.cancelled = True
                handle.timer = None
                self._live -= 1
                self._cond.notify()

    def cancel_all(self) -> None:
        """Cancel everything pending (the thread then ends)."""
        with self._cond:
            for _, _, handle in self._heap:
                handle.cancelled = True
                handle.timer = None
            self._heap.clear()
            self._live = 0
            self._cond.notify()

    def pending(self) -> int:
        """How many callbacks are waiting."""
        return self._live

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._cond:
                while True:
                    if self._live <= 0:
                        heap.clear()
                        self._live = 0
                        self._thread = None
                        return
                    while heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                    wait = heap[0][0] - time.monotonic()
                    if wait <= 0:
                        handle = heapq.heappop(heap)[2]
                        handle.timer = None  # run: cancelling it now has no effect
                        self._live -= 1
                        break
                    self._cond.wait(wait)
            handle.run()


class ManualTimer:
    """A clock that only moves when a test calls :meth:`advance`; callbacks run in that call.

    Example::

        timer = ManualTimer()
        sup = kernel().spawn(Supervisor, children=[...], timer=timer)
        ...
        timer.wait_pending(1)   # the supervisor scheduled its delayed restart
        timer.advance(0.5)      # the restart is due now: it runs in this thread
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        self._pending: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        with self._cond:
            handle = TimerHandle(self._now + max(0.0, delay), callback, self)
            heapq.heappush(self._pending, (handle.due, next(self._seq), handle))
            self._cond.notify_all()
        return handle

    def cancel_handle(self, handle: TimerHandle) -> None:
        """Cancel one handle (what ``TimerHandle.cancel`` calls)."""
        with self._cond:
            handle.cancelled = True
            handle.timer = None
            self._pending = [e for e in self._pending if e[2] is not handle]
            heapq.heapify(self._pending)
            self._cond.notify_all()

    def delays(self) -> list[float]:
        """Seconds from now until each pending callback is due, soonest first."""
        with self._cond:
            return [due - self._now for due, _, _ in sorted(self._pending)]

    def wait_pending(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` callbacks are pending; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._pending) >= count, timeout)

    def advance(self, seconds: float) -> int:
        """Move time forward, running every callback that falls due, in order, in this thread.

        Returns:
            How many callbacks ran.
        """
        target = self._now + seconds
        ran = 0
        while True:
            with self._cond:
                if not self._pending or self._pending[0][0] > target:
                    self._now = target
                    return ran
                due, _, handle = heapq.heappop(self._pending)
                handle.timer = None
                self._now = max(self._now, due)
            handle.run()
            ran += 1


_default: list[ThreadTimer] = []
_default_lock = threading.Lock()


def default_timer() -> ThreadTimer:
    """The process-wide real-time timer that supervisors and pools use unless given another."""
    with _default_lock:
        if not _default:
            _default.append(ThreadTimer())
        return _default[0]
