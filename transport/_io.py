"""The I/O thread: the one thread that uses the node's ZeroMQ sockets.

Socket rule (zmq_socket(3): sockets are not thread-safe): the I/O thread creates, reads,
writes and closes every socket of the node (the ROUTER, one DEALER per peer with its monitor,
the ZAP socket). No other thread ever touches a socket. Other threads hand it work through
queues (a peer's outbox, the reply queue, :meth:`IOLoop.call`) and wake it through an eventfd,
written only while it sleeps in ``poll`` (``sleeping``/``woken``), and it completes asks by
settling their :class:`~llmos.actors.Reply`.

Each turn it polls the sockets (``zmq.Poller``: level-triggered on each socket's EVENTS), reads
at most ``BURST`` frames from each ready socket so no peer starves the others, then packs
everything already queued for one peer into as few frames as the limits allow, without waiting
for more: batching is what makes tell throughput beat single sends. The ROUTER side (requests
in, answers out) is :mod:`llmos.transport._router`; the dealers are
:mod:`llmos.transport._links`.

Sockets are configured against libzmq's defaults: ROUTER_MANDATORY (no silent loss to an
unknown peer), IMMEDIATE on dealers (nothing queues toward a dead connection, so a reconnect
never delivers a stale backlog), bounded LINGER, a short HANDSHAKE_IVL, MAXMSGSIZE, and
deliberate high-water marks. Application heartbeats (PING/PONG) decide when a peer is down;
socket monitor events make a lost connection or a refused key fail pending asks at once.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from llmos.actors import AuthError, LlmosError, TransportError
from llmos.transport._links import NOBLOCK, POLLIN, PeerLinks
from llmos.transport._peer import Peer
from llmos.transport._router import RouterSide
from llmos.transport._security import ZAP_DOMAIN, ZAP_ENDPOINT

if TYPE_CHECKING:
    from llmos.transport._node import Node

__all__ = ["IOLoop"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic

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


class IOLoop(RouterSide, PeerLinks):  # type: ignore[misc,unused-ignore]
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
        self.sleeping = False  # True while the thread is (about to be) blocked in poll
        self.woken = False  # a wake-up is already on its way: do not write the eventfd again
        self.closing = False
        self._stalled: list[tuple[bytes, bytes, float, int]] = []
        self._stalled_bytes: dict[bytes, int] = {}  # bytes of _stalled, per asker
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
        """Wake the thread from ``poll`` (a full eventfd is already signalled; a closed one
        has nobody left to wake, so a failed write needs nothing more)."""
        if _write_keeping_gil is not None:
            _write_keeping_gil(self._wake_w, _ONE, 8)
            return
        try:  # pragma: no cover - non-Linux
            os.write(self._wake_w, _ONE)
        except OSError:
            pass

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
        self._poller.register(router, POLLIN)
        self._handlers[router] = (self._on_router, None)

    def _turn(self, next_tick: float) -> float:
        busy = self.ready or self.replies or self.calls
        timeout = 0 if busy else max(0.0, next_tick - _monotonic())
        if self._stalled:
            timeout = min(timeout, _STALL_RETRY)
        # Until this thread holds the GIL again after poll, senders still see it sleeping;
        # ``woken`` keeps them from writing the eventfd once per message meanwhile.
        self.woken = False
        self.sleeping = True
        if not busy and (self.ready or self.replies or self.calls):
            timeout = 0  # queued between the check above and the flag
        events = self._poller.poll(math.ceil(timeout * 1000))
        self.sleeping = False
        return self._work(events, next_tick)

    def _work(self, events: list[tuple[Any, int]], next_tick: float) -> float:
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
        return next_tick

    def _on_wake(self, _: Any) -> None:
        try:
            os.read(self._wake_r, 8)
        except (BlockingIOError, OSError):
            pass

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
