"""The fast path: threads other than the I/O thread using a socket under the I/O lock.

Part of the I/O thread's machinery (:class:`~llmos.transport._io.IOLoop` mixes this in). An
asking thread sends its request itself (:meth:`FastPath.send_now`) and reads its answer itself
(:meth:`FastPath.read_peer`, called by :class:`~llmos.transport._direct.RemoteReply`), with the
peer's descriptor taken out of the I/O thread's poll set meanwhile (``mute``). ``ZMQ_FD`` is
edge-triggered: :meth:`FastPath._settle` re-reads EVENTS on every socket used since the last
settle, and marks those that still need handling for the I/O thread's next turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from llmos.actors import Reply
from llmos.transport._frames import pack_frame
from llmos.transport._links import EPOLLIN, EVENTS, NOBLOCK, POLLIN, POLLOUT
from llmos.transport._peer import Counters, Peer

if TYPE_CHECKING:
    from llmos.transport._node import Node

__all__ = ["FastPath"]


class FastPath:
    """Sending and reading from the calling thread; the edge-triggered bookkeeping."""

    node: Node
    counters: Counters
    lock: threading.Lock
    router: zmq.Socket[Any] | None
    recheck: set[int]
    closing: bool
    _touched: set[int]
    _shared: dict[int, Peer | None]
    _fd_poll: Any

    wake: Callable[[], None]  # IOLoop's
    _on_dealer: Callable[[Peer], None]  # PeerLinks'
    _send_dealer: Callable[[Peer, bytes], bool]  # PeerLinks'

    def _settle(self) -> None:
        """Recheck every socket used since the last settle whose EVENTS still need handling.

        Using a socket (send, recv, even reading EVENTS) may consume the signal on its
        descriptor while a message still waits, or while room to send has come back; such a
        socket is handled on the next turn, which then does not wait in ``poll``. Called with
        the lock held.
        """
        touched = self._touched
        if not touched:
            return
        shared = self._shared
        for fd in touched:
            if fd not in shared:
                continue  # closed since
            peer = shared[fd]
            if peer is None:
                router = self.router
                if router is not None and router.get(EVENTS) & POLLIN:  # type: ignore[operator]  # an int
                    self.recheck.add(fd)
            elif peer.socket is not None:
                events = peer.socket.get(EVENTS)
                if events & POLLIN or (peer.stalled is not None and events & POLLOUT):
                    self.recheck.add(fd)
        touched.clear()

    def read_peer(self, peer: Peer) -> None:
        """Read what the peer sent (a thread waiting for an answer calls this, lock held).

        The descriptor signalled, so a message is most likely waiting: it is read before
        EVENTS is (which saves one EVENTS call per answer; a signal from libzmq's flow
        control alone costs a refused recv instead).
        """
        sock = peer.socket
        if sock is not None:
            try:
                data = sock.recv(NOBLOCK)
            except zmq.Again:
                pass
            else:
                self.node.client.on_frame(peer, data)
            if sock is peer.socket:  # not replaced meanwhile (the peer went down)
                self._on_dealer(peer)  # anything more, a stalled frame, and EVENTS
        if self._touched:
            self._settle()

    def mute(self, peer: Peer) -> None:
        """A thread now reads the peer's socket itself: stop polling it here (lock held)."""
        peer.muted += 1
        if peer.muted == 1 and self._fd_poll is not None:
            self._fd_poll.modify(peer.fd, 0)

    def unmute(self, peer: Peer, generation: int) -> None:
        """The thread that muted the peer's socket is done with it (lock held)."""
        if peer.generation != generation or peer.socket is None:
            return  # the socket was replaced; the new one is polled afresh
        peer.muted -= 1
        if peer.muted == 0 and self._fd_poll is not None:
            self._fd_poll.modify(peer.fd, EPOLLIN)  # readiness is re-evaluated now

    def send_now(self, peer: Peer, item: list[Any], reply: Reply) -> bool:
        """Send a request to a peer from the calling thread, if that can be done at once.

        Only when nothing is queued or stalled ahead of it (so the order of one sender's items
        holds), the peer's connection is up, and no other thread holds the lock. Returns False
        when the item was not sent; the caller then queues it. A request whose reply already
        completed (the peer was marked down meanwhile, and its socket replaced) is dropped
        here, as it would be from the outbox.
        """
        if peer.outbox or peer.stalled is not None or peer.socket is None:
            return False
        lock = self.lock
        if not lock.acquire(False):
            return False
        try:
            sock = peer.socket
            if peer.outbox or peer.stalled is not None or sock is None or self.closing:
                return False
            if reply._done:
                return True
            sent = self._send_dealer(peer, pack_frame([item]))  # False: it waits in the outbox
            if sent:
                self.counters.items_out += 1
            self._settle()  # sending may have taken the signal for an answer that already waits
            recheck = bool(self.recheck)
        except zmq.ZMQError:
            sent = False  # the socket is failing: the I/O thread looks at it next turn
            self.recheck.add(peer.fd)
            recheck = True
        finally:
            lock.release()
        if recheck:
            self.wake()
        return sent
