"""Waiting for a remote answer in the asking thread, by reading the peer's socket itself.

A thread that calls ``get()`` on a remote ask sleeps in ``poll`` on the peer's dealer
descriptor and on a wake-up eventfd of its own (its lease, :mod:`llmos.transport._wake`), not
on a lock the I/O thread would release. Before it sleeps, it polls them without sleeping for up
to the node's ``spin_wait`` (0.3 ms by default), while that peer's answers have been coming
back within it: on a small VM the sleep and the wake-up cost more than a fast round trip
itself (:func:`_spin`).

When the descriptor signals, it takes the I/O lock and reads the socket itself, which saves
the hand-off from the I/O thread (about 30 us, and the I/O thread's CPU, on a small VM). While
it waits, the I/O thread stops polling that descriptor (``IOLoop.mute``), so one answer wakes
one thread. Whenever another thread completes the reply instead (the I/O thread read the
answer first, the peer was marked down, the node closed), it writes the waiter's eventfd, so
the waiter never sleeps past its answer. ``get(timeout=...)`` and ``ask_async`` do not wait on
the socket; the I/O thread reads their answers.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmos.actors import Reply
from llmos.transport._wake import lease_of_this_thread, signal_fd

if TYPE_CHECKING:
    from llmos.transport._io import IOLoop
    from llmos.transport._peer import Peer

__all__ = ["RemoteReply", "direct_waits"]

_monotonic = time.monotonic
_get_ident = threading.get_ident
_BROKEN = (select.POLLERR | select.POLLHUP | select.POLLNVAL) if hasattr(select, "poll") else 0
_RTT_WEIGHT = 0.125


def direct_waits() -> bool:
    """Whether this platform lets an asking thread wait on the socket itself (Linux)."""
    return hasattr(os, "eventfd") and hasattr(select, "poll")


class RemoteReply(Reply):  # type: ignore[misc,unused-ignore]
    """The answer to an ask sent to a peer; ``get()`` reads the answer in the calling thread."""

    __slots__ = ("_io", "_owner", "_peer", "_wake")

    def __init__(self, deadline: float, target: Any, span: float, io: IOLoop, peer: Peer) -> None:
        super().__init__(deadline, target, span)
        self._io = io
        self._peer = peer
        self._owner = 0
        self._wake = -1

    def _deliver(self) -> None:
        super()._deliver()
        wake = self._wake
        if wake >= 0 and self._owner != _get_ident():
            signal_fd(wake)

    def get(self, timeout: float | None = None) -> Any:
        if not self._done and timeout is None and _DIRECT:
            self._wait_direct()
        if self._done and self._error is None:
            return self._value  # what Reply.get returns then, without the call
        return super().get(timeout)

    result = get

    def _wait_direct(self) -> None:
        """Read the peer's socket until the answer is in or the deadline passes."""
        io, peer = self._io, self._peer
        fd = peer.fd
        me = _get_ident()
        if fd < 0 or me == io.ident:
            return  # no connection yet (the I/O thread reads it), or called from the I/O thread
        lease = lease_of_this_thread()
        wake = lease.fd
        poll = lease.watch(fd).poll
        # Another thread already waits on this reply's socket: only one can be woken through
        # ``_wake``, so this one waits on the reply itself. (No call between the test and the
        # store, so no other thread runs in between.)
        if self._wake >= 0:
            return
        self._wake = wake
        self._owner = me
        lock = io.lock
        with lock:
            if peer.fd != fd:
                self._wake = -1
                return
            generation = peer.generation
            io.mute(peer)  # answers wake this thread only, not the I/O thread too
        muted = True
        try:
            # Poll without sleeping first, when answers from this peer come back quickly;
            # then sleep. An answer that came before now was either left signalled on the
            # descriptor, or read by a thread that used the socket since (which then wakes
            # this one through ``wake``, or marked the socket for the I/O thread to read).
            events = _spin(poll, io, peer)
            while not self._done:
                if not events:
                    left = self.deadline - _monotonic()
                    if left <= 0:
                        return
                    events = poll(math.ceil(left * 1000))
                for ready, event in events:
                    if event & _BROKEN:
                        return  # fall back to waiting on the reply itself
                    if ready == wake:
                        try:
                            os.read(wake, 8)
                        except BlockingIOError:
                            pass
                events = []
                if self._done:
                    return
                with lock:  # the I/O thread holds it only while it works, never while it sleeps
                    if peer.generation != generation:
                        return  # the socket was replaced (its asks were failed)
                    io.read_peer(peer)
                    wake_io = bool(io.recheck)
                    if self._done:  # give the socket back while the lock is held anyway
                        self._wake = -1
                        muted = False
                        io.unmute(peer, generation)
                if wake_io:
                    io.wake()
        finally:
            # How long answers from this peer take, as the asker sees them (a moving average;
            # threads may race on it, which only blurs an estimate).
            peer.rtt += (_monotonic() - (self.deadline - self.span) - peer.rtt) * _RTT_WEIGHT
            self._wake = -1
            if muted:
                with lock:
                    io.unmute(peer, generation)


def _spin(
    poll: Callable[[int], list[tuple[int, int]]], io: IOLoop, peer: Peer
) -> list[tuple[int, int]]:
    """Poll the waiter's descriptors without sleeping, for up to the node's ``spin_wait``.

    Only while answers from this peer have been taking less than that (so a slow peer, a
    model actor say, costs no spinning), and only one thread of the node at a time (so
    spinning never takes more than one CPU). Returns the events, or none if nothing came.

    Why: on a small VM, the sleep in ``poll`` and the wake-up cost more than a fast round
    trip itself (about 60 us of a 150 us ask on 2 vCPUs); a thread that is still running
    when the answer lands skips them. ``poll(0)`` releases the GIL, so the process's other
    threads run meanwhile.
    """
    spin = io.spin
    if not spin or peer.rtt >= spin or not io.spin_lock.acquire(False):
        return []
    try:
        counters = io.counters
        end = _monotonic() + spin
        while True:
            events = poll(0)
            if events:
                counters.spin_hits += 1
                return events
            if _monotonic() >= end:
                counters.spin_misses += 1
                return events
    finally:
        io.spin_lock.release()


_DIRECT = direct_waits()
