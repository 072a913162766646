"""The node's connections to its peers: one DEALER socket per peer, and its life cycle.

Part of the I/O thread (:class:`~llmos.transport._io.IOLoop` mixes this in); everything here
runs in the I/O thread, but :meth:`PeerLinks.mark_up` and :meth:`PeerLinks.mark_down` take the
peer's lock for the state that callers read. A dealer has ``IMMEDIATE`` set, so
nothing queues toward a connection that is not up: what callers queue waits in the peer's
outbox, and a frame libzmq refuses (high-water mark reached) is kept as the peer's stalled
frame until the socket is writable.
A peer is marked down when it misses heartbeats, when its connection is lost, or when the
security handshake fails; that fails its pending requests at once, and the socket is replaced
by a fresh one, so nothing queued for the old connection is ever delivered late.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
import zmq.backend
from zmq.utils.monitor import recv_monitor_message

from llmos.actors import AuthError, NodeUnreachable, TransportError
from llmos.transport._frames import PING, TELL, Limits, pack_frame
from llmos.transport._peer import CONNECTING, DOWN, UP, Counters, Peer, idle
from llmos.transport._security import ZAP_DOMAIN

if TYPE_CHECKING:
    from llmos.transport._node import Node

__all__ = [
    "AUTH_RETRY",
    "BATCH_BYTES",
    "BURST",
    "HWM",
    "ITEM_BURST",
    "NOBLOCK",
    "POLLIN",
    "POLLOUT",
    "SEND",
    "SOCKET_BUFFER",
    "PeerLinks",
]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic

# Frames queued per connection and direction. A frame batches up to max_items items or about
# BATCH_BYTES, so a stalled peer holds at most about HWM * BATCH_BYTES (16 MiB) in libzmq's
# pipe (more only for single messages larger than that); the outbox in front of it is bounded
# by Node.max_outbox, so a peer that cannot keep up turns into PeerBusy for its senders.
# libzmq's flow control sends a command between a socket and its I/O thread every HWM / 2
# messages each way, and each command wakes a thread (with HWM 16, one ask in eight paid for
# an extra wake-up on each side: 10-20 us per ask on average on a 2-vCPU VM).
HWM = 128
ROUTER_HWM = 32
BATCH_BYTES = 128 * 1024
SOCKET_BUFFER = 128 * 1024  # bytes of kernel send and receive buffer per connection
AUTH_RETRY = 5.0  # seconds before reconnecting to a peer that refused our CURVE key
BURST = 64  # frames read from one socket per turn, so no peer starves the others
ITEM_BURST = 2048  # items of frames read from the ROUTER per turn, before answers go out
_MONITORED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_PING_FRAME = pack_frame([[PING, 0, b""]])
# pyzmq's constants are enum flags; combining a plain int with one goes through the enum
# machinery (several microseconds per ``&``), so the hot paths use plain ints.
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
NOBLOCK = int(zmq.NOBLOCK)
# The socket's own send, without pyzmq's Python-level wrapper (which only adds the DRAFT
# routing_id and group arguments): a third less per call on the hot paths.
SEND: Callable[..., Any] = zmq.backend.Socket.send


class PeerLinks:
    """Dealer sockets to peers: open, flush, ping, watch events, mark up or down."""

    node: Node
    ctx: zmq.Context[Any]
    limits: Limits
    heartbeat: float
    interval: float
    counters: Counters
    _poller: zmq.Poller
    _handlers: dict[Any, tuple[Callable[[Any], None], Any]]

    def configure(self, sock: zmq.Socket[Any]) -> None:
        """The options every socket of the node gets (ROUTER and dealers).

        No ZMTP heartbeats: libzmq's heartbeat timer can fire on an engine whose connection
        dropped while its input was stopped (a peer that flooded, then vanished) and abort the
        process (``!_io_error`` in stream_engine_base.cpp). Liveness is the node's own
        PING/PONG; TCP keepalive lets the kernel drop connections to vanished hosts.
        A connection that has not completed its ZMTP 3 handshake within HANDSHAKE_IVL is
        closed; the ROUTER sets a ZAP domain on every node, keyed or not, so that libzmq also
        refuses ZMTP 1.0 peers at once (they have no handshake to time out).
        """
        hb_ms = max(1, int(self.heartbeat * 1000))
        sock.linger = 0
        sock.sndhwm = HWM
        sock.rcvhwm = HWM
        # Bounded kernel buffers too: what waits ahead of a heartbeat stays small, and a peer
        # that stops reading stalls its senders quickly (they then see PeerBusy).
        sock.setsockopt(zmq.SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(zmq.RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame + 1024)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, max(1, math.ceil(self.heartbeat)))
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
        sock.setsockopt(zmq.HANDSHAKE_IVL, max(200, hb_ms))
        if sock.type == zmq.ROUTER:
            sock.zap_domain = ZAP_DOMAIN
            # What one connection may leave unread here (a peer that floods, then vanishes):
            # ROUTER_HWM frames, plus the kernel's buffer.
            sock.rcvhwm = ROUTER_HWM

    def _on_dealer(self, peer: Peer) -> None:
        """The dealer is readable (or writable again, while a frame is stalled): read at most
        BURST frames (poll reports the rest next turn), then resend a stalled frame."""
        sock = peer.socket
        if sock is None:
            return
        handle = self.node.client.on_frame
        for _n in range(BURST):
            try:
                data = sock.recv(NOBLOCK)  # a plain recv: recv_multipart costs 5x more
            except zmq.Again:
                break
            handle(peer, data)
            if sock is not peer.socket:
                return  # replaced: the peer went down
        if peer.stalled is not None:
            self._flush_peer(peer)

    def _on_monitor(self, peer: Peer) -> None:
        monitor = peer.monitor
        while monitor is peer.monitor:
            try:
                event = recv_monitor_message(monitor, NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._send_ping(peer)
            elif kind == zmq.EVENT_DISCONNECTED and peer.state != DOWN:
                self.mark_down(
                    peer,
                    NodeUnreachable,
                    f"the connection to node {peer.address} "
                    "was lost; its pending requests cannot be answered",
                )
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.mark_down(
                    peer,
                    AuthError,
                    f"node {peer.address} refused this node's CURVE "
                    "key; add this node's public key to its allowlist",
                )
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.mark_down(
                    peer,
                    AuthError,
                    f"the security handshake with {peer.address} "
                    "failed; both nodes must use CURVE (give its public key with "
                    "peer_keys) or neither",
                )
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and peer.state != DOWN:
                self.mark_down(
                    peer,
                    NodeUnreachable,
                    f"the handshake with {peer.address} "
                    "failed or timed out; it may require CURVE keys, or be frozen",
                )

    # -- peers ----------------------------------------------------------------------------

    def _open_peer(self, peer: Peer) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        self.configure(sock)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(100, int(self.interval * 1000)))
        keys = self.node.keys
        if peer.server_key is not None and keys is not None:
            sock.curve_serverkey = peer.server_key
            sock.curve_publickey = keys.public
            sock.curve_secretkey = keys.secret
        if peer.address.startswith("tcp://["):
            sock.ipv6 = True
        monitor = sock.get_monitor_socket(_MONITORED)
        try:
            sock.connect(peer.address)
        except zmq.ZMQError as exc:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)
            peer.socket = peer.monitor = None
            self.mark_down(peer, NodeUnreachable, f"cannot connect to {peer.address}: {exc}")
            return
        peer.socket, peer.monitor = sock, monitor
        peer.generation += 1
        self._poller.register(sock, POLLIN)
        self._poller.register(monitor, POLLIN)
        self._handlers[sock] = (self._on_dealer, peer)
        self._handlers[monitor] = (self._on_monitor, peer)

    def _close_peer(self, peer: Peer, linger: int = 0) -> None:
        sock, monitor = peer.socket, peer.monitor
        peer.socket = peer.monitor = None
        peer.stalled = None
        if sock is not None:
            self._poller.unregister(sock)
            self._handlers.pop(sock, None)
        if monitor is not None:
            self._poller.unregister(monitor)
            self._handlers.pop(monitor, None)
        if sock is not None:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            sock.close(linger)
        if monitor is not None:
            monitor.close(0)

    def _flush_peer(self, peer: Peer) -> None:
        peer.queued = False
        if peer.reaped:  # forgotten meanwhile: never reopen its socket
            self.retire(peer)
            return
        if peer.state == DOWN:
            self.node.client.drop_outbox(peer)
            return
        if peer.socket is None:
            self._open_peer(peer)
            if peer.socket is None:
                return
        if peer.stalled is not None:
            if not self._send_dealer(peer, peer.stalled):
                return
            peer.stalled = None
            self._poller.modify(peer.socket, POLLIN)
            peer.last_heard = max(peer.last_heard, _monotonic())  # it drained: alive
        outbox = peer.outbox
        limits = self.limits
        pending = peer.pending
        budget = min(limits.max_frame // 2, BATCH_BYTES)
        while outbox:
            items: list[list[Any]] = []
            size = 0
            while outbox and len(items) < limits.max_items and size < budget:
                item = outbox.popleft()
                if item[0] != TELL and item[0] != PING and len(item) == 7:
                    reply = pending.get(item[1])
                    if reply is None or reply.done():
                        continue  # timed out or failed while queued: do not send it
                size += len(item[5] if len(item) == 7 else item[-1]) + 48
                items.append(item)
            if not items:
                break
            frame = pack_frame(items)
            self.counters.items_out += len(items)
            if not self._send_dealer(peer, frame):
                peer.stalled = frame  # resent when the socket has room again
                self._poller.modify(peer.socket, POLLIN | POLLOUT)
                break
        if not peer.room.is_set() and len(outbox) < self.node.max_outbox:
            peer.room.set()

    def _send_dealer(self, peer: Peer, frame: bytes) -> bool:
        sock = peer.socket
        try:
            SEND(sock, frame, NOBLOCK, len(frame) < 65536)  # copy small frames
        except zmq.Again:
            return False
        self.counters.frames_out += 1
        return True

    def _reap(self, peer: Peer) -> None:
        """Close and forget an idle peer (it reconnects when a ref uses it again)."""
        with self.node._peers_lock:
            if self.node.peers.get(peer.address) is not peer:
                return
            del self.node.peers[peer.address]
            peer.reaped = True
        self.counters.peers_reaped += 1
        self.retire(peer)

    def _send_ping(self, peer: Peer) -> None:
        sock = peer.socket
        if sock is None or peer.stalled is not None:
            return
        try:
            sock.send(_PING_FRAME, NOBLOCK)
        except zmq.Again:
            pass

    def mark_down(
        self, peer: Peer, cls: type[TransportError], text: str, silent: bool = False
    ) -> None:
        """Mark a peer down: fail its pending requests, tell watchers, reconnect fresh.

        When the peer fell ``silent`` (missed heartbeats), its pending requests fail only once
        twice ``clock_skew`` has passed: the peer refuses a request read after its give-up
        time plus ``clock_skew`` by its own clock, so by then none of them can start there
        (at-most-once, see llmos.transport._errors). Otherwise they fail at once.
        """
        with peer.lock:
            was = peer.state
            peer.error = (cls, text)
            if was == DOWN:
                return
            peer.state = DOWN
            pending, peer.pending = peer.pending, {}
            peer.up_event.clear()
        log.warning("node %s is down: %s", peer.address, text)
        if silent and pending and self.node.clock_skew > 0:
            peer.doomed.append((_monotonic() + 2 * self.node.clock_skew, pending, cls(text)))
        else:
            for reply in pending.values():
                reply.set_exception(cls(text))
        self.node.client.drop_outbox(peer)
        self.node.client.lost_watches(peer, text)
        # A fresh socket: whatever libzmq still queues for the old connection is discarded.
        self._close_peer(peer)
        if cls is AuthError:
            # Retrying at once would only be refused again (and fill the peer's log).
            peer.retry_at = _monotonic() + max(AUTH_RETRY, self.heartbeat)
        else:
            self._open_peer(peer)
        peer.room.set()

    def retire(self, peer: Peer) -> None:
        """Close a peer the node forgot (reaped or evicted): queued tells to dead letters."""
        self._close_peer(peer)
        self.node.client.drop_outbox(peer)
        self.node.client.fail_pending(peer, f"node {peer.address} was closed to make room")

    def mark_up(self, peer: Peer) -> None:
        with peer.lock:
            if peer.state == UP:
                return
            peer.state = UP
            peer.error = None
        peer.up_event.set()
        log.info("node %s is up", peer.address)

    def _tick(self, now: float) -> None:
        quotas = self.node.quotas
        for peer in list(self.node.peers.values()):
            if now - peer.used > quotas.peer_idle and idle(peer):
                self._reap(peer)
                continue
            if peer.doomed:
                self.node.client.fail_doomed(peer, now)
            if peer.socket is None:
                if peer.state == DOWN and now >= peer.retry_at:
                    self._open_peer(peer)
                continue
            silent = now - max(peer.last_heard, peer.since)
            if peer.state != DOWN and silent > self.heartbeat:
                what = "did not answer" if peer.state == CONNECTING else "stopped answering"
                self.mark_down(
                    peer,
                    NodeUnreachable,
                    f"node {peer.address} {what} heartbeats for {silent:.3g} s (timeout "
                    f"{self.heartbeat:.3g} s); check that it runs and is reachable",
                    silent=True,
                )
            self._send_ping(peer)
            if peer.pending:
                for rid, reply in list(peer.pending.items()):
                    if reply.done():
                        peer.pending.pop(rid, None)
                    elif reply.expired():
                        peer.pending.pop(rid, None)
                        reply.expire()
