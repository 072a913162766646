"""The codec and the frame format, without sockets."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest

import llmos.transport as transport
from llmos.actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    AskTimeout,
    LlmosError,
    LocalRef,
    MessageError,
    NameTaken,
    UnknownMessageType,
    message,
)
from llmos.actors.lowlevel import MAX_DEPTH
from llmos.transport import (
    Codec,
    FrameError,
    Limits,
    PeerBusy,
    RemoteError,
    SpawnRefused,
    register_error,
)
from llmos.transport._codec import EXT_MESSAGE, EXT_REF, EXT_TUPLE
from llmos.transport._frames import (
    ASK,
    DETACH,
    GATHER,
    HEADER_SIZE,
    PART,
    REPLY,
    TELL,
    VERSION,
    pack_frame,
    pack_message,
    parse_frame,
)
from llmos.transport._security import ZapHandler, is_local_endpoint, load_public_keys

HERE = "tcp://127.0.0.1:1111"
THERE = "tcp://127.0.0.1:2222"


@message("tests.codec.Point")
class Point:
    x: int
    y: Any = None


class Idle(Actor):
    pass


class FakeRef(ActorRef):
    """A stand-in remote ref: what the codec's bind_ref builds for another node."""

    def tell(self, message: Any) -> None: ...
    def ask(self, message: Any, timeout: float | None = None) -> Any: ...
    async def ask_async(self, message: Any, timeout: float | None = None) -> Any: ...
    def is_alive(self) -> bool:
        return True

    def stop(self, timeout: float | None = None) -> bool:
        return True

    def statistics(self) -> Any: ...


def bind(name: str, node: str) -> ActorRef:
    if node == HERE:
        from llmos.actors import get

        return get(name)
    return FakeRef(name, node)


@pytest.fixture
def codec() -> Codec:
    return Codec(HERE, bind, Limits())


def test_public_names() -> None:
    public = {n for n in dir(transport) if not n.startswith("_")}
    assert set(transport.__all__) == public


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        -(2**63),
        2**64 - 1,
        1.5,
        "héllo",
        b"\x00\xff",
        [1, [2, [3]]],
        (1, (2, 3), [4, (5,)]),
        {"a": (1, 2), 3: [b"x"], b"k": {"n": None}},
        Point(1, (2, [3])),
        [Point(1), {"p": Point(2, Point(3))}],
        (),
        [],
    ],
)
def test_round_trip_keeps_types(codec: Codec, value: Any) -> None:
    back = codec.decode(codec.encode(value))
    assert back == value
    assert _shape(back) == _shape(value)


def _shape(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return (type(value), [_shape(v) for v in value])
    if isinstance(value, dict):
        return (dict, {k: _shape(v) for k, v in value.items()})
    return type(value)


def test_refs_travel_by_node_and_name(codec: Codec) -> None:
    local = Idle.start(name="codec-local")
    data = codec.encode([local, FakeRef("far", THERE)])
    assert msgpack.unpackb(data, ext_hook=lambda c, d: (c, msgpack.unpackb(d)))[0] == (
        EXT_REF,
        [HERE, "codec-local"],
    )
    mine, far = codec.decode(data)
    assert isinstance(mine, LocalRef) and mine == local
    assert isinstance(far, FakeRef) and (far.name, far.node) == ("far", THERE)


def _nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2, {"c": b"x"}]},
        [1, "é" * 50, {"ü": ["ö"] * 40}],  # non-ASCII bytes look like containers: walked
        _nest(MAX_DEPTH),
        _nest(MAX_DEPTH + 1),
        _nest(MAX_DEPTH + 2),
        {1.5: 1},
        {True: 1},
        {None: 1},
        {(1, 2): 1},
        {"a": object()},
        [2**64],
        [-(2**63) - 1],
        [2**64 - 1, -(2**63), 1.5, None, True],
        {"p": Point(1, [2])},
    ],
)
def test_encode_checked_accepts_exactly_what_check_message_accepts(
    codec: Codec, value: Any
) -> None:
    from llmos.actors.lowlevel import check_message

    try:
        check_message(value)
    except MessageError:
        with pytest.raises(MessageError):
            codec.encode_checked(value)
    else:
        assert codec.decode(codec.encode_checked(value)) == value


def test_unencodable_value_is_a_message_error(codec: Codec) -> None:
    with pytest.raises(MessageError, match="cannot be sent"):
        codec.encode({"x": object()})


