"""The ask fast path: the asking thread sends its request and reads its answer itself.

Two nodes in one process, over tcp://, ipc:// and inproc://. These tests check what the fast
path must not change: one sender's order, answers reaching the right asker when many threads
ask at once, answers nobody waits for, and waiting threads woken when the peer is lost or the
node closes.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from transport_peer import Add, Echo, Sleep
from transport_support import Gate, PeerProcess, endpoint, short_tmpdir

from llmos.actors import Actor, LlmosError, NodeUnreachable
from llmos.transport import Node

SCHEMES = ["tcp", "ipc", "inproc"]
HEARTBEAT = 1.0
SPIN_WAIT = 0.01  # long enough that a fast answer comes within it even on a busy machine


class Sequence(Actor):
    """Records (sender, n) pairs in arrival order; ``"log"`` answers the record."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[list[Any]] = []

    def on_receive(self, message: Any) -> Any:
        if message == "log":
            return self.log
        self.log.append(list(message))
        return message[1]


@pytest.fixture(
    params=[(scheme, spin) for scheme in SCHEMES for spin in ("spin", "sleep")],
    ids=lambda param: "-".join(param),
)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Node, Node]]:
    """Node ``a`` (the asker; its waiting threads spin first, or sleep at once) and node ``b``
    (serving ``echo`` and ``seq``)."""
    scheme, spin = request.param
    with short_tmpdir() as folder:
        a = Node(
            endpoint(scheme, folder),
            name="a",
            heartbeat=HEARTBEAT,
            spin_wait=SPIN_WAIT if spin == "spin" else 0,
        )
        try:
            b = Node(endpoint(scheme, folder), name="b", heartbeat=HEARTBEAT)
            try:
                assert b.address.startswith(f"{scheme}://")
                Echo.start(name="echo")
                Sequence.start(name="seq")
                yield a, b
            finally:
                b.close()
        finally:
            a.close()


def run_threads(count: int, target: Any) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads; return what they raised (bounded join)."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a sender thread hung"
    return errors


def test_one_senders_tells_and_asks_keep_their_order(pair: tuple[Node, Node]) -> None:
    a, b = pair
    seq = a.ref(f"seq@{b.address}")

    def send(sender: int) -> None:
        for n in range(150):
            if n % 3 == 0:
                assert seq.ask([sender, n], timeout=10).get() == n
            elif n % 3 == 1:
                seq.tell([sender, n])
            else:
                seq.ask([sender, n], timeout=10)  # an ask nobody waits for

    assert run_threads(4, send) == []
    log = seq.ask("log", timeout=10).get()
    assert len(log) == 4 * 150
    for sender in range(4):
        assert [n for s, n in log if s == sender] == list(range(150)), sender


