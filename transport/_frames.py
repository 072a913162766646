"""The wire frame: a versioned 8-byte header and a msgpack list of items.

One ZeroMQ message carries one frame, and for frame kind 2 the large payloads of its items as
the message's further parts::

    offset  size  field
    0       2     magic b"LM"
    2       1     version (1)
    3       1     kind (1 = a batch of items; 2 = a batch whose large payloads follow as parts)
    4       4     body length, unsigned big-endian
    8       n     body: msgpack array of items

Every item is a msgpack array whose first element is its op code (an int). Items are checked
one by one: any other value at any position (an ext included) spoils only its own item. User
values (messages, results, errors) travel inside items as msgpack ``bin`` payloads encoded by
:class:`~llmos.transport.Codec`, so a payload that cannot be decoded spoils only its own item
(and its asker gets the error), never the whole frame. The I/O thread packs whatever is queued
for one peer into one frame; that batching is what makes tell throughput beat single sends.

A payload of ``DETACH`` bytes or more leaves the body (kind 2): in its place the item holds
ext ``PART`` with the payload's length (4 bytes, big-endian), and the payload travels in the
parts that follow the frame. The references take the parts' bytes in order, each the next
payload of its length (a part holds one payload of ``GATHER`` bytes or more, or smaller ones
joined), and together they take all of them, exactly; the body and the parts stay within
``Limits.max_frame``. So a large payload is neither copied into a frame on the way out (it is
sent from where it lies) nor out of one on the way in: the receiver decodes it where libzmq
put it.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from collections.abc import Sequence
from typing import Any, TypeAlias

import msgpack

from llmos.actors import LlmosError
from llmos.transport._errors import FrameError

__all__ = [
    "ASK",
    "DETACH",
    "FAIL",
    "GATHER",
    "HEADER_SIZE",
    "LOOKUP",
    "NOTICE",
    "PING",
    "PONG",
    "REPLY",
    "REQUEST_OPS",
    "SPAWN",
    "STATS",
    "STOP",
    "TELL",
    "UNWATCH",
    "VERSION",
    "WATCH",
    "Limits",
    "Payload",
    "is_payload",
    "item_payload",
    "pack_frame",
    "pack_message",
    "parse_frame",
    "ping",
]

MAGIC = b"LM"
VERSION = 1
KIND_BATCH = 1
KIND_PARTS = 2
_HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = _HEADER.size
PART = 0x50  # ext code, at the item level, of a payload that follows as a message part
DETACH = 4096  # payloads at least this large travel as message parts, out of the body
GATHER = 65536  # payloads at least this large travel as parts of their own, not copied
_PART_LENGTH = struct.Struct(">I")

Payload: TypeAlias = bytes | memoryview
"""An item's payload: bytes, or on arrival a view of the message part it came in."""


def is_payload(value: Any) -> bool:
    """Whether an item field is a payload: bytes, or a view of the part it came in."""
    return type(value) is bytes or type(value) is memoryview


def item_payload(item: list[Any]) -> Payload:
    """An outgoing item's payload: its sixth field in a request (an item of six fields or
    more), else its third."""
    return item[5] if len(item) >= 6 else item[2]  # type: ignore[no-any-return]


