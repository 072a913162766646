"""Socket options and constants shared by the node's ROUTER and its dealers.

Frames queued per connection and direction: a frame batches up to ``max_items`` items or about
``BATCH_BYTES``, so a stalled peer holds at most about ``HWM * BATCH_BYTES`` (16 MiB) in
libzmq's pipe (more only for single messages larger than that); the outbox in front of it is
bounded by ``Node.max_outbox`` items and ``_peer.OUTBOX_BYTES`` of large payloads, so a peer
that cannot keep up turns into ``PeerBusy`` for its senders. Each frame costs a turn of the I/O
thread on both sides and often a wake-up of the receiving actor, so frames are large and the
mark is low (a burst of 10 KB tells goes out about 50 to a frame). libzmq's flow control sends
a command between a socket and its I/O thread every ``HWM / 2`` messages each way, and each
command wakes a thread, so the mark is not set lower than this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.backend

from llmos.transport._frames import Limits, Payload
from llmos.transport._security import ZAP_DOMAIN

__all__ = [
    "BATCH_BYTES",
    "BURST",
    "COPY_MAX",
    "EVENTS",
    "HWM",
    "ITEM_BURST",
    "NOBLOCK",
    "POLLIN",
    "POLLOUT",
    "RCVMORE",
    "ROUTER_HWM",
    "SEND",
    "SNDMORE_NOBLOCK",
    "SOCKET_BUFFER",
    "configure",
    "read_rest",
    "send_parts",
]

HWM = 32
ROUTER_HWM = 32
BATCH_BYTES = 512 * 1024
SOCKET_BUFFER = 128 * 1024  # bytes of kernel send and receive buffer per connection
BURST = 64  # frames read from one socket per turn, so no peer starves the others
ITEM_BURST = 2048  # items of frames read from the ROUTER per turn, before answers go out
# pyzmq's constants are enum flags; combining a plain int with one goes through the enum
# machinery (several microseconds per ``&``), so the hot paths use plain ints.
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
NOBLOCK = int(zmq.NOBLOCK)
EVENTS = int(zmq.EVENTS)
RCVMORE = int(zmq.RCVMORE)
SNDMORE_NOBLOCK = int(zmq.SNDMORE) | NOBLOCK
# Parts smaller than this are copied into libzmq's message; larger ones are sent zero-copy
# (libzmq holds a reference until it has written them), as pyzmq itself does by default.
COPY_MAX = 65536
# The socket's own send, without pyzmq's Python-level wrapper (which only adds the DRAFT
# routing_id and group arguments): a third less per call on the hot paths.
SEND: Callable[..., Any] = zmq.backend.Socket.send


def configure(sock: zmq.Socket[Any], limits: Limits, heartbeat: float) -> None:
    """The options every socket of the node gets (ROUTER and dealers).

    No ZMTP heartbeats: libzmq's heartbeat timer can fire on an engine whose connection
    dropped while its input was stopped (a peer that flooded, then vanished) and abort the
    process (``!_io_error`` in stream_engine_base.cpp). Liveness is the node's own
    PING/PONG; TCP keepalive lets the kernel drop connections to vanished hosts.
    A connection that has not completed its ZMTP 3 handshake within HANDSHAKE_IVL is
    closed; the ROUTER sets a ZAP domain on every node, keyed or not, so that libzmq also
    refuses ZMTP 1.0 peers at once (they have no handshake to time out).
    """
    hb_ms = max(1, int(heartbeat * 1000))
    sock.linger = 0
    sock.sndhwm = HWM
    sock.rcvhwm = HWM
    # Bounded kernel buffers too: what waits ahead of a heartbeat stays small, and a peer
    # that stops reading stalls its senders quickly (they then see PeerBusy).
    sock.setsockopt(zmq.SNDBUF, SOCKET_BUFFER)
    sock.setsockopt(zmq.RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(zmq.MAXMSGSIZE, limits.max_frame + 1024)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, max(1, math.ceil(heartbeat)))
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
    sock.setsockopt(zmq.HANDSHAKE_IVL, max(200, hb_ms))
    if sock.type == zmq.ROUTER:
        sock.zap_domain = ZAP_DOMAIN
        # What one connection may leave unread here (a peer that floods, then vanishes):
        # ROUTER_HWM frames, plus the kernel's buffer.
        sock.rcvhwm = ROUTER_HWM


def send_parts(sock: zmq.Socket[Any], parts: Sequence[Payload]) -> None:
    """Send the parts of one message without blocking (all but the last with SNDMORE).

    Raises:
        zmq.Again: the socket has no room for the message (raised by its first part only:
            once a first part is taken, libzmq takes the rest of the message).
    """
    last = len(parts) - 1
    if last:
        for at in range(last):
            part = parts[at]
            SEND(sock, part, SNDMORE_NOBLOCK, len(part) < COPY_MAX)
    part = parts[last]
    SEND(sock, part, NOBLOCK, len(part) < COPY_MAX)


def read_rest(sock: zmq.Socket[Any], keep: int) -> list[memoryview]:
    """The remaining parts of the message being read, as views of libzmq's messages (not
    copied): at most ``keep`` of them, the rest read and dropped."""
    parts: list[memoryview] = []
    recv = sock.recv
    while sock.get(RCVMORE):
        part = recv(NOBLOCK, copy=False)
        if len(parts) < keep:
            parts.append(part.buffer)
    return parts
