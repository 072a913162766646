"""Two nodes in one process, over tcp://, ipc:// and inproc:// (the same tests on each)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq
from observe_support import wait_for
from transport_peer import Add, CallBack, Echo, Record, Sleep, TellBack
from transport_support import (
    OneWayProxy,
    ask_item,
    endpoint,
    hostile_frames,
    raw_dealer,
    short_tmpdir,
)

from llmos.actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    AskAbandoned,
    AskTimeout,
    MailboxFull,
    Reply,
    Terminated,
    UnknownMessageType,
    find,
)
from llmos.transport import (
    AuthError,
    FrameError,
    KeyPair,
    Limits,
    Node,
    NodeUnreachable,
    NotAllowed,
    PeerBusy,
    QuotaExceeded,
    Quotas,
    RemoteRef,
    RequestExpired,
    SpawnRefused,
    TransportError,
)
from llmos.transport._capabilities import Account
from llmos.transport._frames import ASK, FAIL, NOTICE, REPLY, pack_frame, parse_frame
from llmos.transport._io import Pulse

SCHEMES = ["tcp", "ipc", "inproc"]


class Gate(Actor):
    """Holds every message until the test opens the gate."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        self.gate.wait(10)
        return message


class Collector(Actor):
    """Keeps what it is told; answers asks with the value doubled."""

    def __init__(self, box: list[Any], done: threading.Event, expected: int = 1) -> None:
        super().__init__()
        self.box = box
        self.done = done
        self.expected = expected

    def on_receive(self, message: Any) -> Any:
        self.box.append(message)
        if len(self.box) >= self.expected:
            self.done.set()
        if isinstance(message, int):
            return message * 2
        return None


@pytest.fixture(params=SCHEMES)
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(scheme: str) -> Iterator[tuple[Node, Node]]:
    """Node ``a`` (the asker) and node ``b`` (serving ``echo``), closed after the test."""
    with short_tmpdir() as folder:
        a = Node(endpoint(scheme, folder), name="a", heartbeat=1.0)
        try:
            b = Node(
                endpoint(scheme, folder),
                name="b",
                heartbeat=1.0,
                allow_spawn=[
                    "transport_peer:Echo",
                ],
            )
            try:
                Echo.start(name="echo")
                yield a, b
            finally:
                b.close()
        finally:
            a.close()


