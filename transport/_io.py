"""The I/O thread, and the lock that guards a node's ZeroMQ sockets.

ZeroMQ sockets are not thread-safe; zmq_socket(3) allows using one from another thread only
after migrating it with a full memory barrier, which here is :attr:`IOLoop.lock`. The I/O
thread creates, polls and closes every socket. It holds the lock while it works and not while
it sleeps: it waits in ``poll`` on the sockets' file descriptors (``ZMQ_FD``), not on the
sockets, so while it sleeps another thread may take the lock and use a socket directly. That
is the fast path of an ask, which saves three thread hand-offs per round trip (each about
30 us, plus the CPU to wake a thread, on a small VM):

- the asking thread sends its request itself when nothing is queued ahead of it for that peer
  (so one sender's order holds);
- it waits for the answer by polling the peer's descriptor and reads the socket itself
  (:mod:`llmos.transport._direct`);
- the serving actor sends its answer through the ROUTER itself.

A sender that finds the lock taken queues its item instead (below); a waiting reader takes the
lock only for one read, and the I/O thread never holds it while it sleeps.
``ZMQ_FD`` is edge-triggered, so after any use of a socket its ``EVENTS`` are read again, and a
socket that still has something to read is rechecked without waiting for its descriptor
(:meth:`IOLoop._settle`).

Otherwise threads append items to a peer's outbox (or a reply to the reply queue) and wake this
thread through an eventfd, written only while it sleeps in ``poll``. Each turn it packs
everything already queued for one peer into as few frames as the limits allow, without waiting
for more: batching is what makes tell throughput beat single sends.

Sockets are configured against libzmq's defaults: ROUTER_MANDATORY (no silent loss to an
unknown peer), IMMEDIATE on dealers (nothing queues toward a dead connection, so a reconnect
never delivers a stale backlog), bounded LINGER, ZMTP heartbeats, a short HANDSHAKE_IVL,
MAXMSGSIZE, and deliberate high-water marks. Application heartbeats (PING/PONG) decide when a
peer is down; socket monitor events make a lost connection or a refused key fail pending asks
at once.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import math
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import zmq

from llmos.actors import AuthError, LlmosError, Reply, TransportError
from llmos.transport._frames import pack_frame
from llmos.transport._links import BURST, EPOLLIN, EVENTS, NOBLOCK, POLLIN, POLLOUT, PeerLinks
from llmos.transport._peer import Peer
from llmos.transport._security import ZAP_DOMAIN, ZAP_ENDPOINT

if TYPE_CHECKING:
    from llmos.transport._node import Node

__all__ = ["IOLoop"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic

_STALL_RETRY = 0.005
RCVMORE = int(zmq.RCVMORE)
SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_ONE = (1).to_bytes(8, sys.byteorder)


def _gil_keeping_write() -> Callable[[int, bytes, int], int] | None:
    """libc ``write`` called without releasing the GIL (ctypes.PyDLL), or None.

    ``os.write`` releases the GIL, so every wake-up would hand the GIL to the I/O thread in the
    middle of a burst of sends, one message per thread switch. Writing 8 bytes to an eventfd
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