def test_many_threads_asking_at_once_each_get_their_own_answers(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")

    def ask(sender: int) -> None:
        for n in range(100):
            assert echo.ask(Add(sender, n), timeout=20).get() == sender + n

    async def ask_async() -> list[int]:
        return list(
            await asyncio.gather(*(echo.ask_async(Add(1000, n), timeout=20) for n in range(100)))
        )

    answers: list[list[int]] = []
    loop_thread = threading.Thread(target=lambda: answers.append(asyncio.run(ask_async())))
    loop_thread.start()
    assert run_threads(12, ask) == []
    loop_thread.join(60)
    assert answers == [[1000 + n for n in range(100)]]
    assert a.statistics().late_replies == 0


def test_answers_nobody_waits_for_directly_are_read_by_the_io_thread(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    replies = [echo.ask(Add(n, 1), timeout=10) for n in range(20)]
    # get(timeout=...) waits on the reply, not on the socket: the I/O thread reads the answers.
    assert [r.get(timeout=10) for r in replies] == [n + 1 for n in range(20)]
    # Nobody calls get on the first: its answer, which arrives before the second's on the
    # same connection, is read along the way.
    first = echo.ask(Add(2, 2), timeout=10)
    assert echo.ask(Add(3, 3), timeout=10).get() == 6
    assert first.done() and first.get() == 4


@pytest.mark.parametrize("lose", ["the peer closes", "this node closes"])
def test_a_thread_waiting_on_the_socket_is_woken_when_the_link_is_lost(
    pair: tuple[Node, Node], lose: str
) -> None:
    a, b = pair
    gate = threading.Event()
    Gate.start(gate, name="gate")
    held = a.ref(f"gate@{b.address}")
    outcome: list[Any] = []
    waiting = threading.Event()

    def wait() -> None:
        reply = held.ask("wait", timeout=30)
        waiting.set()
        try:
            outcome.append(reply.get())
        except NodeUnreachable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    try:
        assert waiting.wait(10)
        lost = time.monotonic()
        (b if lose == "the peer closes" else a).close()
        thread.join(HEARTBEAT + 5)
        assert not thread.is_alive()
        assert isinstance(outcome[0], NodeUnreachable)
        assert time.monotonic() - lost < HEARTBEAT + 1.0
    finally:
        gate.set()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_threads_that_end_give_their_wake_descriptor_back(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    assert echo.ask(Add(0, 0), timeout=10).get() == 0
    gc.collect()
    before = open_descriptors()

    def one_ask(n: int) -> None:
        assert echo.ask(Add(n, n), timeout=10).get() == 2 * n

    for _ in range(4):
        assert run_threads(20, one_ask) == []
    gc.collect()
    # At most one wake-up descriptor per thread that ran at the same time (20), not one per
    # thread that ever asked (80).
    assert open_descriptors() - before <= 20


@pytest.mark.multiprocess
def test_kill_9_wakes_every_thread_waiting_on_the_socket() -> None:
    peer = PeerProcess("--heartbeat", str(HEARTBEAT)).start()
    local = Node(heartbeat=HEARTBEAT)
    try:
        echo = local.ref(f"echo@{peer.address}")
        assert echo.ask("warm", timeout=10).get() == "warm"
        waiting = threading.Barrier(9)
        failed_after: list[float] = []
        killed_at: list[float] = []

        def wait(_: int) -> None:
            reply = echo.ask(Sleep(60), timeout=60)
            waiting.wait(10)
            with pytest.raises(NodeUnreachable):
                reply.get()
            failed_after.append(time.monotonic() - killed_at[0])

        threads = [threading.Thread(target=run_threads, args=(1, wait)) for _ in range(8)]
        for thread in threads:
            thread.start()
        waiting.wait(10)
        killed_at.append(time.monotonic())
        peer.kill()
        for thread in threads:
            thread.join(HEARTBEAT + 10)
            assert not thread.is_alive()
        assert len(failed_after) == 8
        assert max(failed_after) < HEARTBEAT + 0.5, failed_after
    finally:
        peer.stop()
        local.close()


def test_two_threads_waiting_on_one_reply_both_learn_the_peer_is_lost(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    gate = threading.Event()
    Gate.start(gate, name="gate")
    reply = a.ref(f"gate@{b.address}").ask("wait", timeout=30)
    outcomes: list[Any] = []
    started = threading.Barrier(3)

    def wait(_: int) -> None:
        started.wait(10)
        try:
            outcomes.append(reply.get())
        except NodeUnreachable as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run_threads, args=(1, wait)) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        started.wait(10)
        lost = time.monotonic()
        b.close()
        for thread in threads:
            thread.join(HEARTBEAT + 5)
            assert not thread.is_alive()
        assert len(outcomes) == 2 and all(isinstance(o, NodeUnreachable) for o in outcomes)
        assert time.monotonic() - lost < HEARTBEAT + 1.0
    finally:
        gate.set()


def spins(node: Node) -> int:
    stats = node.statistics()
    return stats.spin_hits + stats.spin_misses


def test_a_waiting_thread_catches_fast_answers_while_it_spins(pair: tuple[Node, Node]) -> None:
    a, b = pair
    echo = a.ref(f"echo@{b.address}")
    for n in range(20):
        assert echo.ask(Add(n, 1), timeout=10).get() == n + 1
    stats = a.statistics()
    if a.spin_wait:
        assert stats.spin_hits >= 1, stats
    else:
        assert stats.spin_hits == stats.spin_misses == 0, stats


def test_a_slow_peer_stops_the_spinning() -> None:
    """Answers that take longer than ``spin_wait`` soon stop the spinning: a few misses, then
    the waiting thread sleeps at once (so a slow peer, a model actor say, costs no CPU)."""
    with Node(name="a", spin_wait=0.005) as a, Node(name="b") as b:
        Echo.start(name="echo")
        echo = a.ref(f"echo@{b.address}")
        for _ in range(4):
            assert echo.ask(Sleep(0.02), timeout=10).get() == "slept"
        tried = spins(a)
        assert 1 <= tried <= 4 and a.statistics().spin_misses >= 1
        for _ in range(4):
            assert echo.ask(Sleep(0.02), timeout=10).get() == "slept"
        assert spins(a) == tried  # the average answer time is now over spin_wait


@pytest.mark.parametrize("spin_wait", [-0.001, 0.02, float("nan"), True, "0.001"])
def test_spin_wait_out_of_range_is_refused(spin_wait: Any) -> None:
    with pytest.raises(LlmosError, match="spin_wait"):
        Node(spin_wait=spin_wait)
