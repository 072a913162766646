"""The codec: msgpack with ext types for tuples, message classes and actor refs; error envelopes.

Values are exactly what :func:`llmos.actors.check_message` accepts. msgpack carries the plain
data; three ext types carry the rest:

- ``1`` tuple: the items as a msgpack array (so tuples come back as tuples, lists as lists);
- ``2`` message: ``[wire_name, field values...]`` of a class declared with ``@message``;
- ``3`` actor ref: ``[node address, actor name]``. A local ref travels as this node's address;
  an incoming ref naming this node decodes to the local ref, any other to a remote ref.

Errors travel as an envelope ``[type name, args or None, text, traceback text, origin node]``.
On the receiving side the same class is rebuilt when it is known (builtin exceptions, every
:class:`~llmos.actors.LlmosError` subclass loaded in the process, and classes passed to
:func:`register_error`); any other arrives as :class:`~llmos.transport.RemoteError`. Nothing is
ever unpickled or imported because a peer named it.

Only these ext codes are decoded: any other, msgpack's own Timestamp (-1) included, is refused
with a :class:`~llmos.transport.FrameError`; a local-only message class (``@message(...,
local_only=True)``) is refused with :class:`~llmos.transport.NotAllowed`. A message is sent
as exactly its own registered class: an undecorated subclass is refused at send time.

Every decode enforces :class:`~llmos.transport.Limits` and ``MAX_DEPTH``; what breaks them
raises :class:`~llmos.transport.FrameError`.
"""

from __future__ import annotations

import builtins
import threading
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
from msgpack import Timestamp

from llmos.actors import ActorRef, LlmosError, MessageError, wire_name
from llmos.actors.lowlevel import MAX_DEPTH, check_message, message_class
from llmos.transport._errors import FrameError, NotAllowed, RemoteError
from llmos.transport._frames import Limits, Payload

__all__ = ["EXT_MESSAGE", "EXT_REF", "EXT_TUPLE", "Codec", "register_error"]

EXT_TUPLE = 1
EXT_MESSAGE = 2
EXT_REF = 3

E = TypeVar("E", bound=type[Exception])

_registered: dict[str, type[Exception]] = {}
_SIMPLE = (str, int, float, bool, type(None), bytes)
_MAX_TRACEBACK = 4000


def _type_name(cls: type[BaseException]) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def register_error(cls: E) -> E:
    """Let an exception class cross nodes as itself (usable as a class decorator).

    Builtin exceptions and every :class:`~llmos.actors.LlmosError` subclass are known already.
    A registered class must be importable on both nodes and accept its ``args`` back.

    Raises:
        LlmosError: ``cls`` is not an Exception subclass.
    """
    if not isinstance(cls, type) or not issubclass(cls, Exception):
        raise LlmosError(f"register_error takes an Exception subclass, got {cls!r}")
    _registered[_type_name(cls)] = cls
    return cls


def _known_error(name: str) -> type[Exception] | None:
    cls = _registered.get(name)
    if cls is not None:
        return cls
    if "." not in name:
        found = getattr(builtins, name, None)
        if isinstance(found, type) and issubclass(found, Exception):
            return found
        return None
    stack: list[type[Exception]] = [LlmosError]
    while stack:
        klass = stack.pop()
        if _type_name(klass) == name:
            _registered[name] = klass
            return klass
        stack.extend(klass.__subclasses__())
    return None