class IOLoop(PeerLinks):  # type: ignore[misc,unused-ignore]
    """Runs the node's sockets in one thread named ``llmos:io-<node name>``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.ctx: zmq.Context[Any] = node.context
        self.limits = node.limits
        self.heartbeat = node.heartbeat
        self.interval = max(0.02, node.heartbeat / 4)
        self.counters = node.counters
        self.router: zmq.Socket[Any] | None = None
        self.zap: zmq.Socket[Any] | None = None
        self.address = ""
        self.replies: collections.deque[tuple[bytes, list[Any], float]] = collections.deque()
        self.ready: collections.deque[Peer] = collections.deque()
        self.calls: collections.deque[Callable[[], None]] = collections.deque()
        self.lock = threading.Lock()  # whoever holds it may use the sockets (see module doc)
        self.recheck: set[int] = set()  # descriptors to handle next turn without waiting
        self._touched: set[int] = set()  # descriptors of sockets used while the lock was held
        self._shared: dict[int, Peer | None] = {}  # socket descriptors: a peer's, or the router's
        self._router_fd = -1
        # Dealer descriptors sit in an epoll set that the I/O thread polls as one descriptor,
        # so a thread waiting for an answer can take its peer's descriptor out of that set
        # without waking the I/O thread (see mute).
        self._dealer_poll: Any = select.epoll() if hasattr(select, "epoll") else None
        self.sleeping = False  # True while the thread is (about to be) blocked in poll
        self.woken = False  # a wake-up is already on its way: do not write the eventfd again
        self.closing = False
        self._stalled: list[tuple[bytes, bytes, float, int]] = []
        self._poller = zmq.Poller()
        self._handlers: dict[Any, tuple[Callable[[Any], None], Any]] = {}
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        if hasattr(os, "eventfd"):
            self._wake_r = self._wake_w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        self.thread = threading.Thread(target=self._run, name=f"llmos:io-{node.name}", daemon=True)

    # -- called from any thread ---------------------------------------------------------

    def start(self) -> str:
        """Start the thread; bind; return the bound endpoint or raise what binding raised."""
        self.thread.start()
        self._started.wait()
        if self._start_error is not None:
            self.thread.join()
            self._close_wake()
            raise self._start_error
        return self.address

    def wake(self) -> None:
        if _write_keeping_gil is not None:
            _write_keeping_gil(self._wake_w, _ONE, 8)  # a full eventfd (EAGAIN) is already awake
            return
        try:
            os.write(self._wake_w, _ONE)
        except (BlockingIOError, OSError):
            pass  # already signalled, or closing

    def post(self, peer: Peer, item: list[Any]) -> None:
        """Queue an item for a peer (the caller checked back-pressure)."""
        peer.outbox.append(item)
        if not peer.queued:
            peer.queued = True
            self.ready.append(peer)
        if self.sleeping and not self.woken:
            self.woken = True
            self.wake()

    def post_reply(self, ident: bytes, item: list[Any], deadline: float) -> None:
        """Send (or else queue) an answer to a peer that asked through our ROUTER socket."""
        if self._reply_now(ident, item, deadline):
            return
        self.replies.append((ident, item, deadline))
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
            log.error("I/O thread of %s did not stop within %.3g s", self.node.name, timeout)
        else:
            self._close_wake()

    def _close_wake(self) -> None:
        for fd in {self._wake_r, self._wake_w}:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._setup()
        except BaseException as exc:
            self._start_error = exc
            self._teardown(0)
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
                    log.exception("node %s: error in the I/O thread", self.node.name)
                    time.sleep(_STALL_RETRY)  # never a hot loop of failures
        except BaseException:
            log.exception("the I/O thread of node %s crashed; the node is closing", self.node.name)
            self.closing = True
        finally:
            self._teardown(self.node.close_linger)

    def _setup(self) -> None:
        node = self.node
        self._poller.register(self._wake_r, POLLIN)
        self._handlers[self._wake_r] = (self._on_wake, None)
        if self._dealer_poll is not None:
            dealers = self._dealer_poll.fileno()
            self._poller.register(dealers, POLLIN)
            self._handlers[dealers] = (self._on_dealers, None)
        if node.keys is not None:
            zap = self.ctx.socket(zmq.REP)
            zap.linger = 0
            self.zap = zap
            try:
                zap.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                raise AuthError(
                    "another node in this process already runs a ZAP authenticator on this "
                    "ZeroMQ context; give each secure node its own context (the default)"
                ) from exc
            self._poller.register(zap, POLLIN)
            self._handlers[zap] = (self._on_zap, None)
        router = self.ctx.socket(zmq.ROUTER)
        self.router = router
        self.configure(router)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if node.keys is not None:
            router.curve_secretkey = node.keys.secret
            router.curve_publickey = node.keys.public
            router.curve_server = True
            router.zap_domain = ZAP_DOMAIN
            router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        if node.bind.startswith("tcp://["):
            router.ipv6 = True
        try:
            router.bind(node.bind)
        except zmq.ZMQError as exc:
            raise TransportError(
                f"cannot bind {node.bind}: {exc}; pick another address or port (port 0 picks a "
                "free one)"
            ) from exc
        self.address = router.getsockopt_string(zmq.LAST_ENDPOINT)
        fd = self._router_fd = router.get(zmq.FD)
        self._poller.register(fd, POLLIN)
        self._handlers[fd] = (self._on_router, None)
        self._shared[fd] = None

    def _turn(self, next_tick: float) -> float:
        busy = self.ready or self.replies or self.calls or self.recheck
        timeout = 0 if busy else max(0.0, next_tick - _monotonic())
        if self._stalled:
            timeout = min(timeout, _STALL_RETRY)
        # Until this thread holds the GIL again after poll, senders still see it sleeping;
        # ``woken`` keeps them from writing the eventfd once per message meanwhile.
        self.woken = False
        self.sleeping = True
        if not busy and (self.ready or self.replies or self.calls or self.recheck):
            timeout = 0  # queued between the check above and the flag
        events = self._poller.poll(math.ceil(timeout * 1000))
        self.sleeping = False
        with self.lock:
            return self._work(events, next_tick)

    def _work(self, events: list[tuple[Any, int]], next_tick: float) -> float:
        handlers = self._handlers
        if self.recheck:
            events = events + [(fd, POLLIN) for fd in self.recheck]
            self.recheck.clear()
        for target, event in events:
            entry = handlers.get(target)
            if entry is None or not event & POLLIN:
                continue
            try:
                entry[0](entry[1])
            except zmq.ContextTerminated:
                raise
            except Exception:  # one failing socket must not keep the others waiting
                log.exception("node %s: error while handling socket events", self.node.name)
        calls = self.calls
        while calls:
            fn = calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("I/O call failed")
        ready = self.ready
        while ready:
            self._flush_peer(ready.popleft())
        if self.replies or self._stalled:
            self._flush_replies()
        now = _monotonic()
        if now >= next_tick:
            self._tick(now)
            next_tick = now + self.interval
        self._settle()
        return next_tick

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
                if router is not None and cast(int, router.get(EVENTS)) & POLLIN:
                    self.recheck.add(fd)
            elif peer.socket is not None:
                events = peer.socket.get(EVENTS)
                if events & POLLIN or (peer.stalled is not None and events & POLLOUT):
                    self.recheck.add(fd)
        touched.clear()

    # -- the fast path: sending and reading in the calling thread ---------------------------

    def read_peer(self, peer: Peer) -> None:
        """Read what the peer sent (a thread waiting for an answer calls this, lock held)."""
        self._on_dealer(peer)
        self._settle()

    def mute(self, peer: Peer) -> None:
        """A thread now reads the peer's socket itself: stop polling it here (lock held)."""
        peer.muted += 1
        if peer.muted == 1 and self._dealer_poll is not None:
            self._dealer_poll.modify(peer.fd, 0)

    def unmute(self, peer: Peer, generation: int) -> None:
        """The thread that muted the peer's socket is done with it (lock held)."""
        if peer.generation != generation or peer.socket is None:
            return  # the socket was replaced; the new one is polled afresh
        peer.muted -= 1
        if peer.muted == 0 and self._dealer_poll is not None:
            self._dealer_poll.modify(peer.fd, EPOLLIN)  # readiness is re-evaluated now

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
        if not self.lock.acquire(False):
            return False
        try:
            if peer.outbox or peer.stalled is not None or peer.socket is None or self.closing:
                return False
            if reply.done():
                return True
            try:
                sent = self._send_dealer(peer, pack_frame([item]))
            except zmq.ZMQError:
                sent = False
            if sent:
                self.counters.items_out += 1
            self._settle()
            recheck = bool(self.recheck)
        finally:
            self.lock.release()
        if recheck:
            self.wake()
        return sent

    def _reply_now(self, ident: bytes, item: list[Any], deadline: float) -> bool:
        """Send one answer through the ROUTER from the calling thread, if that can be done
        at once (nothing queued ahead of it, no other thread holding the lock)."""
        if self.replies or self._stalled or not self.lock.acquire(False):
            return False
        try:
            if self.replies or self._stalled or self.router is None or self.closing:
                return False
            now = _monotonic()
            if now > deadline:
                self.counters.expired_requests += 1
            else:
                self.counters.items_out += 1
                self._send_router(ident, pack_frame([item]), now + self.node.send_timeout, 1)
            self._settle()
            wake = bool(self.recheck or self._stalled)
        finally:
            self.lock.release()
        if wake:
            self.wake()
        return True

    def _on_wake(self, _: Any) -> None:
        try:
            os.read(self._wake_r, 8)
        except (BlockingIOError, OSError):
            pass

    def _on_dealers(self, _: Any) -> None:
        handlers = self._handlers
        for fd, _event in self._dealer_poll.poll(0):
            entry = handlers.get(fd)
            if entry is not None:
                entry[0](entry[1])

    def _on_zap(self, _: Any) -> None:
        zap = self.zap
        handler = self.node.zap_handler
        assert zap is not None and handler is not None
        while True:
            try:
                request = zap.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            try:
                answer = handler.handle(request)
            except Exception:  # fail closed
                log.exception("the ZAP handler failed; refusing the client")
                answer = [
                    b"1.0",
                    request[1] if len(request) > 1 else b"",
                    b"500",
                    b"error",
                    b"",
                    b"",
                ]
            zap.send_multipart(answer)

    def _on_router(self, _: Any) -> None:
        router = self.router
        assert router is not None
        serve = self.node.server.on_frame
        recv = router.recv
        fd = self._router_fd
        touched = self._touched
        touched.add(fd)
        for _n in range(BURST):
            try:
                ident = recv(NOBLOCK)  # two plain recvs: recv_multipart costs 3x more
            except zmq.Again:
                touched.discard(fd)  # nothing left: the next message signals the descriptor
                return
            data = recv(NOBLOCK)  # a ROUTER's first part (the sender) is always followed
            if router.get(RCVMORE):
                parts = [ident, data]
                while router.get(RCVMORE):
                    parts.append(recv(NOBLOCK))
                serve(parts)  # rejected: one frame per message
            else:
                serve((ident, data))
            if not cast(int, router.get(EVENTS)) & POLLIN:
                touched.discard(fd)  # as above; cheaper than letting the next recv raise
                return

    # -- replies through the ROUTER -------------------------------------------------------

    def _flush_replies(self) -> None:
        now = _monotonic()
        if self._stalled:
            stalled, self._stalled = self._stalled, []
            for ident, frame, give_up, count in stalled:
                if now > give_up:
                    self.counters.dropped_replies += count
                else:
                    self._send_router(ident, frame, give_up, count)  # stalls again if still full
        groups: dict[bytes, list[list[Any]]] = {}
        replies = self.replies
        max_items = self.limits.max_items
        while replies:
            ident, item, deadline = replies.popleft()
            if now > deadline:
                self.counters.expired_requests += 1
                continue
            group = groups.get(ident)
            if group is None:
                groups[ident] = [item]
            else:
                group.append(item)
        give_up = now + self.node.send_timeout
        for ident, items in groups.items():
            for start in range(0, len(items), max_items):
                chunk = items[start : start + max_items]
                self.counters.items_out += len(chunk)
                self._send_router(ident, pack_frame(chunk), give_up, len(chunk))

    def _send_router(self, ident: bytes, frame: bytes, give_up: float, count: int) -> bool:
        router = self.router
        assert router is not None
        self._touched.add(self._router_fd)
        try:
            # Two plain sends (send_multipart costs more); the second part of a multipart
            # message is never refused once the first was accepted.
            router.send(ident, SNDMORE_NOBLOCK)
            router.send(frame, NOBLOCK, copy=len(frame) < 65536)
        except zmq.Again:
            self._stalled.append((ident, frame, give_up, count))
            return False
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            self.counters.dropped_replies += count
            return False
        self.counters.frames_out += 1
        return True

    def send_notice(self, ident: bytes, frame: bytes) -> None:
        self._send_router(ident, frame, _monotonic() + self.node.send_timeout, 1)

    # -- shutdown -------------------------------------------------------------------------

    def _teardown(self, linger: float) -> None:
        with self.lock:  # no caller may be sending while the sockets close
            self._close_all(linger)

    def _close_all(self, linger: float) -> None:
        linger_ms = max(0, int(linger * 1000))
        try:
            if self.router is not None and (self.replies or self._stalled):
                self._flush_replies()
        except (zmq.ZMQError, LlmosError):
            pass
        self.node.client.fail_all(f"node {self.node.name} was closed")
        for peer in list(self.node.peers.values()):
            self._close_peer(peer, linger_ms)
        for sock in (self.router, self.zap):
            if sock is not None:
                sock.close(linger_ms if sock is self.router else 0)
        self.router = self.zap = None
        if self._dealer_poll is not None:
            self._dealer_poll.close()
