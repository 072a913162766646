"""The I/O thread: the one thread that uses the node's ZeroMQ sockets.

Socket rule (zmq_socket(3): sockets are not thread-safe): the I/O thread creates, reads,
writes and closes every socket of the node: the ROUTER and the ZAP socket
(:mod:`llmos.transport._router`), one DEALER per peer with its monitor
(:mod:`llmos.transport._links`). No other thread ever touches a socket. Other threads hand it
work through the parts' queues (a peer's outbox, the reply queue) or :meth:`IOLoop.call`, and
wake it through an eventfd, written only while it sleeps in ``poll`` (:meth:`IOLoop.wake_soon`).

:class:`IOLoop` knows nothing of peers or frames. Its parts register their sockets with a
handler, and each adds a ``flush`` (run every turn, after the sockets' handlers), a ``due``
(seconds until it needs a turn: 0 when it has work queued) and a ``tick`` (run every
``interval``). Each turn it polls the sockets (``zmq.Poller``, level-triggered on each
socket's EVENTS) and the eventfd, runs the handlers of the ready sockets, the calls, the
flushes, and the ticks when due: everything already queued goes out in as few frames as the
limits allow, without waiting for more (batching is what makes tell throughput beat single
sends).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

__all__ = ["IOLoop", "Pulse"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic
_POLLIN = int(zmq.POLLIN)

_STALL_RETRY = 0.005
_ONE = (1).to_bytes(8, sys.byteorder)


def _gil_keeping_write() -> Callable[[int, bytes, int], int] | None:
    """libc ``write`` called without releasing the GIL (ctypes.PyDLL), or None.

    ``os.write`` releases the GIL, so a wake-up in the middle of a burst of tells would hand
    the GIL to the I/O thread, one message per thread switch. Writing 8 bytes to an eventfd
    never blocks, so holding the GIL through it is safe; the I/O thread then wakes, waits for
    the GIL, and drains the whole burst into one frame.
    """
    if not hasattr(os, "eventfd"):
        return None
    try:
        write = ctypes.PyDLL(None).write
    except (OSError, AttributeError):
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return write


_write_keeping_gil = _gil_keeping_write()


class Pulse:
    """A stream of beats that should come at least every ``gap`` seconds: the I/O thread's
    turns, or the frames of one peer (which sends heartbeats). It remembers when the last beat
    came and when the last gap longer than ``gap`` ended.

    ``beat`` is called by one thread (the I/O thread); ``missed_since`` by any thread.
    """

    __slots__ = ("gap", "last", "resumed")

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.last = _monotonic()
        self.resumed = -math.inf  # when the last gap longer than ``gap`` ended

    def beat(self, now: float) -> None:
        if now - self.last > self.gap:
            self.resumed = now  # written before ``last``: see missed_since
        self.last = now

    def missed_since(self, since: float, now: float) -> bool:
        """True if the beats stopped for longer than ``gap`` after ``since``, or stop now."""
        # ``last`` is read first: if it is fresh, the ``resumed`` that the same beat set is too.
        return now - self.last > self.gap or self.resumed > since


Handler = Callable[[Any], None]
"""A socket's handler, called with the argument it was registered with."""