# Item op codes. Requests share one shape:
#   [op, req_id, span, wall_deadline, target, payload, give_up]
# span: seconds left to the deadline when sent; wall_deadline: the same as wall-clock time;
# give_up: the wall-clock time after which the asker may have given up on it (its deadline, or
# when it would declare this node unreachable if it heard nothing more). A request read after
# give_up (+ clock_skew) is refused unstarted. Six-field requests (no give_up) are accepted.
# An ASK or TELL sent from a traced span has one more field, its W3C traceparent (a 55-char
# str, checked on arrival; a malformed one is dropped and counted, the message delivered).
TELL = 1  # [TELL, target, payload] or [TELL, target, payload, traceparent]
ASK = 2
REPLY = 3  # [REPLY, req_id, payload]
FAIL = 4  # [FAIL, req_id, error payload]
PING = 5  # [PING, silence, b"", timeout]: ms since the pinging node heard the pinged one,
# and its heartbeat timeout in ms (after which it gives up on a silent node)
PONG = 6  # [PONG, seq, b""]
WATCH = 7  # [WATCH, target, watcher ref payload]
UNWATCH = 8  # [UNWATCH, target, watcher ref payload]
SPAWN = 9
LOOKUP = 10
STOP = 11
STATS = 12
NOTICE = 13  # [NOTICE, text, b""]: "your frame was rejected", when no request can be named
REQUEST_OPS = frozenset({ASK, SPAWN, LOOKUP, STOP, STATS})


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a node accepts from the wire (and sends).

    Attributes:
        max_frame: largest frame body in bytes; also bounds every str, bin and ext inside.
            Sockets get ``MAXMSGSIZE`` just above it, so libzmq drops a peer that sends more.
        max_array: most elements in one msgpack array (a 1 MiB frame of nils would otherwise
            expand about 8.5x in memory).
        max_map: most entries in one msgpack map.
        max_items: most items the I/O thread packs into one outgoing frame.
    """

    max_frame: int = 16 * 1024 * 1024
    max_array: int = 131_072
    max_map: int = 131_072
    max_items: int = 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LlmosError(f"Limits.{field.name} must be a positive int, got {value!r}")
        if self.max_frame < 1024:
            raise LlmosError(f"Limits.max_frame must be at least 1024 bytes, got {self.max_frame}")

    def unpack_options(self) -> dict[str, Any]:
        """Keyword arguments for ``msgpack.unpackb`` enforcing these limits.

        str, bin and ext lengths are left at msgpack's default, the length of the input, which
        is never more than ``max_frame`` (frames are checked first); passing fewer keyword
        arguments halves the cost of each ``unpackb`` call.
        """
        return {
            "strict_map_key": False,
            "max_array_len": self.max_array,
            "max_map_len": self.max_map,
        }


_packer = msgpack.Packer(use_bin_type=True)


def ping(silence: float, timeout: float) -> list[Any]:
    """A PING item: this node has heard nothing from the pinged one for ``silence`` seconds,
    and gives up on a node after ``timeout`` seconds of silence (its heartbeat timeout)."""
    return [PING, int(silence * 1000), b"", int(timeout * 1000)]


def pack_frame(items: list[list[Any]]) -> bytes:
    """Pack items (plain msgpack data, payloads already bytes) into one frame of kind 1.

    Only the I/O thread calls this (the packer is not shared across threads).
    """
    body: bytes = _packer.pack(items)
    return b"".join((_HEADER.pack(MAGIC, VERSION, KIND_BATCH, len(body)), body))


def pack_message(items: list[list[Any]]) -> list[Payload]:
    """The parts of one message carrying ``items``: a frame of kind 1 alone, or a frame of
    kind 2 followed by the payloads of ``DETACH`` bytes or more.

    A payload of ``GATHER`` bytes or more is a part of its own, not copied; smaller ones next to
    each other are joined into one part, so each costs one send and one receive less.
    An item's payload is :func:`item_payload`. Only the I/O thread calls this.
    """
    for item in items:
        if len(item_payload(item)) >= DETACH:
            break
    else:
        return [pack_frame(items)]
    parts: list[Payload] = [b""]
    joined: list[Payload] = []  # payloads to be joined into the next part
    body = []
    for item in items:
        at = 5 if len(item) >= 6 else 2
        payload = item[at]
        size = len(payload)
        if size >= DETACH:
            item = item.copy()  # the caller's item is left as it was
            item[at] = _part_ref(size)
            if size < GATHER:
                joined.append(payload)
            else:
                if joined:
                    parts.append(_join(joined))
                    joined = []
                parts.append(payload)
        body.append(item)
    if joined:
        parts.append(_join(joined))
    packed: bytes = _packer.pack(body)
    parts[0] = b"".join((_HEADER.pack(MAGIC, VERSION, KIND_PARTS, len(packed)), packed))
    return parts


@functools.lru_cache(maxsize=64)
def _part_ref(size: int) -> msgpack.ExtType:
    """The reference that stands for a payload of ``size`` bytes sent as a part (a burst of
    large tells is usually of one size: one reference object, not one per item)."""
    return msgpack.ExtType(PART, _PART_LENGTH.pack(size))


def _join(payloads: list[Payload]) -> Payload:
    return payloads[0] if len(payloads) == 1 else b"".join(payloads)


def _keep_ext(code: int, data: bytes) -> Any:
    # An ext at the item level is no field of any item: kept as is, it fails its item's
    # checks, and only that item is rejected.
    return msgpack.ExtType(code, b"")


class _Parts:
    """The ext hook of a frame of kind 2: each ``PART`` reference takes the next payload, the
    next bytes of the current part, as long as its reference declares."""

    __slots__ = ("at", "offset", "parts")

    def __init__(self, parts: Sequence[Payload]) -> None:
        self.parts = parts
        self.at = 0  # the current part
        self.offset = 0  # where its next payload starts

    def __call__(self, code: int, data: bytes) -> Any:
        if code != PART:
            return msgpack.ExtType(code, b"")
        at, parts = self.at, self.parts
        if at >= len(parts):
            raise FrameError(f"the frame references more than the {at} parts it came with")
        if len(data) != _PART_LENGTH.size:
            raise FrameError("a part reference must hold a 4-byte length")
        (size,) = _PART_LENGTH.unpack(data)
        if size < DETACH:
            raise FrameError(
                f"a payload of {size} bytes travels in the frame, not as a part (under {DETACH})"
            )
        part = parts[at]
        start = self.offset
        end = start + size
        if end > len(part):
            raise FrameError(f"a payload runs past the end of part {at + 1}")
        view = part if type(part) is memoryview else memoryview(part)
        if end == len(part):
            self.at, self.offset = at + 1, 0
            return view if start == 0 else view[start:]
        self.offset = end
        return view[start:end]

    def check_all_taken(self) -> None:
        if self.at != len(self.parts) or self.offset:
            raise FrameError(
                f"the frame came with {len(self.parts)} parts; its references do not take "
                "exactly all of them"
            )


def parse_frame(data: Payload, limits: Limits, parts: Sequence[Payload] = ()) -> list[Any]:
    """Check the header and unpack the body into its list of items.

    ``parts``: the message parts that followed the frame (payloads of a frame of kind 2,
    which its items then hold in place of their references).

    Raises:
        FrameError: the frame is garbage, truncated, too large, of an unknown version or kind,
            or its body is not a msgpack array; or its parts are not exactly the ones its items
            reference, in order, each at least ``DETACH`` bytes, all within
            ``limits.max_frame`` with the body. The text says which.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise FrameError(f"frame of {size} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, kind, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError(f"not an llmos frame (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise FrameError(
            f"frame version {version} is not supported (this node speaks {VERSION}); run the "
            "same llmos version on both nodes"
        )
    if kind != KIND_BATCH and kind != KIND_PARTS:
        raise FrameError(f"unknown frame kind {kind}")
    if length > limits.max_frame:
        raise FrameError(f"frame declares {length} bytes, over the limit of {limits.max_frame}")
    if length != size - HEADER_SIZE:
        raise FrameError(
            f"frame declares {length} bytes but carries {size - HEADER_SIZE}; truncated or corrupt"
        )
    taker: _Parts | None = None
    if kind == KIND_PARTS:
        _check_parts(parts, length, limits)
        taker = _Parts(parts)
    elif parts:
        raise FrameError(
            f"a frame of kind {KIND_BATCH} came with {len(parts)} more message parts; it "
            "carries none"
        )
    try:
        body = msgpack.unpackb(
            memoryview(data)[HEADER_SIZE:],
            ext_hook=_keep_ext if taker is None else taker,
            strict_map_key=False,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
        )
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError(f"frame body is not valid msgpack: {exc}") from exc
    if type(body) is not list:
        raise FrameError(f"frame body must be an array of items, got {type(body).__name__}")
    if taker is not None:
        taker.check_all_taken()
    return body


def _check_parts(parts: Sequence[Payload], length: int, limits: Limits) -> None:
    if not parts:
        raise FrameError(f"a frame of kind {KIND_PARTS} came without the parts it references")
    if len(parts) > limits.max_items:
        raise FrameError(f"a frame came with more than {limits.max_items} parts (Limits.max_items)")
    total = length
    for part in parts:
        if len(part) < DETACH:
            raise FrameError(
                f"a part of {len(part)} bytes is under {DETACH}; such payloads travel in the frame"
            )
        total += len(part)
    if total > limits.max_frame:
        raise FrameError(
            f"frame and parts hold {total} bytes, over the limit of {limits.max_frame}"
        )
