"""The node's connections to its peers: one DEALER socket per peer, and its life cycle.

:class:`Links` runs in the I/O thread (it is one of the :class:`~llmos.transport._io.IOLoop`'s
parts), except :meth:`Links.post`, which any thread calls to queue an item for a peer. A
dealer has ``IMMEDIATE`` set, so nothing queues toward a connection that is not up: what
callers queue waits in the peer's outbox, and a frame libzmq refuses (high-water mark reached)
is kept as the peer's stalled message until the socket is writable.
A peer is marked down when it misses heartbeats, when its connection is lost, or when the
security handshake fails; that fails its pending requests, and the socket is replaced by a
fresh one, so nothing queued for the old connection is ever delivered late.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from llmos.transport._errors import AuthError, NodeUnreachable, TransportError
from llmos.transport._frames import (
    PING,
    TELL,
    Limits,
    Payload,
    item_payload,
    pack_frame,
    pack_message,
    ping,
)
from llmos.transport._io import IOLoop
from llmos.transport._peer import CONNECTING, DOWN, Counters, Peer, counted_bytes, idle
from llmos.transport._security import KeyPair
from llmos.transport._sockets import (
    BATCH_BYTES,
    BURST,
    EVENTS,
    NOBLOCK,
    POLLIN,
    POLLOUT,
    RCVMORE,
    configure,
    read_rest,
    send_parts,
)

if TYPE_CHECKING:
    from llmos.transport._capabilities import Quotas
    from llmos.transport._client import Client

__all__ = ["AUTH_RETRY", "Links"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic

AUTH_RETRY = 5.0  # seconds before reconnecting to a peer that refused our CURVE key
# The monitor events that mark a peer down, with the error its requests then fail with.
_LOST: dict[int, tuple[type[TransportError], str]] = {
    zmq.EVENT_DISCONNECTED: (
        NodeUnreachable,
        "the connection to node {} was lost; its pending requests cannot be answered",
    ),
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: (
        AuthError,
        "node {} refused this node's CURVE key; add this node's public key to its allowlist",
    ),
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: (
        AuthError,
        "the security handshake with {} failed; both nodes must use CURVE (give its public "
        "key with peer_keys) or neither",
    ),
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: (
        NodeUnreachable,
        "the handshake with {} failed or timed out; it may require CURVE keys, or be frozen",
    ),
}
_MONITORED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class Links:
    """Dealer sockets to peers: open, flush, ping, watch events, mark down, reap.

    Args:
        io: the I/O loop whose thread runs these sockets.
        context: the ZeroMQ context the dealers are made in.
        peers: the node's peer table (address -> Peer), shared with the node under
            ``peers_lock``.
        client: what handles answers from peers and the work of a lost peer.
        keys: this node's CURVE key pair, used toward peers with a known server key.
    """

    def __init__(
        self,
        io: IOLoop,
        context: zmq.Context[Any],
        peers: dict[str, Peer],
        peers_lock: threading.Lock,
        client: Client,
        *,
        keys: KeyPair | None,
        limits: Limits,
        counters: Counters,
        quotas: Quotas,
        heartbeat: float,
        clock_skew: float,
        max_outbox: int,
    ) -> None:
        self.io = io
        self.ctx = context
        self.peers = peers
        self.peers_lock = peers_lock
        self.client = client
        self.keys = keys
        self.limits = limits
        self.counters = counters
        self.quotas = quotas
        self.heartbeat = heartbeat
        self.interval = io.interval
        self.clock_skew = clock_skew
        self.max_outbox = max_outbox
        self.ready: collections.deque[Peer] = collections.deque()
        io.add_part(self.flush, self.due, self.tick)

    # -- any thread -------------------------------------------------------------------------

    def post(self, peer: Peer, item: list[Any]) -> None:
        """Queue an item for a peer (the caller checked back-pressure, ``Peer.full``)."""
        counted = counted_bytes(len(item_payload(item)))
        if counted:
            peer.count_bytes(counted)  # before the item is there to be taken off
        peer.outbox.append(item)
        if not peer.queued:
            peer.queued = True
            self.ready.append(peer)
        self.io.wake_soon()

    # -- the I/O thread -----------------------------------------------------------------------

    def due(self) -> float:
        """Seconds until this part needs a turn: 0 while peers have items queued."""
        return 0.0 if self.ready else math.inf

    def flush(self, _now: float) -> None:
        ready = self.ready
        while ready:
            self._flush_peer(ready.popleft())

    def close_all(self, linger_ms: int) -> None:
        for peer in list(self.peers.values()):
            self._close_peer(peer, linger_ms)

    def _on_dealer(self, peer: Peer) -> None:
        """The dealer is readable (or writable again, while a frame is stalled): read at most
        BURST frames (poll reports the rest next turn), then resend a stalled frame."""
        sock = peer.socket
        if sock is None:
            return
        handle = self.client.on_frame
        keep = self.limits.max_items + 1  # one more than a frame may have: it is refused
        for _n in range(BURST):
            try:
                data = sock.recv(NOBLOCK)  # a plain recv: recv_multipart costs 5x more
            except zmq.Again:
                break
            if sock.get(RCVMORE):  # the large payloads of the frame (or garbage)
                handle(peer, data, read_rest(sock, keep))
            else:
                handle(peer, data, ())
            if sock is not peer.socket:
                return  # replaced: the peer went down
            if not sock.get(EVENTS) & POLLIN:
                break  # reading EVENTS costs a third of the zmq.Again the next recv would raise
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
            elif kind in _LOST:
                cls, text = _LOST[kind]
                # A refused handshake says why a peer is down even when it already is; a lost
                # connection says nothing new about a peer already down.
                if cls is AuthError or peer.state != DOWN:
                    self.mark_down(peer, cls, text.format(peer.address))

    # -- peers ----------------------------------------------------------------------------

    def _open_peer(self, peer: Peer) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        configure(sock, self.limits, self.heartbeat)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(100, int(self.interval * 1000)))
        keys = self.keys
        if peer.server_key is not None and keys is not None:
            sock.curve_serverkey = peer.server_key
            sock.curve_publickey = keys.public
            sock.curve_secretkey = keys.secret
        if peer.address.startswith("tcp://["):
            sock.ipv6 = True
        peer.socket = sock
        peer.monitor = monitor = sock.get_monitor_socket(_MONITORED)
        self.io.register(sock, self._on_dealer, peer)
        self.io.register(monitor, self._on_monitor, peer)
        try:
            sock.connect(peer.address)
        except zmq.ZMQError as exc:
            self._close_peer(peer)
            self.mark_down(peer, NodeUnreachable, f"cannot connect to {peer.address}: {exc}")

    def _close_peer(self, peer: Peer, linger: int = 0) -> None:
        sock, monitor = peer.socket, peer.monitor
        peer.socket = peer.monitor = None
        peer.stalled = None
        if sock is not None:
            self.io.unregister(sock)
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            sock.close(linger)
        if monitor is not None:
            self.io.unregister(monitor)
            monitor.close(0)

    def _flush_peer(self, peer: Peer) -> None:
        peer.queued = False
        if peer.reaped:  # forgotten meanwhile: never reopen its socket
            self.retire(peer)
            return
        if peer.state == DOWN:
            self.client.drop_outbox(peer)
            return
        if peer.socket is None:
            self._open_peer(peer)
            if peer.socket is None:
                return
        if peer.stalled is not None:
            if not self._send_dealer(peer, peer.stalled):
                return
            peer.stalled = None
            self.io.modify(peer.socket, POLLIN)
            peer.last_heard = max(peer.last_heard, _monotonic())  # it drained: alive
        outbox = peer.outbox
        limits = self.limits
        pending = peer.pending
        budget = min(limits.max_frame // 2, BATCH_BYTES)
        taken = 0  # bytes of large payloads taken from the outbox
        while outbox:
            items: list[list[Any]] = []
            size = 0
            while outbox and len(items) < limits.max_items and size < budget:
                item = outbox.popleft()
                length = len(item_payload(item))
                taken += counted_bytes(length)
                if item[0] != TELL and item[0] != PING and len(item) == 7:
                    reply = pending.get(item[1])
                    if reply is None or reply.done():
                        continue  # timed out or failed while queued: do not send it
                size += length + 48
                items.append(item)
            if not items:
                break
            parts = pack_message(items)
            self.counters.items_out += len(items)
            if not self._send_dealer(peer, parts):
                peer.stalled = parts  # resent when the socket has room again
                self.io.modify(peer.socket, POLLIN | POLLOUT)
                break
        if taken:
            peer.count_bytes(-taken)
        if not peer.room.is_set() and not peer.full(self.max_outbox):
            peer.room.set()

    def _send_dealer(self, peer: Peer, parts: list[Payload]) -> bool:
        sock = peer.socket
        assert sock is not None
        try:
            send_parts(sock, parts)
        except zmq.Again:
            return False
        self.counters.frames_out += 1
        self.counters.bytes_out += len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
        return True

    def _reap(self, peer: Peer) -> None:
        """Close and forget an idle peer (it reconnects when a ref uses it again)."""
        with self.peers_lock:
            if self.peers.get(peer.address) is not peer:
                return
            del self.peers[peer.address]
            peer.reaped = True
        self.counters.peers_reaped += 1
        self.retire(peer)

    def _send_ping(self, peer: Peer) -> None:
        """Ping the peer, telling it how long this node has heard nothing from it and after how
        long it gives up (in ms): the peer then knows when this node may give up on it (see
        RemoteAsker)."""
        sock = peer.socket
        if sock is None or peer.stalled is not None:
            return
        try:
            silent = _monotonic() - max(peer.last_heard, peer.since)
            sock.send(pack_frame([ping(silent, self.heartbeat)]), NOBLOCK)
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
        pending = peer.set_down(cls, text)
        if pending is None:
            return
        log.warning("node %s is down: %s", peer.address, text)
        if silent and pending and self.clock_skew > 0:
            peer.doomed.append((_monotonic() + 2 * self.clock_skew, pending, cls(text)))
        else:
            for reply in pending.values():
                reply.set_exception(cls(text))
        self.client.drop_outbox(peer)
        self.client.lost_watches(peer, text)
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
        self.client.drop_outbox(peer)
        self.client.fail_pending(peer, f"node {peer.address} was closed to make room")

    def tick(self, now: float) -> None:
        """Heartbeats, reaping idle peers, and failing requests whose time has come."""
        quotas = self.quotas
        for peer in list(self.peers.values()):
            if now - peer.used > quotas.peer_idle and idle(peer):
                self._reap(peer)
                continue
            if peer.doomed:
                self.client.fail_doomed(peer, now)
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
