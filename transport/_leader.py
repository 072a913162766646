"""An idle actor that serves remote requests reads them from the ROUTER socket itself.

Part of the I/O thread's machinery (:class:`~llmos.transport._io.IOLoop` mixes this in). When
a peer's request reaches a local actor, the node installs :meth:`RouterLeader.idle_wait` as
that actor's way to wait on an empty mailbox. Then, while the actor has nothing to do, its
thread becomes the ROUTER's reader (the leader; at most one per node): it takes the ROUTER's
descriptor out of the I/O thread's poll set and sleeps in ``poll`` on that descriptor and on
its own wake-up eventfd, which any put into its mailbox writes. When a request arrives it
reads the waiting frames itself, under the I/O lock, and hands every item on as the I/O
thread would (its own into its own mailbox, which it takes next). So a remote ask costs no
hand-off between the I/O thread and the actor thread (a futex wake, a thread wake-up and a
GIL hand-over, 30-50 us on a small VM), and the I/O thread does not wake for it at all.

Before it handles anything the leader gives the descriptor back, so a long handler never
keeps other actors' requests waiting; the I/O thread reads them meanwhile, exactly as before.
Frames are read in order under the lock by whichever thread reads, so each sender's order
holds. A put into the mailbox reads ``Mailbox.signal`` after queueing, and the leader sets the
signal before it checks the queue last, so a message is either seen by that check or wakes it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from llmos.transport._links import EPOLLIN
from llmos.transport._wake import lease_of_this_thread, signal_fd

if TYPE_CHECKING:
    from llmos.actors._mailbox import Envelope, Mailbox
    from llmos.transport._node import Node
    from llmos.transport._peer import Counters

__all__ = ["RouterLeader"]

log = logging.getLogger("llmos.transport")
_get_ident = threading.get_ident


class RouterLeader:
    """Lends the ROUTER socket to an idle actor thread (see the module doc)."""

    lock: threading.Lock
    counters: Counters
    router: zmq.Socket[Any] | None
    recheck: set[int]
    closing: bool
    thread: threading.Thread
    _fd_poll: Any
    _router_fd: int
    _touched: set[int]

    wake: Callable[[], None]  # IOLoop's
    _settle: Callable[[], None]  # FastPath's
    _on_router: Callable[[Any], None]  # RouterSide's

    node: Node
    leader = 0  # the leading thread's ident, 0 while the I/O thread reads the ROUTER
    _leader_wake = -1  # the leader's eventfd

    def idle_wait(self, mailbox: Mailbox, waiting: queue.SimpleQueue[Envelope]) -> Envelope:
        """The next envelope of an idle actor's mailbox, reading the ROUTER while it waits.

        Runs in the actor's thread (``Mailbox.get`` calls it). Falls back to waiting on the
        queue alone when another thread leads, the node is closing, or the platform has no
        epoll.
        """
        while True:
            if waiting.qsize():
                return waiting.get_nowait()
            lease = lease_of_this_thread()
            with self.lock:
                router = self.router
                if self.leader or self.closing or router is None or self._fd_poll is None:
                    router = None
                else:
                    fd = self._router_fd
                    self.leader = _get_ident()
                    self._leader_wake = lease.fd
                    self._fd_poll.modify(fd, 0)  # the I/O thread stops polling the ROUTER
                    mailbox.signal = lease.signal
                    # Every holder of the lock settles the sockets it used before letting go,
                    # so the descriptor signals anything new, unless a settle found input
                    # already waiting: that is in ``recheck``, and read here.
                    ready = fd in self.recheck
                    self.recheck.discard(fd)
            if router is None:
                return waiting.get()
            try:
                if not ready and waiting.empty():
                    ready = self._sleep(lease, fd)
            finally:
                with self.lock:
                    mailbox.signal = None
                    try:
                        if ready and self.router is router and not self.closing:
                            self.counters.actor_reads += 1
                            self._on_router(None)  # items for this actor go to its own mailbox
                    except Exception:  # as in the I/O thread: log it, keep serving
                        log.exception(
                            "node %s: error while an actor read its socket", self.node.name
                        )
                    finally:  # the ROUTER always goes back to the I/O thread
                        self.leader = 0
                        self._leader_wake = -1
                        if self.router is router and not self.closing:
                            self._fd_poll.modify(fd, EPOLLIN)
                            self._settle()
                        wake = bool(self.recheck)
                if wake:
                    self.wake()

    def _sleep(self, lease: Any, router_fd: int) -> bool:
        """Wait for the ROUTER's descriptor or the lease's eventfd; whether the ROUTER stirred."""
        wake = lease.fd
        ready = False
        for fd, _event in lease.watch(router_fd).poll():
            if fd == wake:
                try:
                    os.read(wake, 8)
                except BlockingIOError:
                    pass
            else:
                ready = True
        return ready

    def wake_leader(self) -> None:
        """Make the leader give the ROUTER back now (the node is closing; lock held)."""
        if self._leader_wake >= 0:
            signal_fd(self._leader_wake)
