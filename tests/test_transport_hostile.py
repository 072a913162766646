"""Hostile peers against a real ``llmos node`` process over TCP (one test per finding of issue 13).

After every attack the node must be alive, its memory bounded, a well-behaved peer's ask answered
within a second, and SIGINT must still end it with exit code 0 within 15 seconds
(``transport_hostile.TargetNode``).
"""

from __future__ import annotations

import contextlib
import random
import selectors
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from transport_hostile import (
    SPAWNABLE,
    answer_to,
    attacker,
    collect,
    open_fds,
    packb,
    target_node,
    tracebacks,
)
from transport_peer import Add, Record, Sleep
from transport_support import ask_item, hostile_frames, part_ref, with_parts

from llmos.actors import Actor, LlmosError, MessageError, Terminated
from llmos.kernel._pool import ScaleTick
from llmos.transport import (
    Limits,
    Node,
    NodeUnreachable,
    NotAllowed,
    QuotaExceeded,
    SpawnRefused,
    generate_keys,
)
from llmos.transport._codec import EXT_MESSAGE, EXT_REF, EXT_TUPLE
from llmos.transport._frames import DETACH, FAIL, REPLY, TELL, WATCH, pack_frame, parse_frame

pytestmark = pytest.mark.multiprocess


class Child(Add):
    """A subclass of a message class, without its own @message: never sent as its parent."""


class Collector(Actor):
    def __init__(self, box: list[Any], done: threading.Event) -> None:
        super().__init__()
        self.box = box
        self.done = done

    def on_receive(self, message: Any) -> Any:
        self.box.append(message)
        self.done.set()


def node_codec_ref(address: str, name: str) -> bytes:
    """The wire payload of a ref to actor ``name`` on the node at ``address``."""
    return packb(msgpack.ExtType(EXT_REF, packb([address, name])))


def test_the_harness_sees_a_healthy_node_through_hostile_frames() -> None:
    with target_node() as node:
        node.check("start")
        with attacker(node.address) as sock:
            for label, frame, _kind in hostile_frames():
                if isinstance(frame, list):
                    sock.send_multipart(frame)
                else:
                    sock.send(frame)
                node.check(label)
            sock.send(pack_frame([ask_item(1, packb("x"))]))
            assert answer_to(sock, 1)[0] == REPLY
        log = node.finish()
    assert tracebacks(log) == 0, log


# -- findings 2, 4, 5: the capability model ---------------------------------------------


def test_finding_2_a_peer_stops_only_what_it_spawned_and_never_the_kernel() -> None:
    with target_node("--remote-stop", "spawned") as node, Node(heartbeat=1.0) as other:
        kernel = other.ref(f"llmos.kernel@{node.address}")
        with pytest.raises(NotAllowed, match="system actor"):
            kernel.stop(timeout=5)
        assert node.echo is not None
        theirs = other.ref(f"echo@{node.address}")
        with pytest.raises(NotAllowed, match="only actors it spawned"):
            theirs.stop(timeout=5)
        node.check("stops refused")
        assert node.good is not None
        mine = node.good.spawn_remote(node.address, SPAWNABLE, name="mine", timeout=5)
        assert mine.stop(timeout=5) is True  # what a peer spawned, it may stop
        node.check("its own stop")
        node.finish()


def test_finding_2_remote_stop_any_still_spares_system_actors() -> None:
    with target_node("--remote-stop", "any") as node, Node(heartbeat=1.0) as other:
        with pytest.raises(NotAllowed, match="system actor"):
            other.ref(f"llmos.kernel@{node.address}").stop(timeout=5)
        other.spawn_remote(node.address, SPAWNABLE, name="spare", timeout=5)
        assert node.good is not None
        assert node.good.ref(f"spare@{node.address}").stop(timeout=5) is True
        node.check()
        node.finish()


def test_finding_4_internal_messages_are_refused_at_decode() -> None:
    tick = msgpack.ExtType(EXT_MESSAGE, packb(["llmos.kernel.ScaleTick"]))
    with target_node() as node:
        with attacker(node.address) as sock:
            sock.send(
                pack_frame(
                    [[TELL, "llmos.kernel", packb(tick)] for _ in range(200)]
                    + [ask_item(1, packb(tick), target="llmos.kernel"), ask_item(2, packb("ok"))]
                )
            )
            failed = answer_to(sock, 1)
            assert failed[0] == FAIL and msgpack.unpackb(failed[2])[0].endswith("NotAllowed")
            assert answer_to(sock, 2)[0] == REPLY
        with pytest.raises(MessageError, match="local-only"):
            assert node.good is not None
            node.good.ref(f"llmos.kernel@{node.address}").tell(ScaleTick())
        node.check("200 spoofed ScaleTicks")
        log = node.finish()
    assert tracebacks(log) == 0