def test_ask_tell_and_ask_async(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    assert isinstance(echo, RemoteRef) and echo.node == b.address
    assert echo.ask(Add(2, 3), timeout=5).get() == 5
    assert echo.ask((1, [2, (3,)]), timeout=5).get() == (1, [2, (3,)])
    for i in range(100):
        echo.tell(Record(i))
    assert echo.ask("records", timeout=5).get() == list(range(100))  # order kept

    async def go() -> Any:
        return await asyncio.gather(*(echo.ask_async(Add(i, i), timeout=5) for i in range(20)))

    assert asyncio.run(go()) == [2 * i for i in range(20)]
    assert b.statistics().items_in >= 122


def test_a_burst_of_tells_to_several_actors_reaches_each_in_order(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    Echo.start(name="echo2")
    echo, echo2 = a.ref(f"echo@{b.address}"), a.ref(f"echo2@{b.address}")
    nobody = a.ref(f"nobody@{b.address}")
    for i in range(300):  # interleaved, so each frame names all three
        echo.tell(Record(i))
        echo2.tell(Record(-i))
        nobody.tell(Record(i))
    assert echo.ask("records", timeout=10).get() == list(range(300))
    assert echo2.ask("records", timeout=10).get() == [-i for i in range(300)]
    assert b.statistics().undelivered_tells == 300  # each one recorded as a dead letter


def test_refs_in_messages_are_usable_for_replies(pair: tuple[Node, Node]) -> None:
    a, b = pair
    box: list[Any] = []
    done = threading.Event()
    collector = Collector.start(box, done, name="collector")
    echo = a.ref(f"echo@{b.address}")
    assert echo.ask(TellBack(collector, "hi"), timeout=5).get() == "told"
    assert done.wait(5) and box == ["hi"]
    # The remote actor calls back the local one with an ask, through the ref it was given.
    assert echo.ask(CallBack(collector, 21), timeout=5).get() == 42
    # A ref that comes back to its own node is the local ref again.
    assert echo.ask(collector, timeout=5).get() is collector


def test_remote_errors_arrive_typed(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    with pytest.raises(ValueError, match="boom on purpose") as info:
        echo.ask("boom", timeout=5).get()
    assert any(b.address in note for note in info.value.__notes__)
    with pytest.raises(ActorDeadError, match="no actor named 'ghost'"):
        a.ref(f"ghost@{b.address}").ask("x", timeout=5).get()
    assert echo.ask("still fine", timeout=5).get() == "still fine"


def test_timeout_then_late_reply_is_counted(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    started = time.monotonic()
    with pytest.raises(AskTimeout):
        echo.ask(Sleep(0.3), timeout=0.05).get()
    assert time.monotonic() - started < 0.3
    assert echo.ask("after", timeout=5).get() == "after"  # queued behind the slow one
    assert b.statistics().expired_requests == 1  # the answer was too late to be worth sending


def test_a_reply_after_the_timeout_is_dropped_and_counted() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    fake = ctx.socket(zmq.ROUTER)  # a peer that answers when the test says so
    fake.linger = 0
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Node(heartbeat=5) as a:
            ref = a.ref(f"x@tcp://127.0.0.1:{port}")
            reply = ref.ask("first", timeout=0.2)
            asks: list[list[Any]] = []
            while len(asks) < 1:
                ident, frame = fake.recv_multipart()
                asks += [item for item in parse_frame(frame, a.limits) if item[0] == ASK]
            with pytest.raises(AskTimeout):
                reply.get()
            second = ref.ask("second", timeout=5)
            while len(asks) < 2:
                ident, frame = fake.recv_multipart()
                asks += [item for item in parse_frame(frame, a.limits) if item[0] == ASK]
            answers = [[REPLY, item[1], msgpack.packb(item[1])] for item in asks]
            fake.send_multipart([ident, pack_frame(answers)])  # the late one, then the other
            assert second.get() == asks[1][1]
            assert a.statistics().late_replies == 1
    finally:
        fake.close(0)


def test_lookup_statistics_stop_and_watch(pair: tuple[Node, Node]) -> None:
    a, b = pair
    found = a.lookup(f"echo@{b.address}", timeout=5)
    assert found == a.ref(f"echo@{b.address}")
    with pytest.raises(ActorDeadError):
        a.lookup("ghost", b.address, timeout=5)
    assert found.is_alive()
    assert found.statistics().name == "echo"
    box: list[Any] = []
    done = threading.Event()
    watcher = Collector.start(box, done, name="watcher")
    found.watch(watcher)  # type: ignore[attr-defined]
    assert found.ask("sync", timeout=5).get() == "sync"  # the watch is registered before this
    with pytest.raises(NotAllowed, match="only actors it spawned"):
        found.stop(timeout=5)  # a peer stops only what it spawned (remote_stop="spawned")
    assert found.is_alive()
    assert b.statistics().refusals == 1
    assert b.ref("echo").stop(timeout=5) is True
    assert done.wait(5)
    assert isinstance(box[0], Terminated) and box[0].ref == found
    assert not found.is_alive()
    a.ref(f"ghost@{b.address}").watch(watcher)  # type: ignore[attr-defined]
    done.clear()
    box.clear()
    assert done.wait(5) and box[0].reason == "no such actor"


def test_lost_node_fails_pending_asks_and_tells_watchers(scheme: str) -> None:
    with short_tmpdir() as folder:
        a = Node(endpoint(scheme, folder), name="a", heartbeat=0.5)
        b = Node(endpoint(scheme, folder), name="b", heartbeat=0.5)
        gate = threading.Event()
        try:
            Gate.start(gate, name="gate")
            Echo.start(name="echo")
            echo = a.ref(f"echo@{b.address}")
            box: list[Any] = []
            done = threading.Event()
            watcher = Collector.start(box, done, name="watcher")
            echo.watch(watcher)  # type: ignore[attr-defined]
            assert echo.ask("up", timeout=5).get() == "up"
            held = a.ref(f"gate@{b.address}")
            pending = [held.ask(i, timeout=30) for i in range(10)]
            b.close()
            started = time.monotonic()
            for reply in pending:
                with pytest.raises(NodeUnreachable):
                    reply.get()
            assert time.monotonic() - started < 0.5 + 1.0
            assert done.wait(5)
            assert "node lost" in box[0].reason
            with pytest.raises(NodeUnreachable):  # known down: fails at once
                echo.ask("x", timeout=30)
            assert a.peer_state(b.address) == "down"
        finally:
            gate.set()
            b.close()
            a.close()


def test_spawn_remote_allowed_refused_and_failing(pair: tuple[Node, Node]) -> None:
    a, b = pair
    ref = a.spawn_remote(b.address, "transport_peer:Echo", "hey", name="spawned", timeout=10)
    assert isinstance(ref, RemoteRef) and ref.name == "spawned"
    assert ref.ask("greeting", timeout=5).get() == "hey"
    with pytest.raises(SpawnRefused, match="does not allow spawning"):
        a.spawn_remote(b.address, "transport_peer:Collector", timeout=10)
    with pytest.raises(SpawnRefused):
        a.spawn_remote(b.address, "os:system", "true", timeout=10)
    from llmos.actors import NameTaken

    with pytest.raises(NameTaken):
        a.spawn_remote(b.address, "transport_peer:Echo", name="spawned", timeout=10)


def test_spawner_is_pluggable_and_wildcards_work(scheme: str) -> None:
    calls: list[tuple[Any, ...]] = []

    def spawner(
        cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None
    ) -> ActorRef:
        calls.append((cls.__name__, args, kwargs, name))
        return cls.start(*args, name=name, **kwargs)  # type: ignore[attr-defined, no-any-return]

    with (
        short_tmpdir() as folder,
        Node(endpoint(scheme, folder)) as a,
        Node(endpoint(scheme, folder), allow_spawn=["transport_peer:*"], spawner=spawner) as b,
    ):
        ref = a.spawn_remote(b.address, "transport_peer:Echo", greeting="yo", name="w1")
        assert ref.ask("greeting", timeout=5).get() == "yo"
        assert calls == [("Echo", (), {"greeting": "yo"}, "w1")]


# -- hostile input --------------------------------------------------------------------


@pytest.mark.parametrize("label", [h[0] for h in hostile_frames()])
def test_hostile_frames_are_rejected_counted_and_the_node_serves_on(
    pair: tuple[Node, Node], label: str
) -> None:
    # Built now, not at collection: the asks inside carry a deadline that must not have passed.
    frame, answer = {h[0]: (h[1], h[2]) for h in hostile_frames()}[label]
    a, b = pair
    before = b.statistics()
    with raw_dealer(b.address) as sock:
        if isinstance(frame, list):
            sock.send_multipart(frame)
        else:
            sock.send(frame)
        items = parse_frame(sock.recv(), b.limits)  # every rejection is answered
    after = b.statistics()
    if answer == "frame":
        assert after.bad_frames == before.bad_frames + 1
        assert items[0][0] == NOTICE
    else:
        assert after.bad_items == before.bad_items + 1
        if answer == "item":
            assert items[0][0] == NOTICE
        else:
            assert items[0][0] == FAIL
            error = b.codec.decode_error(items[0][2])
            assert isinstance(error, FrameError)
    assert a.ref(f"echo@{b.address}").ask(Add(1, 1), timeout=5).get() == 2


def test_a_message_over_maxmsgsize_drops_only_that_connection(scheme: str) -> None:
    small = Limits(max_frame=64 * 1024)
    with short_tmpdir() as folder, Node(endpoint(scheme, folder), limits=small) as b:
        Echo.start(name="echo")
        with raw_dealer(b.address) as sock:
            sock.send(b"\x00" * (small.max_frame + 64 * 1024))
            if scheme == "inproc":  # no wire protocol, no MAXMSGSIZE: our own check drops it
                assert parse_frame(sock.recv(), small)[0][0] == NOTICE
                assert b.statistics().bad_frames == 1
            else:  # libzmq refuses it (MAXMSGSIZE) and drops that connection
                assert sock.poll(200) == 0
        with Node(endpoint(scheme, folder), limits=small) as a:
            assert a.ref(f"echo@{b.address}").ask(Add(2, 2), timeout=5).get() == 4
        assert b.statistics().frames_in >= 1


def test_unknown_message_type_is_the_askers_error(pair: tuple[Node, Node]) -> None:
    _a, b = pair
    from llmos.transport._codec import EXT_MESSAGE

    payload = msgpack.packb(msgpack.ExtType(EXT_MESSAGE, msgpack.packb(["no.such.Msg", 1])))
    with raw_dealer(b.address) as sock:
        sock.send(pack_frame([ask_item(3, payload)]))
        item = parse_frame(sock.recv(), b.limits)[0]
    assert item[:2] == [FAIL, 3]
    assert isinstance(b.codec.decode_error(item[2]), UnknownMessageType)


def test_expired_requests_are_not_executed(pair: tuple[Node, Node]) -> None:
    _a, b = pair
    box: list[Any] = []
    done = threading.Event()
    Collector.start(box, done, name="sink")
    with raw_dealer(b.address) as sock:
        stale = [ASK, 1, 30.0, time.time() - 5.0, "sink", msgpack.packb(1)]  # deadline passed
        fresh = ask_item(2, msgpack.packb(2), target="sink")
        given_up = [*ask_item(3, msgpack.packb(3), target="sink"), time.time() - 5.0]
        sock.send(pack_frame([stale, fresh, given_up]))
        items: list[Any] = []
        while len(items) < 3:
            items += parse_frame(sock.recv(), b.limits)
    answers = {item[1]: item for item in items}
    assert answers[2][0] == REPLY
    for rid in (1, 3):  # refused unstarted, with a typed error
        assert answers[rid][0] == FAIL
        assert isinstance(b.codec.decode_error(answers[rid][2]), RequestExpired)
    assert box == [2]
    assert b.statistics().expired_requests == 2


def test_asks_queued_past_their_give_up_time_on_a_live_node_still_run(
    pair: tuple[Node, Node],
) -> None:
    """Their give-up time (within the 1 s heartbeat timeout) passes while they wait behind a
    2 s ask; the node kept answering heartbeats, so their asker still waits, and they run."""
    a, b = pair
    five_behind_a_slow_ask_still_run(a.ref(f"echo@{b.address}"), b, 2.0)


def five_behind_a_slow_ask_still_run(echo: ActorRef, node: Node, seconds: float) -> None:
    """Five asks wait ``seconds`` behind a slow one, then run; ``node`` refused none."""
    slow = echo.ask(Sleep(seconds), timeout=10)
    asks = [echo.ask(Record(i), timeout=10) for i in range(5)]
    assert slow.get() == "slept"
    assert [reply.get() for reply in asks] == [1, 2, 3, 4, 5]
    assert node.statistics().expired_requests == 0


def test_asks_of_a_slower_heartbeat_asker_queued_past_their_give_up_time_still_run() -> None:
    """The asker pings every 0.5 s, longer than half the node's 0.5 s timeout: the node judges
    it by the 2 s timeout its heartbeats declare, so its asks that waited 2.5 s behind a slow
    one, past their give-up time, still run (it still waits for them)."""
    with (
        Node("tcp://127.0.0.1:0", name="b", heartbeat=0.5) as b,
        Node(name="a", heartbeat=2.0) as a,
    ):
        Echo.start(name="echo")
        five_behind_a_slow_ask_still_run(a.ref(f"echo@{b.address}"), b, 2.5)


class HeldRecorder(Actor):
    """Records each message it handles; the first waits until the test opens the gate."""

    def __init__(self, gate: threading.Event, box: list[Any]) -> None:
        super().__init__()
        self.gate = gate
        self.box = box

    def on_receive(self, message: Any) -> Any:
        self.box.append(message)
        self.gate.wait(10)
        return message


class Held:
    """A HeldRecorder named "held", and the checks the cut tests make on it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.box: list[Any] = []
        self.ref = HeldRecorder.start(self.gate, self.box, name="held")

    def queue(self, remote: ActorRef, count: int = 5) -> list[Reply]:
        """Ask "first" (which holds the actor), then ``count`` more, once the node read all."""
        replies = [remote.ask(x, timeout=30) for x in ["first", *range(count)]]
        wait_for(f"the node read all {count + 1} asks", lambda: self.read(count), 10)
        return replies

    def read(self, count: int) -> bool:
        """True once "first" is being handled and ``count`` asks wait behind it."""
        stats = self.ref.statistics()
        return stats.in_flight == 1 and stats.mailbox_depth == count

    def none_started_after_the_asker_gave_up(self, replies: list[Reply], node: Node) -> None:
        """Each reply failed with NodeUnreachable; once the gate opens, only "first" ran and
        ``node`` refused every other ask unstarted."""
        for reply in replies:
            with pytest.raises(NodeUnreachable):
                reply.get()
        self.gate.set()
        assert self.ref.ask("probe", timeout=10).get() == "probe"
        assert self.box == ["first", "probe"]
        assert node.statistics().expired_requests == len(replies) - 1


@pytest.mark.parametrize(
    ("asker_heartbeat", "node_heartbeat"), [(1.0, 1.0), (0.5, 3.0)], ids=["same", "asker-faster"]
)
def test_asks_queued_before_a_one_way_cut_are_not_started_after_their_asker_gave_up(
    asker_heartbeat: float, node_heartbeat: float
) -> None:
    """The node's answers stop reaching the asker, while the asker's heartbeats still reach
    the node: the asker gives up on its asks, and its heartbeats said it had not heard the
    node, so the asks it queued there are refused when taken off the mailbox, not started.

    With no ``clock_skew`` the asker fails its asks as it closes the connection, one tick
    after its last heartbeat: too soon for the node to tell that the heartbeats stopped. An
    asker with a shorter heartbeat timeout than the node's gives up sooner: the node judges it
    by the timeout its heartbeats declare."""
    with (
        Node("tcp://127.0.0.1:0", name="b", heartbeat=node_heartbeat, clock_skew=0.0) as b,
        Node(name="a", heartbeat=asker_heartbeat, clock_skew=0.0) as a,
    ):
        proxy = OneWayProxy(b.address)
        try:
            held = Held()
            replies = held.queue(a.ref(f"held@{proxy.address}"))
            proxy.cut()
            held.none_started_after_the_asker_gave_up(replies, b)
        finally:
            proxy.close()


def test_asks_sent_after_a_one_way_cut_are_not_started_after_their_asker_gave_up() -> None:
    """The asker goes on asking after the cut until it gives up: its last asks are read after
    its last heartbeat got through, and each says through its give-up time how long the asker
    had not heard the node. None of them is started after the asker reported it failed."""
    with (
        Node("tcp://127.0.0.1:0", name="b", heartbeat=1.0, clock_skew=0.0) as b,
        Node(name="a", heartbeat=1.0, clock_skew=0.0) as a,
    ):
        proxy = OneWayProxy(b.address)
        try:
            held = Held()
            remote = a.ref(f"held@{proxy.address}")
            replies = held.queue(remote, count=0)
            proxy.cut()
            paced = threading.Event()  # never set: a 20 ms pace between asks
            with pytest.raises(NodeUnreachable):
                for i in range(1000):  # until the call itself says the node is down
                    replies.append(remote.ask(i, timeout=30))
                    paced.wait(0.02)
            assert len(replies) > 10
            held.none_started_after_the_asker_gave_up(replies, b)
        finally:
            proxy.close()


def test_on_a_shared_key_one_nodes_silence_is_not_hidden_by_anothers_frames() -> None:
    """Two nodes share a CURVE key. One is cut off both ways and gives up on its asks; the
    other's frames keep coming on the same key. The asks the cut node queued are still not
    started after it gave up: a node is judged by its own connection."""
    server_keys, shared = KeyPair.generate(), KeyPair.generate()
    with Node(
        keys=server_keys, allow_keys=[shared.public], heartbeat=1.0, clock_skew=0.0, name="b"
    ) as b:
        proxy = OneWayProxy(b.address)
        keys = {b.address: server_keys.public, proxy.address: server_keys.public}
        try:
            with (
                Node(keys=shared, peer_keys=keys, heartbeat=1.0, clock_skew=0.0) as cut,
                Node(keys=shared, peer_keys=keys, heartbeat=1.0, clock_skew=0.0) as other,
            ):
                held = Held()
                Echo.start(name="echo")
                assert other.ref(f"echo@{b.address}").ask(Add(1, 1), timeout=5).get() == 2
                replies = held.queue(cut.ref(f"held@{proxy.address}"))
                proxy.cut(both=True)
                held.none_started_after_the_asker_gave_up(replies, b)
                assert other.ref(f"echo@{b.address}").ask(Add(2, 2), timeout=5).get() == 4
        finally:
            proxy.close()


def test_large_payloads_arrive_whole_in_tells_asks_and_answers(pair: tuple[Node, Node]) -> None:
    """Payloads that travel as message parts (joined, or each its own) arrive as sent, in
    order with the small ones around them, and are counted in bytes_in and bytes_out."""
    a, b = pair
    sizes = [10, 5_000, 10_240, 70_000, 1024 * 1024, 10_240, 100]
    values = [{"n": n, "data": bytes([n % 251]) * size} for n, size in enumerate(sizes)]
    box: list[Any] = []
    done = threading.Event()
    Collector.start(box, done, len(values), name="big-box")
    sink = a.ref(f"big-box@{b.address}")
    for value in values:
        sink.tell(value)
    assert done.wait(10)
    assert box == values
    echo = a.ref(f"echo@{b.address}")
    replies = [echo.ask(value, timeout=10) for value in values]  # queued together
    assert [reply.get() for reply in replies] == values
    assert b.statistics().bytes_in > 2 * sum(sizes)
    # b's I/O thread counts an answer's bytes just after sending it: a may read it first.
    wait_for("b counts the answers' bytes", lambda: b.statistics().bytes_out > sum(sizes), 10)


def test_too_large_messages_are_refused_before_sending(pair: tuple[Node, Node]) -> None:
    a, b = pair
    with pytest.raises(FrameError, match="over the frame limit"):
        a.ref(f"echo@{b.address}").tell(b"x" * (a.limits.max_frame + 1))


# -- back-pressure ----------------------------------------------------------------------


@pytest.fixture
def silent_sink() -> Iterator[str]:
    """The address of a ROUTER that accepts a connection and never reads from it."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sink = ctx.socket(zmq.ROUTER)
    sink.linger = 0
    sink.rcvhwm = 1
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        sink.close(0)


def test_a_peer_that_does_not_read_gives_peer_busy_never_silent_loss(silent_sink: str) -> None:
    with Node(heartbeat=30, max_outbox=50, send_timeout=0.2) as a:
        ref = a.ref(f"sink@{silent_sink}")
        blob = b"x" * 256 * 1024
        with pytest.raises(PeerBusy) as info:
            for _ in range(100_000):
                ref.tell(blob)
        assert isinstance(info.value, MailboxFull)
        admitted = []
        with pytest.raises(PeerBusy):
            for _ in range(100_000):
                admitted.append(ref.ask(blob, timeout=1))

        async def go() -> BaseException | None:
            for _ in range(100):
                try:
                    await ref.ask_async(blob, timeout=0.3)
                except AskTimeout:
                    continue  # admitted, and unanswered: a typed error, not a loss
                except PeerBusy as exc:
                    return exc
            return None

        assert isinstance(asyncio.run(go()), PeerBusy)
        for reply in admitted:  # an admitted ask is never lost: it ends in a typed error
            with pytest.raises((AskTimeout, NodeUnreachable)):
                reply.get()


def test_a_burst_of_large_tells_is_held_back_by_the_bytes_queued(silent_sink: str) -> None:
    # Not only by the item count: at the default max_outbox (65,536 items) these tells would
    # queue 4 GiB before their sender waited.
    with Node(heartbeat=30, send_timeout=0.2) as a:
        ref = a.ref(f"sink@{silent_sink}")
        blob = b"x" * 64 * 1024
        sent = 0
        with pytest.raises(PeerBusy, match="bytes of large payloads"):
            while sent < 5000:
                ref.tell(blob)
                sent += 1
        # The outbox's bytes, libzmq's pipe (HWM frames) and the kernel's buffers: a few
        # tens of MiB at most.
        assert sent < 1000


# -- binding policy and CURVE -------------------------------------------------------------


def test_binding_off_loopback_needs_keys_or_insecure(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(AuthError, match="without CURVE keys"):
        Node("tcp://0.0.0.0:0")
    with caplog.at_level(logging.WARNING, logger="llmos.transport"):
        with Node("tcp://0.0.0.0:0", insecure=True) as node:
            assert node.address.startswith("tcp://") and ":0" not in node.address[-2:]
    assert "WITHOUT encryption" in caplog.text
    with Node("tcp://0.0.0.0:0", keys=KeyPair.generate(), advertise="tcp://127.0.0.1:1") as node:
        assert node.address == "tcp://127.0.0.1:1"
    with pytest.raises(TransportError, match="not a node address"):
        Node("udp://127.0.0.1:0")


@pytest.fixture
def secure_pair() -> Iterator[tuple[KeyPair, KeyPair, Node]]:
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    server = Node(keys=server_keys, allow_keys=[client_keys.public], name="secure", heartbeat=2)
    try:
        Echo.start(name="echo")
        yield server_keys, client_keys, server
    finally:
        server.close()


def test_curve_client_with_the_right_key_gets_through(
    secure_pair: tuple[KeyPair, KeyPair, Node],
) -> None:
    server_keys, client_keys, server = secure_pair
    with Node(keys=client_keys, peer_keys={server.address: server_keys.public}) as client:
        assert client.ref(f"echo@{server.address}").ask(Add(20, 22), timeout=5).get() == 42
    assert server.statistics().auth_accepted >= 1


def test_nodes_sharing_one_key_pair_reach_each_other_with_a_default_peer_key() -> None:
    """A cluster's nodes share one key pair: default_peer_key makes every peer a CURVE peer,
    so a node reaches another without being told its address first."""
    shared = KeyPair.generate()
    server = Node(keys=shared, allow_keys=[shared.public], name="cluster-a")
    try:
        Echo.start(name="echo")
        with Node(keys=shared, default_peer_key=shared.public) as client:
            assert client.ref(f"echo@{server.address}").ask(Add(1, 2), timeout=5).get() == 3
        assert server.statistics().auth_accepted >= 1
        with pytest.raises(AuthError, match="needs keys"):
            Node(default_peer_key=shared.public)
    finally:
        server.close()


def test_a_keyed_peer_is_its_key_not_one_connection() -> None:
    """Quotas and stop rights belong to a CURVE key: a new connection with the same key shares
    the spawn quota, and may stop what an earlier connection of that key spawned."""
    server_keys, client_keys, other_keys = (
        KeyPair.generate(),
        KeyPair.generate(),
        KeyPair.generate(),
    )
    server = Node(
        keys=server_keys,
        allow_keys=[client_keys.public, other_keys.public],
        allow_spawn=["transport_peer:Echo"],
        quotas=Quotas(max_spawned=2),
        name="keyed",
    )
    peer_keys = {server.address: server_keys.public}
    try:
        with Node(keys=client_keys, peer_keys=peer_keys) as first:
            for name in ["one", "two"]:
                first.spawn_remote(server.address, "transport_peer:Echo", name=name, timeout=5)
        with Node(keys=client_keys, peer_keys=peer_keys) as second:
            with pytest.raises(QuotaExceeded):
                second.spawn_remote(server.address, "transport_peer:Echo", name="3", timeout=5)
            with Node(keys=other_keys, peer_keys=peer_keys) as other:  # another key: its own
                with pytest.raises(NotAllowed, match="only actors it spawned"):
                    other.ref(f"one@{server.address}").stop(timeout=5)
                other.spawn_remote(server.address, "transport_peer:Echo", name="mine", timeout=5)
            assert second.ref(f"one@{server.address}").stop(timeout=5) is True
            second.spawn_remote(server.address, "transport_peer:Echo", name="three", timeout=5)
    finally:
        server.close()


@pytest.mark.parametrize("how", ["wrong key", "no curve"])
def test_curve_client_without_the_right_key_gets_nothing_through(
    secure_pair: tuple[KeyPair, KeyPair, Node], how: str
) -> None:
    server_keys, _, server = secure_pair
    if how == "wrong key":
        client = Node(keys=KeyPair.generate(), peer_keys={server.address: server_keys.public})
    else:
        client = Node()
    with client:
        echo = client.ref(f"echo@{server.address}")
        echo.tell(Record("sneaky"))
        with pytest.raises((AuthError, NodeUnreachable)):
            echo.ask(Record("sneaky"), timeout=10).get()
    with Node(keys=KeyPair.generate()) as other:
        del other
    assert server.statistics().items_in == 0
    local = server.ref("echo")
    assert local.ask("records", timeout=5).get() == []
    if how == "wrong key":
        assert server.statistics().auth_refused >= 1


def test_raw_curve_client_with_unknown_key_is_refused(
    secure_pair: tuple[KeyPair, KeyPair, Node],
) -> None:
    server_keys, _, server = secure_pair
    public, secret = zmq.curve_keypair()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
        server_keys.public,
        public,
        secret,
    )
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        sock.connect(server.address)
        sock.send(pack_frame([ask_item(1, msgpack.packb(Record("x").value))]))
        assert monitor.poll(5000), "the server never refused the unknown key"
        assert sock.poll(200) == 0
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
    assert server.statistics().items_in == 0


def test_without_a_running_authenticator_nobody_gets_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmos.transport._router as router_module

    monkeypatch.setattr(router_module, "ZAP_ENDPOINT", "inproc://not-the-zap-endpoint")
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    with Node(keys=server_keys, allow_keys=[client_keys.public], heartbeat=1) as server:
        Echo.start(name="echo")
        with Node(keys=client_keys, peer_keys={server.address: server_keys.public}) as client:
            with pytest.raises((AuthError, NodeUnreachable)):
                client.ref(f"echo@{server.address}").ask("x", timeout=10).get()
        assert server.statistics().items_in == 0


def test_closed_node_refuses_to_send(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    assert echo.ask("x", timeout=5).get() == "x"
    a.close()
    with pytest.raises(NodeUnreachable):
        echo.ask("x", timeout=5)
    with pytest.raises(NodeUnreachable):
        a.ref(f"echo@{b.address}x").ask("x", timeout=5)


def test_peers_connected_here_are_counted_up_then_silent() -> None:
    """A node counts the peers that send to it (``clients_up``) as well as those it sends to,
    and one that goes away turns ``clients_silent`` once it misses a heartbeat timeout."""
    with Node(name="server", heartbeat=0.5) as server:
        Echo.start(name="echo")
        assert server.statistics().clients_up == 0
        client = Node(name="client", heartbeat=0.5)
        try:
            assert client.ref(f"echo@{server.address}").ask("hi", timeout=5).get() == "hi"
            stats = server.statistics()
            assert (stats.clients_up, stats.clients_silent) == (1, 0)
            assert server.peer_state(client.address) is None  # it never sent to the client
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while server.statistics().clients_silent != 1:
            assert time.monotonic() < deadline, server.statistics()
            threading.Event().wait(0.05)
        assert server.statistics().clients_up == 0


def test_a_pulse_tells_a_gap_since_a_moment_and_a_stop_now() -> None:
    """What a node asks before starting a queued request from another node (RemoteAsker)."""
    pulse = Pulse(0.5)
    t = time.monotonic()
    pulse.beat(t)
    pulse.beat(t + 0.4)
    assert not pulse.missed_since(t, t + 0.5)  # beats within the gap
    pulse.beat(t + 1.2)  # 0.8 s without one: frozen or starved
    assert pulse.missed_since(t + 1.0, t + 1.3)  # read before the gap ended
    assert not pulse.missed_since(t + 1.2, t + 1.3)  # read after it
    assert pulse.missed_since(t + 1.2, t + 1.8)  # no beat for 0.6 s now


def test_a_spawn_whose_asker_gave_up_while_queued_is_not_started(pair: tuple[Node, Node]) -> None:
    """A spawn request waits for a spawn worker; if its asker gave up meanwhile (see
    RemoteAsker), the worker settles it unstarted instead of running the constructor."""
    _a, b = pair

    class GaveUp:
        stopped = True

    reply: Reply[Any] = Reply(time.monotonic() + 5.0, "transport_peer:Echo", 5.0)
    reply.asker = GaveUp()
    account = Account("peer")
    b.server.control.run_spawn(reply, account, "transport_peer:Echo", (), {}, "never-spawned")
    with pytest.raises(AskAbandoned):
        reply.get()
    assert find("never-spawned") is None and not account.spawned
