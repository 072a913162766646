"""An idle actor that serves remote requests reads them from the node's socket itself.

Two nodes in one process, over tcp://, ipc:// and inproc://. Node ``b`` serves; once an actor
there has had a remote request, its thread reads the ROUTER while it is idle (the leader). These
tests check that this reads what it should, that local messages still wake such an actor, that
a long handler never holds up other actors' requests, and that stopping the actor or closing
the node leaves nothing waiting on the socket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from transport_support import (
    Gate,
    ask_item,
    endpoint,
    hostile_frames,
    raw_dealer,
    short_tmpdir,
)

from llmos.actors import Actor, ActorDeadError, ActorRef
from llmos.actors._cell import lookup
from llmos.transport import Node
from llmos.transport._frames import FAIL, NOTICE, REPLY, pack_frame, parse_frame

SCHEMES = ["tcp", "ipc", "inproc"]
BOUND = 5.0  # seconds any wait in these tests may take at most


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        return message


class Flag(Actor):
    """Sets the event it was given when told "flag"; answers anything else."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.flag = flag

    def on_receive(self, message: Any) -> Any:
        if message == "flag":
            self.flag.set()
            return None
        return message


@pytest.fixture(params=SCHEMES)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Node, Node]]:
    """Node ``a`` (the asker) and node ``b`` (where the actors run)."""
    with short_tmpdir() as folder:
        a = Node(endpoint(request.param, folder), name="a", heartbeat=1.0)
        try:
            b = Node(endpoint(request.param, folder), name="b", heartbeat=1.0)
            try:
                yield a, b
            finally:
                b.close()
        finally:
            a.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for a condition that another thread makes true."""
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {BOUND} s: {what}")
        time.sleep(0.001)


def leading(node: Node, name: str) -> None:
    """Wait until the actor ``name`` reads ``node``'s socket while idle."""
    cell = lookup(name)
    assert cell is not None and cell.thread is not None
    ident = cell.thread.ident
    wait_until(lambda: node.io.leader == ident, f"{name} reads the socket of node {node.name}")


def test_an_idle_actor_reads_the_asks_sent_to_it_itself(pair: tuple[Node, Node]) -> None:
    a, b = pair
    Echo.start(name="echo")
    echo = a.ref(f"echo@{b.address}")
    assert echo.ask("first", timeout=BOUND).get() == "first"  # read by b's I/O thread
    before = b.statistics().actor_reads
    for n in range(30):
        leading(b, "echo")
        assert echo.ask({"n": n}, timeout=BOUND).get() == {"n": n}
    # Each ask was read by echo's own thread (a heartbeat can add a read of its own).
    assert b.statistics().actor_reads - before >= 30


def test_a_local_message_wakes_an_actor_that_reads_the_socket(pair: tuple[Node, Node]) -> None:
    a, b = pair
    flag = threading.Event()
    local = Flag.start(flag, name="flag")
    assert a.ref(f"flag@{b.address}").ask("hi", timeout=BOUND).get() == "hi"
    for _ in range(3):
        leading(b, "flag")
        flag.clear()
        local.tell("flag")
        assert flag.wait(BOUND), "a local tell did not wake the actor reading the socket"
    leading(b, "flag")
    assert local.ask("local ask", timeout=BOUND).get() == "local ask"


def test_a_long_handler_never_holds_up_other_actors_remote_asks(pair: tuple[Node, Node]) -> None:
    a, b = pair
    gate = threading.Event()
    Gate.start(gate, name="gate")
    Echo.start(name="echo")
    remote_gate = a.ref(f"gate@{b.address}")
    assert remote_gate.ask("open", timeout=BOUND).get() == "open"
    leading(b, "gate")
    held = remote_gate.ask("wait", timeout=30)  # the gate reads this itself, then blocks on it
    try:
        started = time.monotonic()
        for n in range(5):
            assert a.ref(f"echo@{b.address}").ask(n, timeout=BOUND).get() == n
        assert time.monotonic() - started < BOUND
        assert not held.done()
    finally:
        gate.set()
    assert held.get() == "wait"