def test_finding_5_a_wildcard_covers_only_classes_defined_in_its_module() -> None:
    with target_node("--allow-spawn", "transport_peer:*") as node, Node(heartbeat=1.0) as peer:
        for path in (
            "transport_peer:llmos.kernel._kernel.Kernel",
            "transport_peer:llmos.agents.FakeModel",
            "transport_peer:Actor",  # imported there, defined in llmos.actors
            "transport_peer:Node",
            "transport_peer:Echo.__init__",
        ):
            with pytest.raises(SpawnRefused):
                peer.spawn_remote(node.address, path, timeout=5)
        ref = peer.spawn_remote(node.address, "transport_peer:NodeStatsActor", None, timeout=5)
        assert ref is not None  # a class defined in transport_peer is covered
        node.check("spawns outside the wildcard")
        node.finish()


# -- findings 8, 9, 11: each item alone, only llmos's ext codes, typed constructor errors --

_ANY_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**64 - 1,
    1.5,
    "text",
    b"bytes",
    [],
    [1, [2]],
    {},
    {"a": {"b": 1}},
    msgpack.ExtType(5, b"x"),
    msgpack.ExtType(EXT_MESSAGE, b"\xc1"),
    msgpack.Timestamp(1, 0),
]


def _bad_variants(first_rid: int) -> tuple[list[Any], dict[int, Any]]:
    """Ask items with one position replaced by each value above; the rids that can answer."""
    items: list[Any] = []
    with_rid: dict[int, Any] = {}
    rid = first_rid
    for position in range(6):
        for value in _ANY_VALUES:
            rid += 1
            item = ask_item(rid, packb("fine"))
            item[position] = value
            items.append(item)
            if position > 1:
                with_rid[rid] = item
    items += _ANY_VALUES  # an item that is not an array at all
    items += [[value] for value in _ANY_VALUES] + [[value, 1, 2] for value in _ANY_VALUES]
    return items, with_rid


def test_finding_8_each_item_of_a_frame_is_handled_alone() -> None:
    bad, with_rid = _bad_variants(100)
    frame = pack_frame([ask_item(1, packb("before")), *bad, ask_item(2, packb("after"))])
    with target_node() as node:
        before = node.stats()
        with attacker(node.address) as sock:
            sock.send(frame)
            assert answer_to(sock, 1)[2] == packb("before")
            assert answer_to(sock, 2)[2] == packb("after")
            for rid, answer in collect(sock, with_rid).items():
                assert answer[0] in (REPLY, FAIL), with_rid[rid]
            node.check("one frame of bad items")
            for _ in range(5000):  # the op code of the first finding: a list, then a dict
                sock.send(pack_frame([[[1, 2], 1, b""], [{"op": 2}, 2, b""]]))
            sock.send(pack_frame([ask_item(3, packb("last"))]))
            assert answer_to(sock, 3, timeout=30)[0] == REPLY  # the flood was read before it
        node.check("5,000 frames of bad op codes")
        after = node.stats()
        rejected = after["bad_items"] - before["bad_items"]
        answered = after["notices_withheld"] - before["notices_withheld"] + (after["items_out"] > 0)
        assert rejected >= 10_000 and answered >= 1
        log = node.finish()
    assert tracebacks(log) == 0, log[-2000:]
    assert log.count("rejected item") < 20, "logs about one peer are rate-limited"


def test_finding_9_timestamps_and_unregistered_subclasses_never_cross() -> None:
    stamp = msgpack.Timestamp(1, 0)
    payloads = [
        packb(stamp),
        packb([1, stamp]),
        packb({"k": stamp}),
        packb(msgpack.ExtType(EXT_TUPLE, packb([stamp]))),
        packb(msgpack.ExtType(EXT_MESSAGE, packb(["tests.transport.Record", stamp]))),
    ]
    with target_node() as node:
        with attacker(node.address) as sock:
            sock.send(pack_frame([ask_item(rid, p) for rid, p in enumerate(payloads, 1)]))
            for rid in range(1, len(payloads) + 1):
                failed = answer_to(sock, rid)
                assert failed[0] == FAIL, rid
                assert "Timestamp" in msgpack.unpackb(failed[2])[2]
        assert node.echo is not None and node.good is not None
        with pytest.raises(MessageError, match="needs its own @message"):
            node.echo.tell(Child(1, 2))
        with pytest.raises(MessageError):
            node.echo.ask([Child(1, 2)], timeout=1)
        node.check("Timestamps and an unregistered subclass")
        node.finish()