def ext(code: int, inner: Any) -> bytes:
    data: bytes = msgpack.packb(msgpack.ExtType(code, msgpack.packb(inner)))
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xc1", "not valid msgpack"),
        (b"\x92\x01", "not valid msgpack"),  # truncated array
        (b"\xc6\x06\x40\x00\x00abc", "not valid msgpack"),  # bin32 declaring 100 MB
        (b"\x91" * (MAX_DEPTH + 2) + b"\xc0", "deeper"),
        (b"\x91" * 5000 + b"\xc0", "not valid msgpack"),  # past msgpack's own stack
        (ext(99, [1]), "unknown ext type 99"),
        (ext(EXT_TUPLE, 5), "must hold an array"),
        (ext(EXT_REF, ["only-node"]), "must be"),
        (ext(EXT_MESSAGE, ["tests.codec.Point", 1, 2, 3]), "fields"),
        (msgpack.packb({1.5: 1}), "dict key"),
        (msgpack.packb({msgpack.ExtType(EXT_TUPLE, b"\x91\x01"): 1}), "dict key"),
        (msgpack.packb({True: 1}), "dict key"),
    ],
)
def test_bad_payloads_are_frame_errors(codec: Codec, data: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        codec.decode(data)


def test_unknown_message_type(codec: Codec) -> None:
    with pytest.raises(UnknownMessageType):
        codec.decode(ext(EXT_MESSAGE, ["no.such.Type", 1]))


def test_nested_exts_are_bounded(codec: Codec) -> None:
    data = msgpack.packb(None)
    for _ in range(MAX_DEPTH + 5):
        data = msgpack.packb(msgpack.ExtType(EXT_TUPLE, msgpack.packb([msgpack.unpackb(data)])))
    nested: Any = None
    for _ in range(MAX_DEPTH + 5):
        nested = (nested,)
    with pytest.raises((FrameError, MessageError)):
        codec.decode(codec.encode(nested))


def test_array_and_map_lengths_are_capped() -> None:
    small = Codec(HERE, bind, Limits(max_array=10, max_map=10))
    with pytest.raises(FrameError):
        small.decode(msgpack.packb([None] * 11))
    with pytest.raises(FrameError):
        small.decode(msgpack.packb({str(i): i for i in range(11)}))
    assert small.decode(msgpack.packb([None] * 10)) == [None] * 10


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        KeyError("missing"),
        ActorDeadError("dead"),
        AskTimeout("slow"),
        NameTaken("taken"),
        SpawnRefused("not allowed"),
        PeerBusy("full"),
    ],
)
def test_known_errors_come_back_as_themselves(codec: Codec, error: Exception) -> None:
    back = codec.decode_error(codec.encode_error(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert any("raised on node" in note for note in back.__notes__)


def test_unknown_errors_become_remote_errors(codec: Codec) -> None:
    class Weird(Exception):
        pass

    back = codec.decode_error(codec.encode_error(Weird("odd")))
    assert isinstance(back, RemoteError)
    assert back.type_name.endswith("Weird") and back.text == "odd"
    again = codec.decode_error(codec.encode_error(back))  # forwarded unchanged
    assert isinstance(again, RemoteError) and again.type_name == back.type_name


def test_registered_errors_cross(codec: Codec) -> None:
    @register_error
    class Custom(Exception):
        pass

    back = codec.decode_error(codec.encode_error(Custom("mine")))
    assert type(back) is Custom
    with pytest.raises(LlmosError):
        register_error(int)  # type: ignore[type-var]


def test_base_exceptions_do_not_cross_as_themselves(codec: Codec) -> None:
    back = codec.decode_error(codec.encode_error(KeyboardInterrupt("stop")))
    assert isinstance(back, RemoteError)
    assert isinstance(codec.decode_error(b"\xc1"), FrameError)
    assert isinstance(codec.decode_error(msgpack.packb([1, 2])), FrameError)


# -- frames ----------------------------------------------------------------------------


def test_frame_round_trip() -> None:
    items = [[ASK, 7, 1.0, 2.0, "echo", b"\x01"]]
    assert parse_frame(pack_frame(items), Limits()) == items


def header(version: int = VERSION, kind: int = 1, length: int = 0, magic: bytes = b"LM") -> bytes:
    return struct.pack(">2sBBI", magic, version, kind, length)


def test_an_ext_at_the_item_level_spoils_only_its_item() -> None:
    items = parse_frame(header(length=5) + b"\x92\xd4\x63\x00\x01", Limits())
    assert items == [msgpack.ExtType(0x63, b""), 1]


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"", "shorter"),
        (b"LM\x01", "shorter"),
        (header(magic=b"XX") + b"\x90", "magic"),
        (header(version=9, length=1) + b"\x90", "version 9"),
        (header(kind=7, length=1) + b"\x90", "unknown frame kind"),
        (header(length=100 * 1024 * 1024) + b"\x90", "over the limit"),
        (header(length=10) + b"\x90", "truncated"),
        (header(length=1) + b"\xc1", "not valid msgpack"),
        (header(length=1) + b"\x05", "array of items"),
    ],
)
def test_bad_frames(frame: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        parse_frame(frame, Limits())


def test_limits_are_validated() -> None:
    with pytest.raises(LlmosError):
        Limits(max_frame=10)
    with pytest.raises(LlmosError):
        Limits(max_array=0)
    assert HEADER_SIZE == 8


# -- security helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("tcp://127.0.0.1:0", True),
        ("tcp://127.5.5.5:80", True),
        ("tcp://localhost:1", True),
        ("tcp://[::1]:1", True),
        ("ipc:///tmp/x", True),
        ("inproc://x", True),
        ("tcp://0.0.0.0:0", False),
        ("tcp://*:0", False),
        ("tcp://10.0.0.1:1", False),
        ("tcp://eth0:1", False),
    ],
)
def test_loopback_policy(address: str, local: bool) -> None:
    assert is_local_endpoint(address) is local


