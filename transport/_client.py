"""The asking side: answers arriving from peers, and what happens to a peer's work when it is lost.

Runs in the I/O thread. A reply completes the pending :class:`~llmos.actors.Reply` of its
request id; a reply for an ask that already completed (it timed out, or its peer was marked
down) is dropped and counted as late. When a peer is lost, queued tells go to dead letters and
every local watcher of an actor on that peer receives ``Terminated``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorRef, LlmosError, MessageError, Terminated
from llmos.actors.lowlevel import record_dead_letter
from llmos.transport._errors import FrameError, NodeUnreachable
from llmos.transport._frames import (
    FAIL,
    NOTICE,
    PONG,
    REPLY,
    TELL,
    Payload,
    is_payload,
    item_payload,
    parse_frame,
)
from llmos.transport._peer import UP, Counters, Peer, counted_bytes

if TYPE_CHECKING:
    from llmos.transport._codec import Codec
    from llmos.transport._frames import Limits

__all__ = ["Client"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic


class Client:
    """Handles frames arriving on the sockets this node opened to its peers."""

    def __init__(
        self,
        *,
        codec: Codec,
        limits: Limits,
        counters: Counters,
        peers: dict[str, Peer],
        remote_ref: Callable[[str, str], ActorRef],
    ) -> None:
        self.codec = codec
        self.limits = limits
        self.counters = counters
        self.peers = peers
        self.remote_ref = remote_ref

    def on_frame(self, peer: Peer, data: bytes, parts: Sequence[Payload]) -> None:
        """One message from the peer: a frame, and the parts that followed it (the large
        payloads of its items)."""
        counters = self.counters
        try:
            items = parse_frame(data, self.limits, parts)
        except FrameError as exc:
            counters.bad_frames += 1
            log.warning("dropped a bad frame from node %s: %s", peer.address, exc)
            return
        counters.frames_in += 1
        counters.bytes_in += len(data) + (sum(map(len, parts)) if parts else 0)
        counters.items_in += len(items)
        peer.last_heard = _monotonic()
        if peer.state != UP:
            peer.mark_up()
        for item in items:
            if type(item) is not list or len(item) != 3:
                counters.bad_items += 1
                continue
            op, key, payload = item
            if op == REPLY or op == FAIL:
                self._complete(peer, op, key, payload)
            elif op == PONG:
                pass
            elif op == NOTICE:
                counters.notices += 1
                log.warning("node %s rejected a frame from this node: %s", peer.address, key)
            else:
                counters.bad_items += 1

    def _complete(self, peer: Peer, op: int, key: Any, payload: Any) -> None:
        reply = peer.pending.pop(key, None) if type(key) is int else None
        if reply is None:
            self.counters.late_replies += 1
            return
        if not is_payload(payload):
            self.counters.bad_items += 1
            reply.set_exception(FrameError(f"node {peer.address} sent a malformed reply"))
            return
        if op == REPLY:
            try:
                value = self.codec.decode(payload)
            except (FrameError, MessageError) as exc:
                self.counters.bad_items += 1
                done = reply.set_exception(exc)
            else:
                done = reply.set_result(value)
        else:
            done = reply.set_exception(self.codec.decode_error(payload))
        if not done:
            self.counters.late_replies += 1

    def drop_outbox(self, peer: Peer) -> None:
        """The peer is down: queued tells go to dead letters (their asks were failed)."""
        outbox = peer.outbox
        peer.stalled = None
        taken = 0
        while outbox:
            item = outbox.popleft()
            taken += counted_bytes(len(item_payload(item)))
            if item[0] == TELL:
                self.undelivered(peer, item[1], item[2], "node unreachable")
        if taken:
            peer.count_bytes(-taken)
        peer.room.set()

    def fail_doomed(self, peer: Peer, now: float) -> None:
        """Fail the requests of a silent peer whose grace time has passed (``now``: all)."""
        keep = []
        for due, replies, error in peer.doomed:
            if now < due:
                keep.append((due, replies, error))
                continue
            for reply in replies.values():
                reply.set_exception(type(error)(*error.args))
        peer.doomed = keep

    def fail_pending(self, peer: Peer, text: str) -> None:
        """Fail the requests still pending on a peer the node forgot (reaped or evicted)."""
        with peer.lock:
            pending, peer.pending = peer.pending, {}
        for reply in pending.values():
            reply.set_exception(NodeUnreachable(text))

    def undelivered(self, peer: Peer, name: str, payload: Payload, reason: str) -> None:
        self.counters.undelivered_tells += 1
        try:
            message: Any = self.codec.decode(payload)
        except (FrameError, MessageError):
            message = payload
        record_dead_letter(f"{name}@{peer.address}", message, reason)

    def lost_watches(self, peer: Peer, text: str) -> None:
        """Tell every local watcher of an actor on the lost peer that it is gone."""
        with peer.lock:
            watches, peer.watches = peer.watches, {}
        for target, watcher in watches:
            note = Terminated(self.remote_ref(target, peer.address), f"node lost: {text}")
            try:
                watcher.tell(note)
            except LlmosError:
                pass  # the watcher itself is gone

    def fail_all(self, text: str) -> None:
        """The node is closing: fail every pending request and end every watch."""
        for peer in list(self.peers.values()):
            for reply in (peer.set_down(NodeUnreachable, text) or {}).values():
                reply.set_exception(NodeUnreachable(text))
            self.fail_doomed(peer, math.inf)
            self.drop_outbox(peer)
            self.lost_watches(peer, text)