def test_finding_11_a_constructor_raising_any_base_exception_fails_the_spawn_at_once() -> None:
    with target_node("--allow-spawn", "transport_peer:Exiting") as node:
        assert node.good is not None
        for kind in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
            started = time.monotonic()
            with pytest.raises(LlmosError, match=kind):
                node.good.spawn_remote(node.address, "transport_peer:Exiting", kind, timeout=30)
            assert time.monotonic() - started < 5
            node.check(f"a constructor raising {kind}")
        node.finish()


# -- finding 10: a request whose asker gave up is never started later --------------------


def test_finding_10_requests_given_up_during_a_freeze_are_not_run_after_it() -> None:
    with target_node() as node:
        assert node.echo is not None and node.good is not None
        assert node.echo.ask(Record("warm"), timeout=5).get() == 1
        node.signal(signal.SIGSTOP)
        try:
            asks = [node.echo.ask(Record(i), timeout=60) for i in range(20)]
            for reply in asks:
                with pytest.raises(NodeUnreachable):
                    reply.get()
        finally:
            node.signal(signal.SIGCONT)
        node.good.connect(node.address, timeout=10)
        node.check("a freeze")
        assert node.echo.ask("records", timeout=5).get() == ["warm"]
        assert node.stats()["expired_requests"] >= 1
        node.finish()


def test_finding_10_requests_queued_before_a_freeze_are_not_started_after_it() -> None:
    """The asks were read and queued behind a slow one before the node froze: the actor takes
    them off its mailbox after the freeze, when their asker has reported them failed."""
    with target_node() as node:
        assert node.echo is not None and node.good is not None
        assert node.echo.ask(Record("warm"), timeout=5).get() == 1
        slow = node.echo.ask(Sleep(4.0), timeout=60)  # still sleeping when the node freezes
        asks = [node.echo.ask(Record(i), timeout=60) for i in range(20)]
        # Answered by the node once it has read every frame sent before (one connection).
        before = node.stats()["expired_requests"]
        node.signal(signal.SIGSTOP)
        try:
            for reply in [slow, *asks]:
                with pytest.raises(NodeUnreachable):
                    reply.get()
        finally:
            node.signal(signal.SIGCONT)
        node.good.connect(node.address, timeout=10)
        # Answered once the Sleep has ended and the 20 asks were taken off the mailbox.
        assert node.echo.ask("records", timeout=10).get() == ["warm"]
        # All were read before the freeze, so the actor refused them, unstarted (not the door).
        assert node.stats()["expired_requests"] == before + 20
        node.check("a freeze")
        node.finish()


# -- findings 1, 7: no abort on flood-then-disconnect; stalled connections closed --------


def test_finding_1_a_flood_then_a_disconnect_never_kills_the_node() -> None:
    flood = pack_frame([ask_item(i, packb(i), target="missing") for i in range(1024)])
    with target_node() as node:
        for round_ in range(20):
            with attacker(node.address, sndhwm=1000, sndtimeo=0) as sock:
                for _ in range(200):
                    try:
                        sock.send(flood, zmq.NOBLOCK)
                    except zmq.Again:
                        break  # as much as the node would take: now vanish
            node.check(f"flood and disconnect {round_ + 1}")
        log = node.finish()
    assert tracebacks(log) == 0


@pytest.mark.parametrize("keyed", [False, True])
def test_finding_7_stalled_connections_are_closed_and_new_peers_served(
    keyed: bool, tmp_path: Path
) -> None:
    args: list[str] = []
    keys = generate_keys(tmp_path / "client") if keyed else None
    server = generate_keys(tmp_path / "server") if keyed else None
    if keys is not None:
        # "=": a Z85 key may start with "-", which argparse would take for an option
        args = ["--keys", str(tmp_path / "server"), f"--allow-key={keys.public.decode()}"]
    with target_node(
        *args, fd_limit=1024, keys=keys, server_key=server.public if server else None
    ) as node:
        port = int(node.address.rsplit(":", 1)[1])
        held: list[socket.socket] = []
        try:
            with selectors.DefaultSelector() as sel:
                for _ in range(1100):
                    conn = socket.socket()
                    conn.setblocking(False)
                    conn.connect_ex(("127.0.0.1", port))
                    held.append(conn)
                    sel.register(conn, selectors.EVENT_WRITE)
                deadline = time.monotonic() + 10
                waiting = len(held)
                while waiting and time.monotonic() < deadline:
                    for key, _ in sel.select(0.5):
                        with contextlib.suppress(OSError):
                            key.fileobj.send(b"\x01\x00")  # type: ignore[union-attr]
                        sel.unregister(key.fileobj)  # a ZMTP/1.0-looking greeting, then nothing
                        waiting -= 1
            settle = time.monotonic() + 5  # until the node has taken what it will take
            while time.monotonic() < settle and open_fds(node.pid) < 1000:
                time.sleep(0.1)
            with Node(heartbeat=1.0, **node.client_options()) as fresh:
                ref = fresh.ref(f"echo@{node.address}")
                assert ref.ask(Add(1, 2), timeout=15).get() == 3
            node.check("1,100 stalled connections held open")
        finally:
            for conn in held:
                conn.close()
        node.finish()


