"""Actors with no thread of their own, run in turns by a Dispatcher's few threads.

The failure contract of such actors is covered case by case in ``test_containment.py`` (every
case runs in both modes); here: many actors on few threads, one message at a time in order,
turns that take turns, a blocked dispatcher bounded by timeouts, and the life cycle.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from test_kernel_support import Add, Crash, Get, Worker

from llmos.actors import (
    Actor,
    ActorDeadError,
    AskTimeout,
    DeadlockError,
    Dispatcher,
    LlmosError,
    MailboxFull,
    Reply,
    handler,
    message,
)
from llmos.kernel import kernel

WAIT = 10.0


@message("dtest.Note")
class Note:
    sender: int
    n: int


@message("dtest.Block")
class Block:
    pass


@message("dtest.AskOther")
class AskOther:
    name: str
    timeout: float


@message("dtest.AskSelf")
class AskSelf:
    pass


@pytest.fixture
def pool() -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(threads=2, batch=8, name="dtest")
    yield dispatcher
    import llmos.actors as actors

    actors.stop_all(timeout=WAIT)  # its actors first, then its threads
    assert dispatcher.close(timeout=WAIT)


def pooled(base: type[Actor], dispatcher: Dispatcher) -> type[Any]:
    return type(f"Pooled{base.__name__}", (base,), {"actor_dispatcher": dispatcher})


class Recorder(Actor):
    """Records what it handles, in order, and whether two handlers ever overlapped."""

    LOG: ClassVar[list[tuple[str, int, int]]] = []
    GATE: ClassVar[threading.Event] = threading.Event()
    ENTERED: ClassVar[threading.Event] = threading.Event()

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []
        self.inside = False
        self.overlaps = 0

    @handler(Note)
    def note(self, msg: Note) -> None:
        if self.inside:
            self.overlaps += 1
        self.inside = True
        self.seen.append((msg.sender, msg.n))
        self.LOG.append((self.actor_name, msg.sender, msg.n))
        self.inside = False

    @handler(Block)
    def block(self, msg: Block) -> str:
        self.ENTERED.set()
        assert self.GATE.wait(WAIT), "test gate never opened"
        return "released"

    @handler(AskOther)
    def ask_other(self, msg: AskOther) -> Any:
        from llmos.actors import get

        other = get(msg.name)
        assert other is not None
        try:
            return other.ask(Note(0, 0), timeout=msg.timeout).get()
        except AskTimeout as exc:
            return f"timed out: {exc}"

    @handler(AskSelf)
    def ask_self(self, msg: AskSelf) -> Any:
        return self.actor_ref.ask(Note(0, 0), timeout=WAIT).get()

    def on_receive(self, message: Any) -> Any:
        if message == "seen":
            return list(self.seen)
        if message == "overlaps":
            return self.overlaps
        if message == "thread":
            return threading.current_thread().name
        return super().on_receive(message)


def test_a_thousand_actors_run_on_the_dispatchers_threads_only(pool: Dispatcher) -> None:
    cls = pooled(Recorder, pool)
    before = threading.active_count()
    refs = [cls.start() for _ in range(1000)]
    for round_ in range(3):
        for i, ref in enumerate(refs):
            ref.tell(Note(i, round_))
    for i, ref in enumerate(refs):
        assert ref.ask("seen", timeout=WAIT).get() == [(i, 0), (i, 1), (i, 2)]
    assert threading.active_count() - before <= pool.threads
    names = {ref.ask("thread", timeout=WAIT).get() for ref in refs[:50]}
    assert names <= {f"dtest-{i}" for i in range(pool.threads)}


def test_one_message_at_a_time_in_order_from_each_sender(pool: Dispatcher) -> None:
    ref = pooled(Recorder, pool).start()
    per_sender = 2000

    def send(sender: int) -> None:
        for n in range(per_sender):
            ref.tell(Note(sender, n))

    senders = [threading.Thread(target=send, args=(s,)) for s in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(WAIT)
    seen = ref.ask("seen", timeout=WAIT).get()
    assert len(seen) == 4 * per_sender
    for sender in range(4):
        assert [n for s, n in seen if s == sender] == list(range(per_sender))
    assert ref.ask("overlaps", timeout=WAIT).get() == 0


def test_turns_take_turns_a_long_backlog_does_not_starve_another_actor() -> None:
    dispatcher = Dispatcher(threads=1, batch=8, name="dtest-fair")
    try:
        cls = pooled(Recorder, dispatcher)
        gate, busy, other = cls.start(), cls.start(), cls.start()
        Recorder.GATE.clear()
        Recorder.ENTERED.clear()
        Recorder.LOG.clear()
        blocked = gate.ask(Block(), timeout=WAIT)  # holds the only thread
        assert Recorder.ENTERED.wait(WAIT)
        for n in range(100):
            busy.tell(Note(1, n))  # busy's turn is queued first...
        answered = other.ask("seen", timeout=WAIT)
        other.tell(Note(2, 0))  # ...then other's
        Recorder.GATE.set()
        assert blocked.get() == "released"
        assert answered.get() == []
        assert len(busy.ask("seen", timeout=WAIT).get()) == 100
        order = [name for name, _s, _n in Recorder.LOG]
        # busy's first turn (one batch of 8), then other's turn, then the rest of busy's.
        assert order.index(other.name) == dispatcher.batch
    finally:
        Recorder.GATE.set()
        import llmos.actors as actors

        actors.stop_all(timeout=WAIT)
        assert dispatcher.close(timeout=WAIT)


def test_a_blocked_dispatcher_is_bounded_by_the_asks_timeouts() -> None:
    dispatcher = Dispatcher(threads=1, name="dtest-blocked")
    try:
        cls = pooled(Recorder, dispatcher)
        asker, target = cls.start(), cls.start()
        start = time.monotonic()
        # The asker's handler holds the only thread, so the target never gets a turn.
        outcome = asker.ask(AskOther(target.name, 0.3), timeout=WAIT).get()
        assert outcome.startswith("timed out")
        assert time.monotonic() - start < 5.0
        # Once the thread is free, the target's turn comes: the ask that timed out was
        # dropped unhandled (expired while queued), and the target serves the next one.
        assert target.ask("seen", timeout=WAIT).get() == []
        with pytest.raises(DeadlockError):
            asker.ask(AskSelf(), timeout=WAIT).get()
    finally:
        import llmos.actors as actors

        actors.stop_all(timeout=WAIT)
        assert dispatcher.close(timeout=WAIT)


def test_a_supervised_pooled_actor_restarts_with_its_mailbox_kept(pool: Dispatcher) -> None:
    k = kernel()
    ref = k.spawn(pooled(Worker, pool), name="dtest-worker")
    ref.tell(Add(1))
    ref.tell(Crash("on purpose"))
    for _ in range(5):
        ref.tell(Add(1))  # queued behind the failing tell: handled by the new instance
    assert ref.ask(Get(), timeout=WAIT).get() == 5
    assert ref.statistics().restarts == 1


def test_stop_runs_on_stop_in_a_turn_and_fails_later_asks(pool: Dispatcher) -> None:
    stopped: list[str] = []

    class Stopping(Recorder):
        actor_dispatcher = pool

        def on_stop(self) -> None:
            stopped.append(threading.current_thread().name)

    ref = Stopping.start()
    for n in range(10):
        ref.tell(Note(0, n))
    assert ref.stop(timeout=WAIT)
    assert stopped and stopped[0].startswith("dtest-")
    with pytest.raises(ActorDeadError):
        ref.ask("seen", timeout=WAIT).get()


def test_asyncio_asks_and_posted_replies_reach_a_pooled_actor(pool: Dispatcher) -> None:
    ref = pooled(Recorder, pool).start()
    for n in range(3):
        ref.tell(Note(0, n))

    async def ask() -> Any:
        return await ref.ask_async("seen", timeout=WAIT)

    assert asyncio.run(ask()) == [(0, 0), (0, 1), (0, 2)]
    reply: Reply[Any] = Reply(time.monotonic() + WAIT, ref, WAIT)
    ref.post("overlaps", reply)  # as a transport feeds a decoded ask
    assert reply.get() == 0


def test_a_bounded_pooled_mailbox_refuses_when_full_then_drains(pool: Dispatcher) -> None:
    class Small(Recorder):
        actor_dispatcher = pool
        actor_mailbox_capacity = 3
        actor_when_full = "fail"

    Recorder.GATE.clear()
    Recorder.ENTERED.clear()
    ref = Small.start()
    blocked = ref.ask(Block(), timeout=WAIT)
    assert Recorder.ENTERED.wait(WAIT)
    for n in range(3):
        ref.tell(Note(0, n))
    with pytest.raises(MailboxFull):
        ref.tell(Note(0, 3))
    Recorder.GATE.set()
    assert blocked.get() == "released"
    assert ref.ask("seen", timeout=WAIT).get() == [(0, 0), (0, 1), (0, 2)]


def test_bad_settings_and_a_closed_dispatcher_are_refused() -> None:
    for bad in ({"threads": 0}, {"threads": True}, {"batch": 0}, {"batch": 1.5}):
        with pytest.raises(LlmosError):
            Dispatcher(**bad)
    dispatcher = Dispatcher(threads=1, name="dtest-closed")
    assert dispatcher.close(timeout=WAIT)
    with pytest.raises(LlmosError, match="closed"):
        pooled(Recorder, dispatcher).start()
    assert Dispatcher.shared() is Dispatcher.shared()


def test_a_dialogue_of_chat_agents_runs_on_a_dispatcher(pool: Dispatcher) -> None:
    from llmos.agents import ChatAgent, Dialogue, MaxTurns, run_chat
    from llmos.models import FakeModel

    class PooledAgent(ChatAgent):
        actor_dispatcher = pool

    class PooledDialogue(Dialogue):
        actor_dispatcher = pool

    fake = FakeModel.start(lambda messages: f"point {len(messages)}", name="dtest-fake")
    ann = PooledAgent.start(fake, "You are Ann.", name="dtest-ann")
    bob = PooledAgent.start(fake, "You are Bob.", name="dtest-bob")
    before = {t.name for t in threading.enumerate()}
    start = time.monotonic()
    result = run_chat(
        [ann, bob],
        "Tea?",
        chat_class=PooledDialogue,
        termination=MaxTurns(20),
        printer=None,
        timeout=30,
    )
    assert len(result.utterances) == 20
    assert [u.speaker for u in result.utterances[:4]] == ["dtest-ann", "dtest-bob"] * 2
    assert time.monotonic() - start < 10.0
    started = {t.name for t in threading.enumerate()} - before
    assert all(not name.startswith("llmos:") for name in started), started


def test_a_chat_on_a_one_thread_dispatcher_gets_its_descriptions_without_waiting() -> None:
    """Describing the participants never blocks the chat's thread: on one thread shared with
    them, a blocking chat would wait out the Describe timeout (5 s) and get no descriptions."""
    from llmos.agents import ChatAgent, GroupChat, MaxTurns, SelectionContext, run_chat
    from llmos.models import FakeModel

    single = Dispatcher(threads=1, batch=8, name="dtest-one")
    seen: list[dict[str, str]] = []

    def first_in_order(ctx: SelectionContext) -> str:
        seen.append(dict(ctx.descriptions))
        return ctx.candidates[(ctx.turn - 1) % len(ctx.candidates)]

    class OneAgent(ChatAgent):
        actor_dispatcher = single

    class OneChat(GroupChat):
        actor_dispatcher = single

    try:
        fake = FakeModel.start(lambda messages: f"point {len(messages)}", name="dtest-fake1")
        ann = OneAgent.start(fake, "You are Ann.", name="dtest-ann1", description="tea lover")
        bob = OneAgent.start(fake, "You are Bob.", name="dtest-bob1", description="coffee fan")
        start = time.monotonic()
        result = run_chat(
            [ann, bob],
            "Tea?",
            chat_class=OneChat,
            selector=first_in_order,
            termination=MaxTurns(4),
            printer=None,
            timeout=30,
        )
        assert time.monotonic() - start < 4.0
        assert len(result.utterances) == 4
        assert seen[0] == {"dtest-ann1": "tea lover", "dtest-bob1": "coffee fan"}
    finally:
        import llmos.actors as actors

        actors.stop_all(timeout=WAIT)
        assert single.close(timeout=WAIT)
