"""The node's ROUTER socket: requests that peers send in, and the answers that go back.

:class:`Router` is one of the :class:`~llmos.transport._io.IOLoop`'s parts: everything here
but :meth:`Router.post_reply` runs in the I/O thread. The thread that completes an answer (the
serving actor, usually) queues it; the I/O thread flushes the queue each turn, packing the
answers for one asker into as few frames as the limits allow. A reply the ROUTER cannot take
yet (the asker's queue is full) is retried until the send timeout, then dropped and counted.
With CURVE keys the router also runs the ZAP socket that asks the node's allowlist about each
client.
"""

from __future__ import annotations

import collections
import errno
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from llmos.transport._capabilities import Quotas
from llmos.transport._errors import AuthError, TransportError
from llmos.transport._frames import Limits, Payload, pack_message
from llmos.transport._io import IOLoop
from llmos.transport._peer import Counters
from llmos.transport._security import ZAP_ENDPOINT, KeyPair, ZapHandler
from llmos.transport._sockets import (
    BURST,
    EVENTS,
    ITEM_BURST,
    NOBLOCK,
    POLLIN,
    RCVMORE,
    SEND,
    SNDMORE_NOBLOCK,
    configure,
    read_rest,
    send_parts,
)

__all__ = ["Router"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic
STALL_RETRY = 0.005  # seconds between tries to send answers the ROUTER could not take
MAX_PRINCIPALS = 4096  # connections whose CURVE key is remembered (the oldest is forgotten first)


class Router:
    """The ROUTER socket: reads requests for ``serve``, sends answers.

    Args:
        io: the I/O loop whose thread runs the socket.
        context: the ZeroMQ context.
        bind: the address to bind.
        keys: this node's CURVE key pair, and ``zap`` the allowlist decision (both or
            neither).
        serve: handles one message (the sender's identity, the frame, the parts that
            followed it) and returns how many items it held. Set before the loop starts.

    On a keyed node each connection's CURVE public key (the ZAP ``User-Id``) is read from its
    first message, so :meth:`principal` names the peer behind a connection by its key: quotas
    and stop rights then belong to the key, not to one connection of it.
    """

    def __init__(
        self,
        io: IOLoop,
        context: zmq.Context[Any],
        bind: str,
        *,
        keys: KeyPair | None,
        zap: ZapHandler | None,
        limits: Limits,
        counters: Counters,
        quotas: Quotas,
        heartbeat: float,
        send_timeout: float,
    ) -> None:
        self.io = io
        self.ctx = context
        self.bind = bind
        self.keys = keys
        self.zap_handler = zap
        self.limits = limits
        self.counters = counters
        self.quotas = quotas
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.serve: Callable[[bytes, bytes, Sequence[Payload]], int] = _unset
        self.address = ""
        self.router: zmq.Socket[Any] | None = None
        self.zap: zmq.Socket[Any] | None = None
        self.replies: collections.deque[tuple[bytes, list[Any], float]] = collections.deque()
        self._stalled: list[tuple[bytes, list[Payload], float, int]] = []
        self._stalled_bytes: dict[bytes, int] = {}  # bytes of _stalled, per asker
        self._principals: dict[bytes, bytes] = {}  # connection identity -> its CURVE key
        io.add_part(self.flush, self.due)

    # -- any thread -------------------------------------------------------------------------

    def post_reply(self, ident: bytes, item: list[Any], deadline: float) -> None:
        """Queue an answer to a peer that asked through our ROUTER socket."""
        self.replies.append((ident, item, deadline))
        self.io.wake_soon()

    # -- the I/O thread -----------------------------------------------------------------------

    def principal(self, ident: bytes) -> bytes:
        """Who sent through connection ``ident``: ``b"key:"`` + its Z85 CURVE key on a keyed
        node, else the connection's identity itself (an unkeyed peer is one connection)."""
        key = self._principals.get(ident)
        return ident if key is None else key

    def open(self) -> str:
        """Bind (and start the ZAP socket with keys); return the bound endpoint.

        Raises:
            AuthError: another secure node of this context already runs a ZAP socket.
            TransportError: the address cannot be bound.
        """
        if self.keys is not None:
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
            self.io.register(zap, self._on_zap)
        router = self.ctx.socket(zmq.ROUTER)
        self.router = router
        configure(router, self.limits, self.heartbeat)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if self.keys is not None:
            router.curve_secretkey = self.keys.secret
            router.curve_publickey = self.keys.public
            router.curve_server = True
            router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        if self.bind.startswith("tcp://["):
            router.ipv6 = True
        try:
            router.bind(self.bind)
        except zmq.ZMQError as exc:
            raise TransportError(
                f"cannot bind {self.bind}: {exc}; pick another address or port (port 0 picks "
                "a free one)"
            ) from exc
        self.address = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.io.register(router, self._on_router)
        return self.address

    def close(self, linger_ms: int) -> None:
        """Send what is queued (best effort) and close the sockets."""
        try:
            if self.router is not None and (self.replies or self._stalled):
                self.flush(_monotonic())
        except (zmq.ZMQError, TransportError):
            pass
        for sock in (self.router, self.zap):
            if sock is not None:
                self.io.unregister(sock)
                sock.close(linger_ms if sock is self.router else 0)
        self.router = self.zap = None

    def due(self) -> float:
        """Seconds until this part needs a turn: 0 with answers queued, a short retry while
        some wait for room."""
        if self.replies:
            return 0.0
        return STALL_RETRY if self._stalled else math.inf

    def flush(self, now: float) -> None:
        if self.replies or self._stalled:
            self._flush_replies(now)

    def _on_router(self, _: Any) -> None:
        router = self.router
        assert router is not None
        serve = self.serve
        recv = router.recv
        keyed = self.keys is not None
        principals = self._principals
        keep = self.limits.max_items + 1  # one more than a frame may have: it is refused
        items = 0
        for _n in range(BURST):  # the rest waits for the next turn: poll reports it at once
            if items >= ITEM_BURST:
                return  # answers go out before more is read: a flood delays no one long
            try:
                ident = recv(NOBLOCK)  # two plain recvs: recv_multipart costs 3x more
            except zmq.Again:
                return
            if keyed and ident not in principals:
                data = self._first_from(ident)
            else:
                data = recv(NOBLOCK)  # a ROUTER's first part (the sender) is always followed
            if router.get(RCVMORE):  # the large payloads of the frame (or garbage)
                items += serve(ident, data, read_rest(router, keep))
            else:
                items += serve(ident, data, ())
            if not router.get(EVENTS) & POLLIN:  # type: ignore[operator]  # an int
                return  # cheaper than the zmq.Again the next recv would raise

    def _first_from(self, ident: bytes) -> bytes:
        """Read the first part after ``ident`` as a frame, to learn the connection's key."""
        router = self.router
        assert router is not None
        part = router.recv(NOBLOCK, copy=False)
        principals = self._principals
        if len(principals) >= MAX_PRINCIPALS:
            del principals[next(iter(principals))]  # learnt again from its next message
        principals[ident] = b"key:" + str(part.get("User-Id")).encode()
        return part.bytes

    def _flush_replies(self, now: float) -> None:
        if self._stalled:
            stalled, self._stalled = self._stalled, []
            self._stalled_bytes.clear()
            for ident, parts, give_up, count in stalled:
                if now > give_up:
                    self.counters.dropped_replies += count
                else:
                    self._send_router(ident, parts, give_up, count)  # stalls again if still full
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
        give_up = now + self.send_timeout
        for ident, items in groups.items():
            for start in range(0, len(items), max_items):
                chunk = items[start : start + max_items]
                self.counters.items_out += len(chunk)
                self._send_router(ident, pack_message(chunk), give_up, len(chunk))

    def _send_router(self, ident: bytes, parts: list[Payload], give_up: float, count: int) -> None:
        router = self.router
        assert router is not None
        size = len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
        try:
            # Plain sends (send_multipart costs more); the later parts of a multipart
            # message are never refused once the first was accepted.
            SEND(router, ident, SNDMORE_NOBLOCK)
            send_parts(router, parts)
        except zmq.Again:
            held = self._stalled_bytes.get(ident, 0) + size
            if held > self.quotas.max_queued_bytes:
                # An asker that does not read its answers holds at most this much here.
                self.counters.dropped_replies += count
                return
            self._stalled_bytes[ident] = held
            self._stalled.append((ident, parts, give_up, count))
            return
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            self.counters.dropped_replies += count
            return
        self.counters.frames_out += 1
        self.counters.bytes_out += size

    def send_notice(self, ident: bytes, frame: bytes) -> None:
        self._send_router(ident, [frame], _monotonic() + self.send_timeout, 1)

    def _on_zap(self, _: Any) -> None:
        zap = self.zap
        handler = self.zap_handler
        assert zap is not None and handler is not None
        while True:
            try:
                request = zap.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            try:
                answer = handler.handle(request)
            except Exception:  # fail closed, counted like any refusal
                handler.refused += 1
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


def _unset(_ident: bytes, _data: bytes, _parts: Sequence[Payload]) -> int:
    raise TransportError("the router has no server yet")