class Codec:
    """Encode values to msgpack bytes and back, for one node.

    Args:
        local_address: this node's address; local refs are encoded with it, and incoming refs
            naming it decode to local refs.
        bind_ref: builds the ref for ``(name, node address)`` found on the wire.
        limits: bounds enforced on every decode.

    ``encode`` may be called from any thread; ``decode`` too (state is per thread).
    """

    def __init__(
        self, local_address: str, bind_ref: Callable[[str, str], ActorRef], limits: Limits
    ) -> None:
        self.local_address = local_address
        self._bind_ref = bind_ref
        self._options = limits.unpack_options()
        self._max_array = self._options["max_array_len"]  # spelled out in decode, below
        self._max_map = self._options["max_map_len"]
        self._hook = self._ext_hook  # one bound method, not a new one per decode
        self._tls = threading.local()
        # Types the depth check descends into: containers, and message classes once seen.
        self._nested: set[type] = {list, tuple, dict}

    # -- encoding -----------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """Pack one value (already checked with ``check_message``) into msgpack bytes.

        Raises:
            MessageError: the value has no wire form.
        """
        try:
            packer = self._tls.top
        except AttributeError:
            packer = self._tls.top = self._packer()
        try:
            data: bytes = packer.pack(value)
        except MessageError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise MessageError(f"value cannot be encoded for the wire: {exc}") from exc
        return data

    def _packer(self) -> msgpack.Packer:
        return msgpack.Packer(default=self._default, use_bin_type=True, strict_types=True)

    def _encode_nested(self, value: Any) -> bytes:
        """Pack the inside of an ext, from within the default hook of an outer packer.

        A packer is not re-entrant, so each nesting level has its own.
        """
        tls = self._tls
        packers: list[msgpack.Packer] | None = getattr(tls, "packers", None)
        if packers is None:
            packers = tls.packers = []
        depth: int = getattr(tls, "depth", 0)
        if depth >= len(packers):
            packers.append(self._packer())
        tls.depth = depth + 1
        try:
            data: bytes = packers[depth].pack(value)
        finally:
            tls.depth = depth
        return data

    def encode_checked(self, value: Any) -> bytes:
        """``check_message(value)`` and ``encode(value)``, in one pass for plain data.

        A dict or list is packed first (in C); only when the packed bytes leave a doubt (more
        container headers than ``MAX_DEPTH``, or an ext, nil, bool or float that could be a
        disallowed dict key) does the Python-level ``check_message`` walk run. Anything else
        is checked first, as always.

        Raises:
            MessageError: the value cannot be sent (the same error ``check_message`` raises).
        """
        cls = type(value)
        if cls is not dict and cls is not list:
            check_message(value)
            return self.encode(value)
        try:
            data = self.encode(value)
        except MessageError:
            check_message(value)  # names the offending value and where it sits
            raise
        if len(data) > _SCAN_MAX or not _surely_plain(data):
            check_message(value)
        return data

    def _default(self, obj: Any) -> msgpack.ExtType:
        cls = type(obj)
        if cls is tuple:
            return msgpack.ExtType(EXT_TUPLE, self._encode_nested(list(obj)))
        name = wire_name(cls)
        if name is not None:
            if cls.__llmos_local_only__:
                raise MessageError(
                    f"{name} is a local-only message (declared with local_only=True); it "
                    "never leaves its node"
                )
            fields = [getattr(obj, f) for f in cls.__llmos_fields__]
            return msgpack.ExtType(EXT_MESSAGE, self._encode_nested([name, *fields]))
        if isinstance(obj, ActorRef):
            node = obj.node if obj.node is not None else self.local_address
            return msgpack.ExtType(EXT_REF, self._encode_nested([node, obj.name]))
        raise MessageError(
            f"a {cls.__module__}.{cls.__qualname__} cannot be sent: messages are msgpack data, "
            "tuples, actor refs, or classes declared with @llmos.actors.message(...) (a "
            "subclass of a message class needs its own @message)"
        )

    def encode_error(self, error: BaseException) -> bytes:
        """Pack an exception into an error envelope (never raises)."""
        if isinstance(error, RemoteError):
            type_name, args, text = error.type_name, None, error.text
        else:
            type_name = _type_name(type(error))
            args = list(error.args) if all(type(a) in _SIMPLE for a in error.args) else None
            text = str(error)
        trace = ""
        if error.__traceback__ is not None:
            trace = "".join(traceback.format_exception(error))[-_MAX_TRACEBACK:]
        envelope = [type_name, args, text, trace, self.local_address]
        try:
            data: bytes = msgpack.packb(envelope, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            envelope[1] = None
            data = msgpack.packb(envelope, use_bin_type=True)
        return data

    # -- decoding -----------------------------------------------------------------------

    def decode(self, data: Payload) -> Any:
        """Unpack one value, enforcing the limits and ``MAX_DEPTH``.

        ``data`` may be a view of the buffer it arrived in: nothing is copied but the values.

        Raises:
            FrameError: garbage, truncated, over a limit, too deep, or an unknown ext type.
            UnknownMessageType: a message wire name no class is registered under here.
        """
        try:
            # The limits of Limits.unpack_options, spelled out (a ** costs more per call).
            value = msgpack.unpackb(
                data,
                ext_hook=self._hook,
                strict_map_key=False,
                max_array_len=self._max_array,
                max_map_len=self._max_map,
            )
        except (FrameError, MessageError, NotAllowed):
            raise
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            raise FrameError(f"payload is not valid msgpack: {exc}") from exc
        cls = type(value)
        if cls in self._nested:
            if len(data) > _SCAN_MAX or not _surely_plain(data):
                self._check_depth(value, 0)
        elif cls is Timestamp:
            raise FrameError(_NO_TIMESTAMP)
        return value

    def _check_depth(self, value: Any, depth: int) -> None:
        """Reject nesting past MAX_DEPTH and dict keys other than str, int and bytes."""
        if depth > MAX_DEPTH:
            raise FrameError(f"payload nests deeper than {MAX_DEPTH} levels")
        cls = type(value)
        if cls is dict:
            if not _KEY_TYPES.issuperset(map(type, value)):
                raise FrameError("dict keys must be str, int or bytes")
            children: Any = value.values()
        elif cls is list or cls is tuple:
            children = value
        else:
            children = [getattr(value, name) for name in cls.__llmos_fields__]
        kinds = set(map(type, children))
        if Timestamp in kinds:
            raise FrameError(_NO_TIMESTAMP)
        nested = self._nested
        if nested.isdisjoint(kinds):
            return  # the common case: nothing below is a container
        for item in children:
            if type(item) in nested:
                self._check_depth(item, depth + 1)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        tls = self._tls
        level: int = getattr(tls, "ext_depth", 0)
        if level >= MAX_DEPTH:
            raise FrameError(f"payload nests deeper than {MAX_DEPTH} levels")
        tls.ext_depth = level + 1
        try:
            inner = msgpack.unpackb(data, ext_hook=self._ext_hook, **self._options)
        finally:
            tls.ext_depth = level
        if type(inner) is not list:
            raise FrameError(f"ext type {code} must hold an array, got {type(inner).__name__}")
        if code == EXT_TUPLE:
            return tuple(inner)
        if code == EXT_MESSAGE:
            return self._rebuild_message(inner)
        if code == EXT_REF:
            if len(inner) != 2 or type(inner[0]) is not str or type(inner[1]) is not str:
                raise FrameError("an actor ref on the wire must be [node address, name]")
            return self._bind_ref(inner[1], inner[0])
        raise FrameError(f"unknown ext type {code} in payload")

    def _rebuild_message(self, inner: list[Any]) -> Any:
        if not inner or type(inner[0]) is not str:
            raise FrameError("a message on the wire must start with its wire name")
        cls = message_class(inner[0])
        if cls.__llmos_local_only__:
            raise NotAllowed(
                f"message {inner[0]!r} is local-only on this node (internal to it); peers "
                "cannot send it"
            )
        names = cls.__llmos_fields__
        if len(inner) - 1 != len(names):
            raise FrameError(
                f"message {inner[0]!r} arrived with {len(inner) - 1} fields, but here it has "
                f"{len(names)}; run the same message definitions on both nodes"
            )
        try:
            msg = cls(*inner[1:])
        except Exception as exc:
            raise FrameError(f"message {inner[0]!r} rejected its fields: {exc!r}") from exc
        self._nested.add(cls)  # message instances have fields to check for depth
        return msg

    def decode_error(self, data: Payload) -> Exception:
        """Rebuild an exception from an error envelope (a FrameError if the envelope is bad)."""
        try:
            parts = msgpack.unpackb(data, **self._options)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            return FrameError(f"error reply is not valid msgpack: {exc}")
        if (
            type(parts) is not list
            or len(parts) != 5
            or not all(type(p) is str for p in (parts[0], parts[2], parts[3], parts[4]))
            or (parts[1] is not None and type(parts[1]) is not list)
        ):
            return FrameError("error reply does not have the error envelope's shape")
        type_name, args, text, trace, origin = parts
        error: Exception | None = None
        cls = _known_error(type_name)
        if cls is not None:
            try:
                error = cls(*args) if args is not None else cls(text)
            except Exception:
                error = None
        if error is None:
            error = RemoteError(type_name, text)
        note = f"raised on node {origin}"
        if trace:
            note += "; remote traceback:\n" + trace.rstrip()
        error.add_note(note)
        return error


_KEY_TYPES = frozenset({str, int, bytes})
# Past this size a payload is checked by walking the value (its cost grows with the number of
# values in it), not by scanning its bytes (which grows with its size: a large bytes field
# would be scanned for nothing).
_SCAN_MAX = 4096
_NO_TIMESTAMP = (
    "msgpack's Timestamp ext (-1) is not an llmos value; send times as numbers or strings"
)
# fixmap, fixarray, array16/32, map16/32
_CONTAINER_BYTES = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
# ext8/16/32 and fixext headers; nil, false, true, float32, float64
_SUSPECT = bytes([0xC7, 0xC8, 0xC9, *range(0xD4, 0xD9), 0xC0, 0xC2, 0xC3, 0xCA, 0xCB])


def _surely_plain(data: Payload) -> bool:
    """True when packed bytes cannot nest past MAX_DEPTH nor hold a disallowed dict key.

    Each level of nesting needs its own container header byte, so counting the bytes that
    could be one bounds the depth; and a dict key other than str, int or bytes needs an ext,
    nil, bool or float byte somewhere. When this says False, walk the value to know.
    """
    if type(data) is not bytes:
        data = bytes(data)  # a view (at most _SCAN_MAX bytes: larger ones are walked instead)
    if len(data) <= MAX_DEPTH:  # too short to hold more container headers than that
        return len(data.translate(None, _SUSPECT)) == len(data)
    rest = data.translate(None, _CONTAINER_BYTES)
    if len(data) - len(rest) > MAX_DEPTH:
        return False
    return len(rest.translate(None, _SUSPECT)) == len(rest)