class IOLoop:
    """Runs the node's sockets in one thread named ``llmos:io-<name>``.

    Args:
        name: the node's name (for the thread and the logs).
        interval: seconds between ticks (heartbeats and timers of the parts).
    """

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self.sleeping = False  # True while the thread is (about to be) blocked in poll
        self.woken = False  # a wake-up is already on its way: do not write the eventfd again
        self.closing = False
        # Its turns, which come at least every ``interval`` while it runs: a longer gap means
        # the node was frozen or starved, so its peers may have stopped hearing from it.
        self.pulse = Pulse(2 * interval)
        self.calls: deque[Callable[[], None]] = deque()
        self._flushes: list[Callable[[float], None]] = []
        self._dues: list[Callable[[], float]] = []
        self._ticks: list[Callable[[float], None]] = []
        self._poller = zmq.Poller()
        self._handlers: dict[Any, tuple[Handler, Any]] = {}
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._setup: Callable[[], object] = _nothing
        self._teardown: Callable[[], None] = _nothing
        if hasattr(os, "eventfd"):
            self._wake_r = self._wake_w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        self.thread = threading.Thread(target=self._run, name=f"llmos:io-{name}", daemon=True)

    # -- set-up, before start -------------------------------------------------------------

    def add_part(
        self,
        flush: Callable[[float], None],
        due: Callable[[], float],
        tick: Callable[[float], None] | None = None,
    ) -> None:
        """Have ``flush(now)`` run every turn, and ``tick(now)`` every ``interval``;
        ``due()`` says how soon the part needs a turn (0: now, ``inf``: not before a tick)."""
        self._flushes.append(flush)
        self._dues.append(due)
        if tick is not None:
            self._ticks.append(tick)

    # -- called from any thread ---------------------------------------------------------

    def start(self, setup: Callable[[], object], teardown: Callable[[], None]) -> None:
        """Start the thread, which runs ``setup`` first (opening and registering sockets) and
        ``teardown`` last; raise what ``setup`` raised."""
        self._setup, self._teardown = setup, teardown
        self.thread.start()
        self._started.wait()
        if self._start_error is not None:
            self.thread.join()
            self._close_wake()
            raise self._start_error

    def wake(self) -> None:
        """Wake the thread from ``poll`` (a full eventfd is already signalled; a closed one
        has nobody left to wake, so a failed write needs nothing more)."""
        if _write_keeping_gil is not None:
            _write_keeping_gil(self._wake_w, _ONE, 8)
            return
        try:  # pragma: no cover - non-Linux
            os.write(self._wake_w, _ONE)
        except OSError:
            pass

    def wake_soon(self) -> None:
        """Wake the thread if it sleeps and no wake-up is on its way (after queueing work)."""
        if self.sleeping and not self.woken:
            self.woken = True
            self.wake()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the I/O thread on its next turn."""
        self.calls.append(fn)
        self.wake()

    def stop(self, timeout: float) -> None:
        self.closing = True
        self.wake()
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.error("I/O thread of %s did not stop within %.3g s", self.name, timeout)
        else:
            self._close_wake()

    def _close_wake(self) -> None:
        for fd in {self._wake_r, self._wake_w}:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the I/O thread: sockets ------------------------------------------------------------

    def register(self, sock: Any, handler: Handler, arg: Any = None) -> None:
        """Poll ``sock`` for input and call ``handler(arg)`` when it is ready."""
        self._poller.register(sock, _POLLIN)
        self._handlers[sock] = (handler, arg)

    def modify(self, sock: Any, events: int) -> None:
        """Poll ``sock`` for these events instead (POLLOUT too, while a frame waits for room)."""
        self._poller.modify(sock, events)

    def unregister(self, sock: Any) -> None:
        self._poller.unregister(sock)
        self._handlers.pop(sock, None)

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.register(self._wake_r, self._on_wake)
            self._setup()
        except BaseException as exc:
            self._start_error = exc
            self._run_teardown()
            self._started.set()
            return
        self._started.set()
        try:
            next_tick = _monotonic() + self.interval
            while not self.closing:
                try:
                    next_tick = self._turn(next_tick)
                except zmq.ContextTerminated:
                    raise
                except Exception:  # a bug must not silently end the node: log, go on
                    log.exception("node %s: error in the I/O thread", self.name)
                    time.sleep(_STALL_RETRY)  # never a hot loop of failures
        except BaseException:
            log.exception("the I/O thread of node %s crashed; the node is closing", self.name)
            self.closing = True
        finally:
            self._run_teardown()

    def _run_teardown(self) -> None:
        try:
            self._teardown()
        except Exception:
            log.exception("node %s: error while closing its sockets", self.name)

    def _due(self) -> float:
        soonest = math.inf
        for due in self._dues:  # a plain loop: this runs twice a turn
            left = due()
            if left < soonest:
                soonest = left
        return soonest

    def _turn(self, next_tick: float) -> float:
        # From here senders see the thread sleeping, so what they queue now wakes it through
        # the eventfd; what they queued before, ``_due`` sees. Until this thread holds the GIL
        # again after poll, ``woken`` keeps them from writing the eventfd once per message.
        self.woken = False
        self.sleeping = True
        timeout = 0.0 if self.calls else self._due()
        if timeout:
            timeout = min(timeout, max(0.0, next_tick - _monotonic()))
        events = self._poller.poll(math.ceil(timeout * 1000))
        self.sleeping = False
        self.pulse.beat(_monotonic())
        handlers = self._handlers
        for target, _event in events:
            entry = handlers.get(target)
            if entry is None:
                continue  # closed by an earlier handler of this turn
            try:
                entry[0](entry[1])
            except zmq.ContextTerminated:
                raise
            except Exception:  # one failing socket must not keep the others waiting
                log.exception("node %s: error while handling socket events", self.name)
        calls = self.calls
        while calls:
            fn = calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("I/O call failed")
        now = _monotonic()
        for flush in self._flushes:
            flush(now)
        if now >= next_tick:
            for tick in self._ticks:
                tick(now)
            next_tick = now + self.interval
        return next_tick

    def _on_wake(self, _: Any) -> None:
        try:
            os.read(self._wake_r, 8)
        except OSError:  # BlockingIOError: nothing to read
            pass


def _nothing() -> None:
    pass
