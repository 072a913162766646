"""What one node knows about one peer node, and the node's counters and statistics record.

A :class:`Peer` is plain state shared between caller threads (which queue items and register
pending asks) and the I/O thread (which owns the peer's socket and decides up and down). The
lock guards the state change and the pending table together, so an ask is either registered
before the peer goes down (and then failed with the rest) or refused at once.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorRef, Reply
from llmos.transport._errors import NodeUnreachable, TransportError
from llmos.transport._frames import DETACH

if TYPE_CHECKING:
    from llmos.transport._frames import Payload
    from llmos.transport._security import ZapHandler

__all__ = [
    "CONNECTING",
    "DOWN",
    "OUTBOX_BYTES",
    "UP",
    "Counters",
    "NodeStats",
    "Peer",
    "counted_bytes",
    "idle",
    "least_needed",
    "node_stats",
]

log = logging.getLogger("llmos.transport")

CONNECTING = "connecting"
UP = "up"
DOWN = "down"

# Senders to a peer wait while its outbox holds this many bytes of large payloads (beside
# ``Node.max_outbox`` items): a burst of large tells then reuses the same memory as it goes
# out, instead of queueing hundreds of megabytes (each new page a page fault) ahead of the
# I/O thread. Four frames' worth (``_sockets.BATCH_BYTES``); a payload larger than this goes
# out alone, never waiting for itself.
OUTBOX_BYTES = 2 * 1024 * 1024


def counted_bytes(size: int) -> int:
    """What a payload of ``size`` bytes counts against ``OUTBOX_BYTES``: all of it when it
    is ``DETACH`` bytes or more (it travels as a part), else nothing."""
    return size if size >= DETACH else 0


class Peer:
    """One peer node, by address.

    Attributes:
        address: the peer's ZeroMQ endpoint.
        state: CONNECTING (no answer yet), UP, or DOWN (failed; retried in the background).
        pending: asks and other requests waiting for an answer, by request id.
        outbox: items queued by callers, packed into frames by the I/O thread.
        queued_bytes: bytes of the payloads of ``DETACH`` bytes or more in the outbox (added by
            callers, taken off by the I/O thread, through :meth:`count_bytes`).
        watches: (remote actor name, local watcher) pairs, told ``Terminated`` if the peer
            is lost.
    """

    __slots__ = (
        "_bytes_lock",
        "address",
        "doomed",
        "error",
        "last_heard",
        "lock",
        "monitor",
        "outbox",
        "pending",
        "queued",
        "queued_bytes",
        "reaped",
        "retry_at",
        "room",
        "server_key",
        "since",
        "socket",
        "stalled",
        "state",
        "up_event",
        "used",
        "watches",
    )

    def __init__(self, address: str, server_key: bytes | None) -> None:
        self.address = address
        self.server_key = server_key
        self.lock = threading.Lock()
        self.state = CONNECTING
        self.error: tuple[type[TransportError], str] | None = None
        self.pending: dict[int, Reply] = {}
        # Requests of a peer that fell silent, failed when the time comes (see mark_down).
        self.doomed: list[tuple[float, dict[int, Reply], TransportError]] = []
        self.outbox: collections.deque[list[Any]] = collections.deque()
        self.queued = False
        self.queued_bytes = 0
        self._bytes_lock = threading.Lock()  # its own: callers may post under ``lock``
        self.room = threading.Event()
        self.room.set()
        self.up_event = threading.Event()
        self.since = time.monotonic()
        self.last_heard = 0.0
        self.retry_at = 0.0
        self.watches: dict[tuple[str, ActorRef], int] = {}
        self.socket: Any = None
        self.monitor: Any = None
        self.stalled: list[Payload] | None = None  # a message libzmq had no room for
        self.used = self.since  # when a ref last sent through it (idle peers are reaped)
        self.reaped = False  # closed and forgotten by the node: refs look the address up again

    def mark_up(self) -> None:
        """The peer answered: it is up (any thread; the first answer after down logs it)."""
        with self.lock:
            if self.state == UP:
                return
            self.state = UP
            self.error = None
        self.up_event.set()
        log.info("node %s is up", self.address)

    def set_down(self, cls: type[TransportError], text: str) -> dict[int, Reply] | None:
        """Record why the peer is down (any thread). The first time, take its pending requests
        for the caller to fail: under the lock, so none is registered after; None when it was
        down already."""
        with self.lock:
            self.error = (cls, text)
            if self.state == DOWN:
                return None
            self.state = DOWN
            pending, self.pending = self.pending, {}
            self.up_event.clear()
        return pending

    def end_watch(self, name: str, watcher: ActorRef) -> None:
        """Forget that ``watcher`` watches the actor ``name`` there (any thread)."""
        with self.lock:
            self.watches.pop((name, watcher), None)

    def count_bytes(self, size: int) -> None:
        """Add ``size`` (negative: take it off) to ``queued_bytes`` (any thread)."""
        with self._bytes_lock:
            self.queued_bytes += size

    def full(self, max_outbox: int) -> bool:
        """Whether senders must wait for room: ``max_outbox`` items queued, or
        ``OUTBOX_BYTES`` of large payloads."""
        return len(self.outbox) >= max_outbox or self.queued_bytes >= OUTBOX_BYTES

    def down_error(self) -> TransportError:
        """A fresh error saying why the peer is down (raised in the caller's thread)."""
        if self.error is None:
            return NodeUnreachable(f"node {self.address} is down")
        cls, text = self.error
        return cls(text)

    def __repr__(self) -> str:
        return f"<Peer {self.address} {self.state}>"


def idle(peer: Peer) -> bool:
    """Nothing depends on the peer: no request pending, no watch, nothing queued."""
    return (
        not peer.pending
        and not peer.doomed
        and not peer.watches
        and not peer.outbox
        and peer.stalled is None
    )


def least_needed(peers: Iterable[Peer]) -> Peer | None:
    """The peer to close first when the node needs room for another: one that is not up and
    has nothing pending or watched (its queued tells go to dead letters), the longest unused
    first; None when every peer is up or in use."""
    candidates = [p for p in peers if p.state != UP and not p.pending and not p.watches]
    return min(candidates, key=lambda p: p.used, default=None)


@dataclasses.dataclass(slots=True)
class Counters:
    """Mutable counters (each is a field of :class:`NodeStats`), written by the I/O thread and,
    for an answer it settles, by an actor's thread (a ``+= 1`` under the GIL: a figure, not a
    quota)."""

    bad_frames: int = 0
    bad_items: int = 0
    bad_traces: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_replies: int = 0
    expired_requests: int = 0
    frames_in: int = 0
    frames_out: int = 0
    items_in: int = 0
    items_out: int = 0
    late_replies: int = 0
    notices: int = 0
    notices_withheld: int = 0
    peers_evicted: int = 0
    peers_reaped: int = 0
    quota_refusals: int = 0
    refusals: int = 0
    undelivered_tells: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class NodeStats:
    """A snapshot of one node's transport counters.

    Attributes:
        address: the node's address.
        name: the node's name.
        peers_up: addresses of peers answering heartbeats.
        peers_down: addresses of peers marked down (retried in the background).
        pending_requests: asks (and spawn, lookup, stop, statistics requests) awaiting answers.
        frames_in: valid frames received. frames_out: frames sent.
        items_in: items received in valid frames. items_out: items sent.
        bad_frames: frames dropped as garbage, truncated, too large, or of an unknown version
            or kind.
        bad_items: items rejected inside valid frames (bad shape, undecodable payload,
            unknown ext or message type); the asker got an error reply where there was one.
        expired_requests: requests not started because their asker had given up (past their
            deadline, or past the time the asker would declare this node unreachable), when
            read or when their actor took them off its mailbox (after a freeze); each was
            answered with ``RequestExpired`` where the asker could still be reached.
        late_replies: replies that arrived after their ask had completed (timed out or
            failed), and were dropped.
        dropped_replies: replies that could not be delivered (the asker's connection is gone,
            or its queue stayed full past the send timeout).
        undelivered_tells: tells that could not be delivered (peer down, no such actor, full
            mailbox); each is also recorded in dead letters.
        notices: rejection notices received from peers about frames this node sent.
        auth_accepted: CURVE clients let in. auth_refused: CURVE clients refused.
        refusals: requests and items refused because the peer may not make them (a stop it
            may not make, a spawn not on the allowlist, a local-only message).
        quota_refusals: requests refused because the peer was over one of its quotas.
        notices_withheld: notices not sent to a peer over its notice quota (counted instead).
        peers_reaped: idle peers closed and forgotten (``Quotas.peer_idle``).
        peers_evicted: peers not up and not in use, closed to make room for a new one within
            ``Quotas.max_peers`` (their queued tells went to dead letters).
        bad_traces: trace contexts from peers dropped as malformed (the messages carrying
            them were delivered without one).
        bytes_in: bytes of valid frames received. bytes_out: bytes of frames sent.
        clients_up: peers connected to this node (nodes and drivers that send to it; a CURVE
            key on a keyed node) heard from within the heartbeat timeout: a peer pings the nodes
            it sends to several times per heartbeat. clients_silent: such peers known to this
            node but not heard from for longer (gone, or cut off; forgotten once idle).
    """

    address: str
    name: str
    peers_up: tuple[str, ...]
    peers_down: tuple[str, ...]
    pending_requests: int
    frames_in: int
    frames_out: int
    items_in: int
    items_out: int
    bad_frames: int
    bad_items: int
    expired_requests: int
    late_replies: int
    dropped_replies: int
    undelivered_tells: int
    notices: int
    auth_accepted: int
    auth_refused: int
    refusals: int = 0
    quota_refusals: int = 0
    notices_withheld: int = 0
    peers_reaped: int = 0
    peers_evicted: int = 0
    bad_traces: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    clients_up: int = 0
    clients_silent: int = 0


def node_stats(
    address: str,
    name: str,
    counters: Counters,
    peers: list[Peer],
    zap: ZapHandler | None,
    clients: list[bool],
) -> NodeStats:
    """A node's :class:`NodeStats`: its ``counters``, the state of the ``peers`` it sends to, the
    CURVE clients ``zap`` let in or refused, and ``clients``: for each peer that sends to it,
    whether it was heard from within the heartbeat timeout."""
    return NodeStats(
        address=address,
        name=name,
        peers_up=tuple(p.address for p in peers if p.state == UP),
        peers_down=tuple(p.address for p in peers if p.state == DOWN),
        pending_requests=sum(len(p.pending) for p in peers),
        auth_accepted=zap.accepted if zap else 0,
        auth_refused=zap.refused if zap else 0,
        clients_up=sum(clients),
        clients_silent=len(clients) - sum(clients),
        **dataclasses.asdict(counters),
    )