def test_remote_asks_to_several_actors_are_all_answered(pair: tuple[Node, Node]) -> None:
    a, b = pair
    names = [f"echo-{i}" for i in range(4)]
    for name in names:
        Echo.start(name=name)
    refs = [a.ref(f"{name}@{b.address}") for name in names]
    idents = {0} | {cell.thread.ident for cell in map(lookup, names) if cell and cell.thread}
    for n in range(40):
        ref = refs[n % len(refs)]
        assert ref.ask([n, ref.name], timeout=BOUND).get() == [n, ref.name]
        assert b.io.leader in idents  # at most one leader, and only one of these actors


def test_a_bounded_mailbox_gets_its_room_back_when_the_actor_reads_itself(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    Echo.start(name="small", capacity=1, when_full="fail")
    small = a.ref(f"small@{b.address}")
    for n in range(50):  # a slot not given back would fail the second ask with MailboxFull
        assert small.ask(n, timeout=BOUND).get() == n


def test_stopping_an_actor_that_reads_the_socket(pair: tuple[Node, Node]) -> None:
    a, b = pair
    local: ActorRef = Echo.start(name="echo")
    remote = a.ref(f"echo@{b.address}")
    assert remote.ask("hi", timeout=BOUND).get() == "hi"
    leading(b, "echo")
    assert local.stop(timeout=BOUND)
    wait_until(lambda: b.io.leader == 0, "the socket is given back")
    with pytest.raises(ActorDeadError):
        remote.ask("hi", timeout=BOUND).get()
    Echo.start(name="echo")  # the I/O thread reads for the new actor with that name
    assert remote.ask("again", timeout=BOUND).get() == "again"


def test_closing_the_node_gives_its_actors_back_their_own_queue(pair: tuple[Node, Node]) -> None:
    a, b = pair
    local = Echo.start(name="echo")
    assert a.ref(f"echo@{b.address}").ask("hi", timeout=BOUND).get() == "hi"
    leading(b, "echo")
    started = time.monotonic()
    b.close()
    assert time.monotonic() - started < BOUND
    cell = lookup("echo")
    assert cell is not None and cell.mailbox.idle is None
    wait_until(lambda: b.io.leader == 0, "the actor stops reading the closed node's socket")
    for n in range(3):
        assert local.ask(n, timeout=BOUND).get() == n


def test_heartbeats_are_answered_while_an_actor_reads_the_socket() -> None:
    with Node(name="a", heartbeat=0.2) as a, Node(name="b", heartbeat=0.2) as b:
        Echo.start(name="echo")
        echo = a.ref(f"echo@{b.address}")
        assert echo.ask("hi", timeout=BOUND).get() == "hi"
        leading(b, "echo")
        before = b.statistics().actor_reads
        time.sleep(5 * 0.2)  # five heartbeat timeouts with no traffic but a's pings
        assert b.statistics().actor_reads > before  # echo read the pings, and b answered them
        assert a.statistics().peers_up == (b.address,)
        assert echo.ask("still up", timeout=BOUND).get() == "still up"


def test_hostile_frames_read_by_an_actor_are_rejected_counted_and_answered() -> None:
    with Node(name="b") as b:
        Echo.start(name="echo")
        with raw_dealer(b.address) as sock:
            for label, frame, answer in hostile_frames():
                sock.send(pack_frame([ask_item(1, msgpack.packb("warm"))]))
                assert parse_frame(sock.recv(), b.limits)[0][0] == REPLY
                leading(b, "echo")  # echo now reads the socket: it gets the hostile frame
                before = b.statistics()
                if isinstance(frame, list):
                    sock.send_multipart(frame)
                else:
                    sock.send(frame)
                item = parse_frame(sock.recv(), b.limits)[0]  # every rejection is answered
                after = b.statistics()
                assert after.actor_reads > before.actor_reads, label
                if answer == "frame":
                    assert (after.bad_frames - before.bad_frames, item[0]) == (1, NOTICE), label
                else:
                    assert after.bad_items == before.bad_items + 1, label
                    assert item[0] == (NOTICE if answer == "item" else FAIL), label