# -- findings 3, 6: refs never make the node connect past its budget; per-peer quotas ------


def test_finding_3_refs_in_messages_never_open_connections_past_the_budget() -> None:
    with target_node("--max-peers", "32") as node:
        assert node.echo is not None and node.good is not None
        box: list[Any] = []
        done = threading.Event()
        watcher = Collector.start(box, done, name="finding-3-watcher")
        try:
            node.echo.watch(watcher)  # a legitimate watch, before the attack
            assert node.echo.ask("sync", timeout=5).get() == "sync"
            fds = open_fds(node.pid)
            with attacker(node.address) as sock:
                watches = [
                    [WATCH, "ghost", node_codec_ref(f"tcp://127.0.0.2:{20000 + i}", "w")]
                    for i in range(600)
                ]
                for start in range(0, 600, 100):
                    sock.send(pack_frame(watches[start : start + 100]))
                sock.send(pack_frame([ask_item(1, packb("after"))]))
                assert answer_to(sock, 1, timeout=30)[0] == REPLY
            node.check("600 watcher refs to addresses of the attacker's choice")
            grown = open_fds(node.pid) - fds
            assert grown < 32 * 6, f"the node opened {grown} descriptors"
            assert node.echo.stop(timeout=5) is True
            assert done.wait(10), "the legitimate watcher never got its Terminated"
            assert isinstance(box[0], Terminated)
            assert node.stats()["peers_evicted"] > 0
        finally:
            watcher.stop()
        node.echo = None
        node.finish()


def test_finding_6_a_peer_that_never_reads_cannot_grow_the_node() -> None:
    with target_node("--max-spawned", "20", "--max-pending", "50") as node:
        assert node.good is not None
        with attacker(node.address, rcvhwm=1, rcvbuf=4096) as sock:
            bad = pack_frame([[99, i, b""] for i in range(1024)])
            for _ in range(300):  # 307,200 bad items, one NOTICE each if nothing bounded them
                sock.send(bad)
            node.check("a flood of bad items from a peer that never reads")
            deadline = time.monotonic() + 30
            while node.stats()["bad_items"] < 300 * 1024:  # all read (one connection)
                assert time.monotonic() < deadline, node.stats()
                time.sleep(0.2)
            node.check("the same, once the flood was read")
        stats = node.stats()
        assert stats["notices_withheld"] > 300 * 1024 - 200
        with Node(heartbeat=1.0) as greedy:
            refused = 0
            for i in range(30):
                try:
                    greedy.spawn_remote(node.address, SPAWNABLE, name=f"greedy-{i}", timeout=5)
                except QuotaExceeded:
                    refused += 1
            assert refused == 10
            sleeper = greedy.ref(f"greedy-0@{node.address}")
            asks = [sleeper.ask(Sleep(0.02), timeout=30) for _ in range(80)]
            outcomes = []
            for reply in asks:
                try:
                    outcomes.append(reply.get())
                except QuotaExceeded:
                    outcomes.append("refused")
            assert outcomes.count("refused") >= 20 and outcomes.count("slept") >= 40
            node.check("spawn and pending-ask quotas")
            assert node.stats()["quota_refusals"] >= 30
        log = node.finish()
    assert tracebacks(log) == 0
    assert log.count("rejected item") < 20


# -- the fuzz test: mutated frames from one peer ------------------------------------------