def test_zap_decisions() -> None:
    import zmq

    good_public, _ = zmq.curve_keypair()
    bad_public, _ = zmq.curve_keypair()
    zap = ZapHandler({good_public})

    def request(key: bytes, mechanism: bytes = b"CURVE", domain: bytes = b"llmos") -> bytes:
        raw = zmq.utils.z85.decode(key)
        frames = [b"1.0", b"1", domain, b"127.0.0.1", b"", mechanism, raw]
        return zap.handle(frames)[2]

    assert request(good_public) == b"200"
    assert request(bad_public) == b"400"
    assert request(good_public, mechanism=b"NULL") == b"400"
    assert request(good_public, domain=b"other") == b"400"
    assert zap.handle([b"1.0"])[2] == b"400"
    assert (zap.accepted, zap.refused) == (1, 4)
    with pytest.raises(LlmosError):
        load_public_keys(["not-a-key-and-not-a-file"])


@pytest.mark.parametrize("size", [0, 255, 256, 16 * 1024, 65_535, 65_536, 3 * 1024 * 1024])
def test_frames_with_large_payloads_parse_back(size: int) -> None:
    """A frame of kind 1 is byte for byte what packing the whole list gives."""
    big = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    items: list[Any] = [[2, "small", b"s"], [ASK, 7, 1.5, 2.5, "echo", big], [2, "t", big], [9]]
    frame = pack_frame(items)
    body: bytes = msgpack.packb(items, use_bin_type=True)
    assert frame[HEADER_SIZE:] == body
    assert parse_frame(frame, Limits(max_frame=8 * 1024 * 1024)) == items


def received(parts: list[Any]) -> list[memoryview]:
    return [memoryview(part) for part in parts[1:]]


def test_small_payloads_stay_in_one_frame() -> None:
    items: list[Any] = [[TELL, "a", b"x" * (DETACH - 1)], [ASK, 1, 1.0, 2.0, "b", b"y", 3.0]]
    assert pack_message(items) == [pack_frame(items)]


