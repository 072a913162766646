"""The node's ROUTER socket: requests that peers send in, and the answers that go back.

Part of the I/O thread (:class:`~llmos.transport._io.IOLoop` mixes this in); everything here
but :meth:`RouterSide.post_reply` runs in the I/O thread. The thread that completes an answer
(the serving actor, usually) queues it; the I/O thread flushes the queue each turn, packing
the answers for one asker into as few frames as the limits allow. A reply the ROUTER cannot
take yet (the asker's queue is full) is retried until the send timeout, then dropped and
counted.
"""

from __future__ import annotations

import collections
import errno
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from llmos.transport._frames import Limits, pack_frame
from llmos.transport._links import BURST, ITEM_BURST, NOBLOCK, SEND
from llmos.transport._peer import Counters

if TYPE_CHECKING:
    from llmos.transport._node import Node

__all__ = ["RCVMORE", "SNDMORE_NOBLOCK", "RouterSide"]

_monotonic = time.monotonic
RCVMORE = int(zmq.RCVMORE)
SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)


class RouterSide:
    """Reading requests from the ROUTER and sending answers through it."""

    node: Node
    limits: Limits
    counters: Counters
    router: zmq.Socket[Any] | None
    replies: collections.deque[tuple[bytes, list[Any], float]]
    sleeping: bool
    woken: bool
    closing: bool
    _stalled: list[tuple[bytes, bytes, float, int]]
    _stalled_bytes: dict[bytes, int]

    wake: Callable[[], None]  # IOLoop's

    def post_reply(self, ident: bytes, item: list[Any], deadline: float) -> None:
        """Queue an answer to a peer that asked through our ROUTER socket (any thread)."""
        self.replies.append((ident, item, deadline))
        if self.sleeping and not self.woken:
            self.woken = True
            self.wake()

    def _on_router(self, _: Any) -> None:
        router = self.router
        assert router is not None
        serve = self.node.server.on_frame
        recv = router.recv
        items = 0
        for _n in range(BURST):  # the rest waits for the next turn: poll reports it at once
            if items >= ITEM_BURST:
                return  # answers go out before more is read: a flood delays no one long
            try:
                ident = recv(NOBLOCK)  # two plain recvs: recv_multipart costs 3x more
            except zmq.Again:
                return
            data = recv(NOBLOCK)  # a ROUTER's first part (the sender) is always followed
            if router.get(RCVMORE):
                parts = [ident, data]
                while router.get(RCVMORE):
                    parts.append(recv(NOBLOCK))
                items += serve(parts)  # rejected: one frame per message
            else:
                items += serve((ident, data))

    def _flush_replies(self) -> None:
        now = _monotonic()
        if self._stalled:
            stalled, self._stalled = self._stalled, []
            self._stalled_bytes.clear()
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
        try:
            # Two plain sends (send_multipart costs more); the second part of a multipart
            # message is never refused once the first was accepted.
            SEND(router, ident, SNDMORE_NOBLOCK)
            SEND(router, frame, NOBLOCK, len(frame) < 65536)  # copy small frames
        except zmq.Again:
            held = self._stalled_bytes.get(ident, 0) + len(frame)
            if held > self.node.quotas.max_queued_bytes:
                # An asker that does not read its answers holds at most this much here.
                self.counters.dropped_replies += count
                return False
            self._stalled_bytes[ident] = held
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
