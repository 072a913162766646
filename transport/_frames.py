"""The wire frame: a versioned 8-byte header and a msgpack list of items.

One ZeroMQ message carries one frame::

    offset  size  field
    0       2     magic b"LM"
    2       1     version (1)
    3       1     kind (1 = a batch of items)
    4       4     body length, unsigned big-endian
    8       n     body: msgpack array of items

Every item is a msgpack array whose first element is its op code (an int). Items are checked
one by one: any other value at any position (an ext included) spoils only its own item. User
values (messages, results, errors) travel inside items as msgpack ``bin`` payloads encoded by
:class:`~llmos.transport.Codec`, so a payload that cannot be decoded spoils only its own item
(and its asker gets the error), never the whole frame. The I/O thread packs whatever is queued
for one peer into one frame; that batching is what makes tell throughput beat single sends.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import msgpack

from llmos.actors import LlmosError
from llmos.transport._errors import FrameError

__all__ = [
    "ASK",
    "FAIL",
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
    "pack_frame",
    "parse_frame",
]

MAGIC = b"LM"
VERSION = 1
KIND_BATCH = 1
_HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = _HEADER.size

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
PING = 5  # [PING, seq, b""]
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
_BIG = 16 * 1024  # payloads at least this large are joined into the frame, not packed again


def pack_frame(items: list[list[Any]]) -> bytes:
    """Pack items (plain msgpack data, payloads already bytes) into one frame.

    An item's payload (its last field) of ``_BIG`` bytes or more is not packed again: the
    frame is joined from its pieces, so a large payload is copied once, into the frame.
    Only the I/O thread calls this (the packer is not shared across threads).
    """
    pack = _packer.pack
    for item in items:
        if _big(item):
            break
    else:
        body: bytes = pack(items)
        return b"".join((_HEADER.pack(MAGIC, VERSION, KIND_BATCH, len(body)), body))
    parts = [b"", _packer.pack_array_header(len(items))]
    for item in items:
        if _big(item):
            last = item[-1]
            parts.append(_packer.pack_array_header(len(item)))
            parts.extend(pack(field) for field in item[:-1])
            parts.append(_bin_header(len(last)))
            parts.append(last)
        else:
            parts.append(pack(item))
    parts[0] = _HEADER.pack(MAGIC, VERSION, KIND_BATCH, sum(map(len, parts)))
    return b"".join(parts)


def _big(item: Any) -> bool:
    return type(item) is list and bool(item) and type(item[-1]) is bytes and len(item[-1]) >= _BIG


def _bin_header(size: int) -> bytes:
    """The msgpack header of a bin of ``size`` bytes (what the packer writes before it)."""
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _keep_ext(code: int, data: bytes) -> Any:
    # An ext at the item level is no field of any item: kept as is, it fails its item's
    # checks, and only that item is rejected.
    return msgpack.ExtType(code, b"")


def parse_frame(data: bytes, limits: Limits) -> list[Any]:
    """Check the header and unpack the body into its list of items.

    Raises:
        FrameError: the frame is garbage, truncated, too large, of an unknown version or kind,
            or its body is not a msgpack array. The text says which.
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
    if kind != KIND_BATCH:
        raise FrameError(f"unknown frame kind {kind}")
    if length > limits.max_frame:
        raise FrameError(f"frame declares {length} bytes, over the limit of {limits.max_frame}")
    if length != size - HEADER_SIZE:
        raise FrameError(
            f"frame declares {length} bytes but carries {size - HEADER_SIZE}; truncated or corrupt"
        )
    try:
        body = msgpack.unpackb(
            memoryview(data)[HEADER_SIZE:],
            ext_hook=_keep_ext,
            strict_map_key=False,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
        )
    except FrameError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError(f"frame body is not valid msgpack: {exc}") from exc
    if type(body) is not list:
        raise FrameError(f"frame body must be an array of items, got {type(body).__name__}")
    return body