def test_large_payloads_follow_as_parts_not_copied() -> None:
    """Payloads of DETACH bytes or more leave the frame: smaller ones next to each other are
    joined into one part, one of GATHER bytes or more is a part as it is."""
    mid1, mid2, mid3 = (bytes([n]) * (DETACH + n) for n in range(3))
    huge = b"h" * GATHER
    items: list[Any] = [
        [TELL, "a", b"small"],
        [TELL, "a", mid1],
        [TELL, "a", mid2, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"],
        [ASK, 1, 1.0, 2.0, "b", huge, 3.0],
        [REPLY, 2, mid3],
    ]
    parts = pack_message(items)
    assert len(parts) == 4
    assert parts[1] == mid1 + mid2
    assert parts[2] is huge  # sent from where it lies
    assert parts[3] is mid3
    assert items[3][5] is huge  # the caller's items are left as they were
    back = parse_frame(parts[0], Limits(), received(parts))
    assert back == items
    assert type(back[1][2]) is memoryview and back[1][2].obj is not None  # a view, not a copy


def test_parts_are_counted_within_the_frame_limit() -> None:
    parts = pack_message([[TELL, "a", b"x" * (600 * 1024)], [TELL, "a", b"y" * (500 * 1024)]])
    assert len(parse_frame(parts[0], Limits(max_frame=1200 * 1024), received(parts))) == 2
    with pytest.raises(FrameError, match="over the limit"):
        parse_frame(parts[0], Limits(max_frame=1024 * 1024), received(parts))
    many = pack_message([[TELL, "a", b"x" * GATHER] for _ in range(3)])
    with pytest.raises(FrameError, match="max_items"):
        parse_frame(many[0], Limits(max_items=2), received(many))


def with_parts(items: list[Any]) -> bytes:
    body: bytes = msgpack.packb(items, use_bin_type=True)
    return header(kind=2, length=len(body)) + body


def ref(size: int, data: bytes | None = None) -> msgpack.ExtType:
    return msgpack.ExtType(PART, struct.pack(">I", size) if data is None else data)


BIG = DETACH + 10


@pytest.mark.parametrize(
    ("frame", "parts", "match"),
    [
        (pack_frame([[TELL, "a", b""]]), [b"p" * BIG], "carries none"),
        (with_parts([[TELL, "a", ref(BIG)]]), [], "without the parts"),
        (with_parts([[TELL, "a", ref(BIG)]] * 2), [b"p" * BIG], "more than the 1 parts"),
        (with_parts([[TELL, "a", ref(BIG)]]), [b"p" * BIG] * 2, "exactly all"),
        (with_parts([[TELL, "a", ref(BIG)]]), [b"p" * (BIG + 1)], "exactly all"),
        (with_parts([[TELL, "a", ref(BIG + 1)]]), [b"p" * BIG], "runs past the end"),
        (with_parts([[TELL, "a", ref(10)]]), [b"p" * 10], "under"),
        (with_parts([[TELL, "a", ref(10)]]), [b"p" * BIG], "travels in the frame"),
        (with_parts([[TELL, "a", ref(0, b"\x00\x00")]]), [b"p" * BIG], "4-byte length"),
    ],
)
def test_bad_parts_spoil_the_whole_frame(frame: bytes, parts: list[bytes], match: str) -> None:
    with pytest.raises(FrameError, match=match):
        parse_frame(frame, Limits(), parts)


def test_a_part_anywhere_but_a_payload_spoils_only_its_item() -> None:
    frame = with_parts([[TELL, ref(BIG), b""], ref(BIG), {ref(BIG): 1}])
    items = parse_frame(frame, Limits(), [b"p" * BIG * 3])
    assert [type(items[0][1]), type(items[1]), type(next(iter(items[2])))] == [memoryview] * 3


def test_a_view_payload_decodes_like_bytes() -> None:
    codec = Codec("tcp://127.0.0.1:1", lambda name, node: None, Limits())  # type: ignore[arg-type,return-value]
    for value in ("x", [1, {"k": b"v"}], {"data": b"x" * 10_000}):
        data = codec.encode(value)
        assert codec.decode(memoryview(data)) == value
    with pytest.raises(FrameError):
        codec.decode(memoryview(b"\x91" * 100 + b"\xc0"))


def test_a_large_payload_is_checked_by_walking_it() -> None:
    """Past the scan size a payload's depth and keys are still checked, by walking the value."""
    codec = Codec("tcp://127.0.0.1:1", lambda name, node: None, Limits())  # type: ignore[arg-type,return-value]
    deep: Any = b"x" * 10_000
    for _ in range(40):
        deep = [deep]
    with pytest.raises(MessageError):
        codec.encode_checked({"deep": deep})
    with pytest.raises(FrameError):
        codec.decode(msgpack.packb({"deep": deep}, use_bin_type=True))
    blob = {"data": b"y" * 1_000_000, "n": 1}
    assert codec.decode(codec.encode_checked(blob)) == blob