def _seed_frames() -> list[list[Any]]:
    """Valid item lists of every kind a peer may send."""
    add = packb(msgpack.ExtType(EXT_MESSAGE, packb(["tests.transport.Add", 1, 2])))
    spec = packb([msgpack.ExtType(EXT_TUPLE, packb([])), {}, None])
    me = node_codec_ref("tcp://127.0.0.2:9", "me")
    return [
        [ask_item(1, packb("x"))],
        [ask_item(2, add), [TELL, "echo", packb([1, {"a": b"b"}])]],
        [[TELL, "echo", add]] * 3,
        [[5, 0, b""]],  # PING
        [[WATCH, "echo", me], [8, "echo", me]],  # WATCH, UNWATCH
        [[10, 3, 5.0, time.time() + 60, "echo", b"\xc0", time.time() + 60]],  # LOOKUP
        [[12, 4, 5.0, time.time() + 60, "echo", b"\xc0", time.time() + 60]],  # STATS
        [[11, 5, 5.0, time.time() + 60, "echo", b"\xc0", time.time() + 60]],  # STOP
        [[9, 6, 5.0, time.time() + 60, SPAWNABLE, spec, time.time() + 60]],  # SPAWN
        # Frames of kind 2: payloads of DETACH bytes or more follow as parts.
        [[TELL, "echo", packb([b"p" * DETACH])], ask_item(7, packb({"data": b"q" * 70_000}))],
        [ask_item(8, packb(b"r" * DETACH)), [TELL, "echo", packb("small")]],
    ]


def _message(items: list[Any]) -> bytes | list[bytes]:
    """Items as one message: every bytes field of DETACH bytes or more, wherever it sits, is
    sent as a part of its own (a frame of kind 2), or the items as one frame when none is."""
    parts: list[bytes] = []
    body = []
    for item in items:
        if type(item) is list:
            item = list(item)
            for at, field in enumerate(item):
                if type(field) is bytes and len(field) >= DETACH:
                    item[at] = part_ref(len(field))
                    parts.append(field)
        body.append(item)
    return [with_parts(body), *parts] if parts else pack_frame(items)


def _damage(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        choice = rng.random()
        at = rng.randrange(len(buf))
        if choice < 0.4:
            buf[at] ^= 1 << rng.randrange(8)
        elif choice < 0.6:
            buf[at] = rng.randrange(256)
        elif choice < 0.75:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice < 0.9:
            del buf[at : at + rng.randint(1, 8)]
        else:
            buf = buf[: max(8, at)]
    return bytes(buf)


def _mutate(rng: random.Random, items: list[Any]) -> bytes | list[bytes]:
    """One mutated message: byte-level damage to its frame or to one of its parts, parts
    dropped, repeated or added, or a random value put somewhere in an item."""
    if rng.random() < 0.5:
        message = _message(items)
        if isinstance(message, bytes):
            return _damage(rng, message)
        at = rng.randrange(len(message))
        choice = rng.random()
        if choice < 0.6:
            message[at] = _damage(rng, message[at])
        elif choice < 0.7 and at:
            del message[at]
        elif choice < 0.8:
            message.insert(at + 1, message[at])
        elif choice < 0.9:
            message.append(rng.randbytes(rng.choice([8, DETACH, 2 * DETACH])))
        else:
            message[at] = message[at][: rng.randrange(len(message[at]))]
        return message
    mutated = [list(item) for item in items]
    item = rng.choice(mutated)
    value = rng.choice([*_ANY_VALUES, packb(rng.choice(_ANY_VALUES)), rng.randbytes(8)])
    if rng.random() < 0.7:
        item[rng.randrange(len(item))] = value
    else:
        item.append(value)
    return _message(mutated)


def test_fuzz_20000_mutated_frames_from_one_peer() -> None:
    rng = random.Random(13)
    seeds = _seed_frames()
    frames = [_mutate(rng, rng.choice(seeds)) for _ in range(20_000)]
    parsed = 0
    for frame in frames:
        with contextlib.suppress(LlmosError):
            if isinstance(frame, list):
                parsed += len(parse_frame(frame[0], Limits(), frame[1:]))
            else:
                parsed += len(parse_frame(frame, Limits()))
    with target_node("--max-spawned", "8") as node:
        before = node.stats()
        with attacker(node.address, rcvhwm=100_000) as sock:
            for frame in frames:
                if isinstance(frame, list):
                    sock.send_multipart(frame)
                else:
                    sock.send(frame)
                while sock.poll(0):
                    sock.recv()  # a peer that reads what it is sent
            sock.send(pack_frame([ask_item(999_999, packb("last"))]))
            assert answer_to(sock, 999_999, timeout=60)[0] == REPLY
        node.check("20,000 mutated frames")
        after = node.stats()
        seen = (after["frames_in"] + after["bad_frames"]) - (
            before["frames_in"] + before["bad_frames"]
        )
        assert seen >= len(frames) + 1, "every frame was read and counted"
        assert after["items_in"] - before["items_in"] >= parsed + 1, "every item was counted"
        log = node.finish()
    assert tracebacks(log) == 0, log[-3000:]
