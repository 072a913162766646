"""Outbound: what a node does for its refs: queue tells and requests to peers, with
back-pressure.

:class:`Outbound` runs in the caller's thread (an actor, the main thread, an asyncio loop's
thread) and only touches the peer table (under its lock), a peer's outbox and pending table
(under the peer's lock), and the I/O thread's queues (through :class:`~llmos.transport._links.Links`
and :meth:`~llmos.transport._io.IOLoop.call`). Remote refs hold it, not the node.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorRef, Reply, Terminated
from llmos.actors.lowlevel import check_timeout
from llmos.transport._address import check_endpoint
from llmos.transport._capabilities import Quotas
from llmos.transport._errors import FrameError, NodeUnreachable, PeerBusy, QuotaExceeded
from llmos.transport._frames import LOOKUP, UNWATCH, WATCH, ping
from llmos.transport._peer import DOWN, Counters, Peer, least_needed

if TYPE_CHECKING:
    from llmos.transport._client import Client
    from llmos.transport._codec import Codec
    from llmos.transport._io import IOLoop
    from llmos.transport._links import Links
    from llmos.transport._security import Trust

__all__ = ["Outbound"]

_monotonic = time.monotonic


class Outbound:
    """Queueing work for peers: the part of a node that its refs call into.

    Args:
        name: the node's name (for messages).
        peers: the node's peer table (address -> Peer), changed only under ``peers_lock``.
        trust: the CURVE server key of each peer address (and whether this node can use it).
        codec: encodes what is sent.
        links: queues items for peers (the I/O thread sends them).
        io: runs work in the I/O thread.
        client: where a tell to a peer that is down is recorded as undelivered.
    """

    def __init__(
        self,
        name: str,
        peers: dict[str, Peer],
        peers_lock: threading.Lock,
        trust: Trust,
        *,
        codec: Codec,
        links: Links,
        io: IOLoop,
        client: Client,
        quotas: Quotas,
        counters: Counters,
        max_payload: int,
        max_outbox: int,
        send_timeout: float,
        heartbeat: float,
    ) -> None:
        self.name = name
        self.peers = peers
        self.peers_lock = peers_lock
        self.trust = trust
        self.codec = codec
        self.links = links
        self.io = io
        self.client = client
        self.quotas = quotas
        self.counters = counters
        self.max_payload = max_payload
        self.max_outbox = max_outbox
        self.send_timeout = send_timeout
        self.heartbeat = heartbeat
        self.closed = False  # set by the node's close: nothing more is sent
        self._ids = itertools.count(1)

    def encode_message(self, message: Any) -> bytes:
        """Check and encode a message for a peer (MessageError, FrameError if too large)."""
        payload = self.codec.encode_checked(message)
        if len(payload) > self.max_payload:
            self._bounded(payload)  # raises
        return payload

    def encode_payload(self, value: Any) -> bytes:
        """Encode a value already checked (FrameError if too large)."""
        return self._bounded(self.codec.encode(value))

    def _bounded(self, payload: bytes) -> bytes:
        if len(payload) > self.max_payload:
            raise FrameError(
                f"message of {len(payload)} bytes is over the frame limit of {self.max_payload}; "
                "send less, or raise Limits.max_frame on both nodes"
            )
        return payload

    def peer(self, address: str) -> Peer:
        peer = self.peers.get(address)
        if peer is not None:
            return peer
        if self.closed:
            raise NodeUnreachable(f"node {self.name} is closed; start a new Node to send")
        check_endpoint(address)
        with self.peers_lock:
            peer = self.peers.get(address)
            if peer is None:
                key = self.trust.server_key(address)
                if len(self.peers) >= self.quotas.max_peers:
                    self._make_room()
                peer = Peer(address, key)
                self.peers[address] = peer
                self.links.post(
                    peer, ping(0.0, self.heartbeat)
                )  # a first PING opens the connection
        return peer

    def _make_room(self) -> None:
        """Close the least needed peer (not up, nothing pending or watched) for a new one.

        Raises:
            QuotaExceeded: every peer is up or in use (``Quotas.max_peers``).
        """
        victim = least_needed(list(self.peers.values()))
        if victim is None:
            raise QuotaExceeded(
                f"node {self.name} already holds {len(self.peers)} peers, all up or in use "
                "(Quotas.max_peers); a ref to a new node cannot be used until one is released"
            )
        del self.peers[victim.address]
        victim.reaped = True
        self.counters.peers_evicted += 1
        self.io.call(lambda: self.links.retire(victim))

    def post(self, peer: Peer, item: list[Any]) -> None:
        """Queue an item for a peer (the caller checked back-pressure)."""
        self.links.post(peer, item)

    def wait_for_room(self, peer: Peer, block: bool) -> bool:
        """Wait until the peer's outbox has room (``Peer.full``); False only when ``block``
        is False and it has none.

        Raises:
            PeerBusy: it stayed full for ``send_timeout``.
        """
        max_outbox = self.max_outbox
        if not peer.full(max_outbox):
            return True
        if not block:
            return False
        deadline = _monotonic() + self.send_timeout
        while peer.full(max_outbox):
            peer.room.clear()
            if not peer.full(max_outbox):
                break
            left = deadline - _monotonic()
            if left <= 0 or not peer.room.wait(left):
                raise PeerBusy(
                    f"the send queue to node {peer.address} stayed full ({len(peer.outbox)} "
                    f"items, {peer.queued_bytes} bytes of large payloads) for "
                    f"{self.send_timeout:.3g} s; it is slower than its senders: slow down, "
                    "retry later, or raise max_outbox / send_timeout"
                )
        return True

    def tell_down(self, peer: Peer, name: str, payload: bytes) -> None:
        """A tell to a peer that is down goes to dead letters (raises if this node is closed)."""
        if self.closed:
            raise NodeUnreachable(f"node {self.name} is closed; start a new Node to send")
        self.io.call(lambda: self.client.undelivered(peer, name, payload, "node down"))

    def send_request(
        self,
        address: str,
        op: int,
        target: str,
        payload: bytes,
        reply: Reply,
        block: bool = True,
        *,
        trace: str | None = None,
    ) -> bool:
        """Queue a request; False only when ``block`` is False and the queue is full.

        ``trace``: the traceparent the request carries (an eighth field), or None.
        """
        return self.send_to(self.peer(address), op, target, payload, reply, block, trace=trace)

    def send_to(
        self,
        peer: Peer,
        op: int,
        target: str,
        payload: bytes,
        reply: Reply,
        block: bool = True,
        *,
        trace: str | None = None,
    ) -> bool:
        """``send_request`` to a peer already looked up."""
        if peer.state == DOWN:
            raise peer.down_error()
        if peer.full(self.max_outbox) and not self.wait_for_room(peer, block):
            return False
        rid = next(self._ids)
        now = _monotonic()
        left = reply.deadline - now
        # The moment this node would declare the peer unreachable if nothing more came from
        # it: the peer refuses the request once past it (or past the deadline), so a request
        # its asker gave up on is never started later (see llmos.transport._errors).
        patience = max(peer.last_heard, peer.since) + self.heartbeat - now
        wall = time.time()
        item = [op, rid, left, wall + left, target, payload, wall + min(left, patience)]
        if trace is not None:
            item.append(trace)
        with peer.lock:
            if peer.state == DOWN:
                raise peer.down_error()
            peer.pending[rid] = reply
        self.links.post(peer, item)
        return True

    def request(self, address: str, op: int, target: str, value: Any, timeout: float | None) -> Any:
        span = check_timeout(timeout)
        payload = self.encode_payload(value) if value is not None else b"\xc0"
        reply = Reply(_monotonic() + span, f"{target}@{address}", span)
        self.send_request(address, op, target, payload, reply)
        return reply.get()

    def lookup(self, name: str, node: str, timeout: float | None) -> ActorRef:
        """Ask the node at ``node`` for its actor ``name`` (ActorDeadError if none)."""
        ref: ActorRef = self.request(node, LOOKUP, name, None, timeout)
        return ref

    def watch(self, ref: ActorRef, watcher: ActorRef) -> None:
        peer = self.peer(ref.node or "")
        with peer.lock:
            if peer.state != DOWN:
                key = (ref.name, watcher)
                peer.watches[key] = peer.watches.get(key, 0) + 1
                self.links.post(peer, [WATCH, ref.name, self.encode_payload(watcher)])
                return
            reason = peer.down_error()
        watcher.tell(Terminated(ref, f"node lost: {reason}"))

    def unwatch(self, ref: ActorRef, watcher: ActorRef) -> None:
        peer = self.peer(ref.node or "")
        peer.end_watch(ref.name, watcher)
        if peer.state != DOWN:
            self.links.post(peer, [UNWATCH, ref.name, self.encode_payload(watcher)])
