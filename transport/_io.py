"""The I/O thread, and the lock that guards a node's ZeroMQ sockets.

ZeroMQ sockets are not thread-safe; zmq_socket(3) allows using one from another thread only
after migrating it with a full memory barrier, which here is :attr:`IOLoop.lock`. The I/O
thread creates, polls and closes every socket. It holds the lock while it works and not while
it sleeps: it waits in ``poll`` on the sockets' file descriptors (``ZMQ_FD``), not on the
sockets, so while it sleeps another thread may take the lock and use a socket directly. That
is the fast path of an ask, which saves every thread hand-off of a round trip but libzmq's own
(each hand-off costs about 30 us, plus the CPU to wake a thread, on a small VM):

- the asking thread sends its request itself when nothing is queued ahead of it for that peer
  (so one sender's order holds);
- the serving actor, while idle, reads the ROUTER itself, so the request reaches it without
  the I/O thread (:mod:`llmos.transport._leader`);
- it sends its answer through the ROUTER itself;
- the asking thread waits for the answer by polling the peer's descriptor and reads the socket
  itself (:mod:`llmos.transport._direct`).

A sender that finds the lock taken queues its item instead (below); a waiting reader takes the
lock only for one read, and the I/O thread never holds it while it sleeps.
``ZMQ_FD`` is edge-triggered, so after any use of a socket its ``EVENTS`` are read again, and a
socket that still has something to read is rechecked without waiting for its descriptor
(:mod:`llmos.transport._fastpath`). The ROUTER side, requests in and answers out, is
:mod:`llmos.transport._router`.

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
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from llmos.actors import AuthError, LlmosError, TransportError
from llmos.transport._fastpath import FastPath
from llmos.transport._leader import RouterLeader
from llmos.transport._links import EPOLLIN, NOBLOCK, POLLIN, PeerLinks
from llmos.transport._peer import Peer
from llmos.transport._router import RouterSide
from llmos.transport._security import ZAP_DOMAIN, ZAP_ENDPOINT
from llmos.transport._wake import signal_fd

if TYPE_CHECKING:
    from llmos.transport._node import Node

__all__ = ["IOLoop"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic

_STALL_RETRY = 0.005


class IOLoop(RouterLeader, RouterSide, FastPath, PeerLinks):  # type: ignore[misc,unused-ignore]
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
        self.spin = node.spin_wait
        self.spin_lock = threading.Lock()  # held by the one thread spinning (_direct._spin)
        self.lock = threading.Lock()  # whoever holds it may use the sockets (see module doc)
        self.recheck: set[int] = set()  # descriptors to handle next turn without waiting
        self._touched: set[int] = set()  # descriptors of sockets used while the lock was held
        self._shared: dict[int, Peer | None] = {}  # socket descriptors: a peer's, or the router's
        self._router_fd = -1
        # The sockets' descriptors (dealers and the ROUTER) sit in an epoll set that the I/O
        # thread polls as one descriptor, so another thread can take one out of that set
        # without waking the I/O thread: one waiting for an answer takes its peer's
        # (FastPath.mute), an idle actor serving remote requests takes the ROUTER's
        # (RouterLeader).
        self._fd_poll: Any = select.epoll() if hasattr(select, "epoll") else None
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
        self.ident = 0  # the thread's ident, once it runs

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
        signal_fd(self._wake_w)

    def post(self, peer: Peer, item: list[Any]) -> None:
        """Queue an item for a peer (the caller checked back-pressure)."""
        peer.outbox.append(item)
        if not peer.queued:
            peer.queued = True
            self.ready.append(peer)
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
        self.ident = threading.get_ident()
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
        if self._fd_poll is not None:
            shared = self._fd_poll.fileno()
            self._poller.register(shared, POLLIN)
            self._handlers[shared] = (self._on_fd_poll, None)
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
        if self._fd_poll is not None:
            self._fd_poll.register(fd, EPOLLIN)
        else:
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

    def _on_wake(self, _: Any) -> None:
        try:
            os.read(self._wake_r, 8)
        except (BlockingIOError, OSError):
            pass

    def _on_fd_poll(self, _: Any) -> None:
        handlers = self._handlers
        for fd, _event in self._fd_poll.poll(0):
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

    # -- shutdown -------------------------------------------------------------------------

    def _teardown(self, linger: float) -> None:
        with self.lock:  # no caller may be sending while the sockets close
            self.wake_leader()  # it gives the ROUTER back once this releases the lock
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
        if self._fd_poll is not None:
            self._fd_poll.close()
