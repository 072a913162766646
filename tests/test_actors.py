"""The actor core: typed dispatch, tell/ask, timeouts, dead actors, messages, mailboxes, asyncio."""

from __future__ import annotations

import asyncio
import importlib.metadata
import pydoc
import queue
import threading
import time
from typing import Any

import pykka
import pytest

import llmos.actors as actors
import llmos.actors.lowlevel as lowlevel
from llmos.actors import (
    Actor,
    ActorDeadError,
    AskTimeout,
    DeadlockError,
    MailboxFull,
    MessageError,
    handler,
    message,
)


@message("test.Add")
class Add:
    a: int
    b: int


@message("test.Hold")
class Hold:
    """Blocks the actor until the test sets the event (named in a process-wide table)."""

    key: str


@message("test.Note")
class Note:
    text: str


GATES: dict[str, threading.Event] = {}


class Calc(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    @handler(Add)
    def add(self, msg: Add) -> int:
        return msg.a + msg.b

    @handler
    def note(self, msg: Note) -> None:
        self.notes.append(msg.text)

    @handler(Hold)
    def hold(self, msg: Hold) -> str:
        assert GATES[msg.key].wait(10), "test gate never opened"
        return "released"

    def on_receive(self, message: Any) -> Any:
        if message == "notes":
            return list(self.notes)
        if isinstance(message, dict) and message.get("op") == "boom":
            raise ValueError("boom requested")
        return super().on_receive(message)


def gate(key: str) -> threading.Event:
    GATES[key] = threading.Event()
    return GATES[key]


def test_typed_dispatch_and_fallback() -> None:
    ref = Calc.start(name="calc")
    assert ref.ask(Add(2, 3), timeout=2).get() == 5
    ref.tell(Note("first"))
    ref.tell(Note("second"))
    assert ref.ask("notes", timeout=2).get() == ["first", "second"]
    # No handler and not taken by on_receive: the ask fails with a clear ActorError.
    with pytest.raises(actors.ActorError, match="no handler for int"):
        ref.ask(42, timeout=2).get()


def test_subclass_inherits_and_overrides_handlers() -> None:
    class Doubler(Calc):
        @handler(Add)
        def add(self, msg: Add) -> int:
            return 2 * (msg.a + msg.b)

    ref = Doubler.start()
    assert ref.ask(Add(1, 1), timeout=2).get() == 4
    ref.tell(Note("kept"))
    assert ref.ask("notes", timeout=2).get() == ["kept"]


def test_ask_error_goes_back_to_asker_and_actor_keeps_serving() -> None:
    ref = Calc.start()
    with pytest.raises(ValueError, match="boom requested"):
        ref.ask({"op": "boom"}, timeout=2).get()
    assert ref.ask(Add(1, 2), timeout=2).get() == 3
    stats = ref.statistics()
    assert stats.failed == 1 and stats.processed == 2 and stats.restarts == 0


def test_unsupervised_tell_failure_stops_actor_and_fails_queued_asks() -> None:
    ref = Calc.start(name="fragile")
    release = gate("fragile")
    held = ref.ask(Hold("fragile"), timeout=5)
    ref.tell({"op": "boom"})  # fails the actor: it has no supervisor
    queued = ref.ask(Add(1, 1), timeout=5)
    ref.tell(Note("never handled"))
    release.set()
    assert held.get() == "released"
    with pytest.raises(ActorDeadError):
        queued.get()
    letters = actors.dead_letters("fragile")
    reasons = [d.reason for d in letters]
    assert any(r.startswith("failed") for r in reasons)
    assert any(d.message == Note("never handled") for d in letters)
    assert not ref.is_alive()


def test_ask_timeout_raises_quickly() -> None:
    ref = Calc.start()
    release = gate("slow")
    ref.tell(Hold("slow"))
    started = time.monotonic()
    with pytest.raises(AskTimeout):
        ref.ask(Add(1, 1), timeout=0.2).get()
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5
    assert isinstance(AskTimeout("x"), TimeoutError)
    release.set()


def test_shorter_wait_leaves_the_ask_pending() -> None:
    ref = Calc.start()
    release = gate("pending")
    reply = ref.ask(Hold("pending"), timeout=5)
    with pytest.raises(AskTimeout):
        reply.get(timeout=0.05)
    release.set()
    assert reply.get() == "released"


def test_expired_ask_is_not_executed() -> None:
    ref = Calc.start(name="expiry")
    release = gate("expiry")
    ref.tell(Hold("expiry"))
    stale = ref.ask(Note("stale"), timeout=0.05)
    with pytest.raises(AskTimeout):
        stale.get()
    release.set()
    assert ref.ask("notes", timeout=2).get() == []
    assert any(d.reason.startswith("expired") for d in actors.dead_letters("expiry"))


class Forwarder(Actor):
    """Asks ``target`` for each note and keeps the reply without waiting for it."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.target = target
        self.replies: list[Any] = []

    @handler
    def forward(self, msg: Note) -> None:
        self.replies.append(self.target.ask(msg, timeout=10))


def test_an_ask_whose_asking_actor_stopped_is_not_started() -> None:
    ref = Calc.start(name="abandon-target")
    release = gate("abandon")
    ref.tell(Hold("abandon"))
    asker = Forwarder.start(ref, name="abandon-asker")
    asker.ask(Note("orphan"), timeout=2).get()  # its ask now waits behind the Hold
    asker.stop()
    release.set()
    assert ref.ask("notes", timeout=2).get() == []
    letters = actors.dead_letters("abandon-target")
    assert [d.reason for d in letters if d.message == Note("orphan")] == [
        "abandoned: its asker gave up on it"
    ]
    ref.stop()


def test_ask_to_stopped_actor_raises_dead() -> None:
    ref = Calc.start(name="gone")
    assert ref.stop(timeout=5)
    started = time.monotonic()
    with pytest.raises(ActorDeadError, match="gone"):
        ref.ask(Add(1, 1), timeout=5)
    with pytest.raises(ActorDeadError):
        ref.tell(Note("x"))
    assert time.monotonic() - started < 0.5


def test_ask_queued_behind_stop_fails_dead() -> None:
    ref = Calc.start()
    release = gate("behind-stop")
    ref.tell(Hold("behind-stop"))
    ref.stop(timeout=0.01)  # queued behind Hold: the actor is still alive
    late = ref.ask(Add(1, 1), timeout=5)
    release.set()
    with pytest.raises(ActorDeadError):
        late.get()


def test_self_ask_blocking_raises_deadlock() -> None:
    class Selfish(Actor):
        def on_receive(self, message: Any) -> Any:
            if message == "self":
                return self.actor_ref.ask("inner", timeout=5).get()
            return "inner answered"

    ref = Selfish.start()
    started = time.monotonic()
    with pytest.raises(DeadlockError):
        ref.ask("self", timeout=5).get()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "bad",
    [object(), {"k": {1.5: "float key"}}, [1, 2, {3}], 2**70, Add(1, object())],  # type: ignore[arg-type]
    ids=["object", "float-key", "set", "big-int", "field"],
)
def test_unencodable_message_is_refused(bad: Any) -> None:
    ref = Calc.start()
    with pytest.raises(MessageError):
        ref.tell(bad)
    with pytest.raises(MessageError):
        ref.ask(bad, timeout=1)
    assert ref.statistics().processed == 0


def test_too_deep_message_is_refused() -> None:
    deep: Any = "leaf"
    for _ in range(lowlevel.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(MessageError, match="deeper"):
        lowlevel.check_message(deep)


def test_plain_data_and_refs_are_messages() -> None:
    a = Calc.start()
    lowlevel.check_message({"to": a, "path": ["x", 1, 2.5, None, b"raw", (1, 2)], 3: True})


def test_message_class_is_frozen_and_named() -> None:
    msg = Add(1, 2)
    with pytest.raises(AttributeError):
        msg.a = 5  # type: ignore[misc]
    assert actors.wire_name(Add) == "test.Add"
    assert lowlevel.message_class("test.Add") is Add
    assert repr(msg) == "Add(a=1, b=2)"
    with pytest.raises(actors.UnknownMessageType):
        lowlevel.message_class("test.Nope")
    with pytest.raises(MessageError, match="already used"):

        @message("test.Add")
        class Other:
            x: int


def test_bounded_mailbox_fail_policy() -> None:
    ref = Calc.start(capacity=2, when_full="fail")
    release = gate("full-fail")
    ref.tell(Hold("full-fail"))  # taken off the queue at once by the actor...
    deadline = time.monotonic() + 5
    while ref.statistics().in_flight == 0:  # ...wait until it is being handled
        assert time.monotonic() < deadline
        time.sleep(0.001)
    ref.tell(Note("1"))
    ref.tell(Note("2"))
    with pytest.raises(MailboxFull):
        ref.tell(Note("3"))
    assert ref.stop(timeout=0.01) is False  # control messages are never refused
    release.set()
    assert ref.stop(timeout=5)


def test_bounded_mailbox_block_policy_waits_then_fails() -> None:
    class Tight(Calc):
        actor_mailbox_capacity = 1
        actor_put_timeout = 0.2

    ref = Tight.start()
    release = gate("full-block")
    ref.tell(Hold("full-block"))
    while ref.statistics().in_flight == 0:
        time.sleep(0.001)
    ref.tell(Note("fills it"))
    started = time.monotonic()
    with pytest.raises(MailboxFull):
        ref.tell(Note("blocked"))
    assert time.monotonic() - started >= 0.19
    # A blocked sender gets in as soon as there is room.
    sender = threading.Thread(target=ref.tell, args=(Note("gets in"),))
    sender.start()
    release.set()
    sender.join(5)
    assert ref.ask("notes", timeout=5).get() == ["fills it", "gets in"]


def test_registry_and_names() -> None:
    ref = Calc.start(name="unique")
    assert actors.get("unique") == ref
    with pytest.raises(actors.NameTaken):
        Calc.start(name="unique")
    with pytest.raises(ActorDeadError):
        actors.get("nobody")
    ref.stop(timeout=5)
    again = Calc.start(name="unique")  # the name is free once stopped
    assert ref.ask(Add(1, 1), timeout=2).get() == 2  # the old ref reaches the new actor
    assert again == ref


def test_statistics_record() -> None:
    ref = Calc.start()
    for i in range(10):
        ref.tell(Add(i, i))
    ref.ask(Add(0, 0), timeout=2).get()
    stats = ref.statistics()
    assert stats.processed == 11 and stats.failed == 0 and stats.mailbox_depth == 0
    assert stats.busy_seconds > 0 and stats.last_latency > 0 and stats.mean_latency > 0
    assert stats.load == 0
    with pytest.raises(AttributeError):
        stats.processed = 0  # type: ignore[misc]
    # Only the ask is in the ask latency histogram: one count, in one bucket, its seconds summed.
    assert len(stats.ask_latency_counts) == len(actors.ASK_LATENCY_BOUNDS) + 1
    assert sum(stats.ask_latency_counts) == 1 and 0 < stats.ask_latency_sum < 2


def test_death_watch_delivers_terminated() -> None:
    class Watcher(Actor):
        def __init__(self, seen: list[Any], done: threading.Event) -> None:
            super().__init__()
            self.seen, self.done = seen, done

        @handler(actors.Terminated)
        def terminated(self, msg: actors.Terminated) -> None:
            self.seen.append(msg)
            self.done.set()

        def on_receive(self, message: Any) -> Any:
            self.watch(actors.get(message))

    seen: list[Any] = []
    done = threading.Event()
    target = Calc.start(name="watched")
    watcher = Watcher.start(seen, done)
    watcher.ask("watched", timeout=2).get()
    target.stop(timeout=5)
    assert done.wait(5)
    assert seen[0].ref == target and seen[0].reason == "stopped"


def test_system_exit_fails_only_that_actor() -> None:
    class Exiter(Actor):
        def on_receive(self, message: Any) -> Any:
            raise SystemExit(3)

    bystander = Calc.start()
    ref = Exiter.start()
    ref.tell("exit")
    assert ref.stop(timeout=5) or not ref.is_alive()
    assert bystander.ask(Add(1, 1), timeout=2).get() == 2


def test_an_actor_is_a_pykka_actor_that_carries_only_what_runs() -> None:
    assert importlib.metadata.version("pykka").startswith("4.")
    ref = Calc.start(name="lean")
    instance = ref._cell.instance
    assert isinstance(instance, Calc) and isinstance(instance, pykka.ThreadingActor)
    assert repr(instance) == "<Calc lean>"
    for pykka_state in ("actor_urn", "actor_inbox", "actor_stopped"):
        assert not hasattr(instance, pykka_state)
    text = pydoc.render_doc(Calc, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "Build the instance" in text
    pykka_lines = [line for line in text.splitlines() if "pykka" in line.lower()]
    assert all(
        "pykka._" in line
        or "pykka.ThreadingActor" in line
        or "from pykka" in line
        or "llmos takes from pykka" in line
        or "pykka's" in line
        for line in pykka_lines
    ), pykka_lines


async def test_ask_async_100_concurrent_never_blocks_loop() -> None:
    ref = Calc.start()
    release = gate("async")
    ref.tell(Hold("async"))  # every ask waits behind this one
    ticks = 0
    stop_ticking = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop_ticking.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    tick_task = asyncio.create_task(ticker())
    asks = [asyncio.create_task(ref.ask_async(Add(i, 1), timeout=10)) for i in range(100)]
    before = ticks
    # While all 100 asks are pending, the loop must keep running the ticker.
    while ticks < before + 20:
        await asyncio.sleep(0.001)
    assert not any(t.done() for t in asks)
    release.set()
    results = await asyncio.gather(*asks)
    stop_ticking.set()
    await tick_task
    assert results == [i + 1 for i in range(100)]


async def test_ask_async_timeout_and_dead() -> None:
    ref = Calc.start()
    release = gate("async-timeout")
    ref.tell(Hold("async-timeout"))
    with pytest.raises(AskTimeout):
        await ref.ask_async(Add(1, 1), timeout=0.1)
    release.set()
    assert await ref.stop_async(timeout=5)
    with pytest.raises(ActorDeadError):
        await ref.ask_async(Add(1, 1), timeout=1)


async def test_ask_async_on_a_running_loop_asks_at_once_and_gather_makes_no_task_per_ask() -> None:
    ref = Calc.start()
    release = gate("async-eager")
    ref.tell(Hold("async-eager"))
    tasks = len(asyncio.all_tasks())
    asks = [ref.ask_async(Add(i, 1), timeout=10) for i in range(50)]
    # Queued before anything awaits them (the Hold may still be queued too).
    assert ref.statistics().mailbox_depth >= 50
    assert all(isinstance(a, lowlevel.AskFuture) for a in asks)
    gathered = asyncio.gather(*asks)
    assert len(asyncio.all_tasks()) == tasks  # gather took the futures as they are
    release.set()
    assert await gathered == [i + 1 for i in range(50)]


def test_ask_async_is_taken_by_asyncio_run_create_task_and_wait_for() -> None:
    ref = Calc.start()
    # No loop runs here: it asks when asyncio.run's loop awaits it.
    assert asyncio.run(ref.ask_async(Add(1, 2), timeout=5)) == 3

    async def main() -> tuple[int, int]:
        task = asyncio.create_task(ref.ask_async(Add(2, 2), timeout=5))
        waited = await asyncio.wait_for(ref.ask_async(Add(3, 3), timeout=5), 5)
        return await task, waited

    assert asyncio.run(main()) == (4, 6)


async def test_ask_async_errors_come_out_of_the_await_and_a_cancelled_wait_leaves_the_ask() -> None:
    ref = Calc.start()
    refused = ref.ask_async(object(), timeout=5)  # no wire form: raised by the await, not here
    with pytest.raises(MessageError):
        await refused
    release = gate("async-cancel")
    ref.tell(Hold("async-cancel"))
    waiting = asyncio.create_task(ref.ask_async(Note("kept"), timeout=10))
    await asyncio.sleep(0)  # the task is now awaiting the ask's future
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    assert await ref.ask_async("notes", timeout=5) == ["kept"]


async def test_ask_async_to_a_full_mailbox_waits_off_the_loop_or_fails_at_the_await() -> None:
    class Tight(Calc):
        actor_mailbox_capacity = 1
        actor_put_timeout = 5.0

    entered = threading.Event()

    class Marked(Tight):
        @handler(Hold)
        def hold(self, msg: Hold) -> str:
            entered.set()
            return super().hold(msg)

    ref = Marked.start()
    release = gate("async-full")
    ref.tell(Hold("async-full"))
    assert entered.wait(5)
    ref.tell(Note("fills it"))
    waiting = ref.ask_async(Add(1, 1), timeout=10)  # no room: it waits in a worker thread
    assert isinstance(waiting, lowlevel.AskFuture)
    ticks = 0
    while ticks < 20:  # the loop keeps running meanwhile
        ticks += 1
        await asyncio.sleep(0.001)
    assert not waiting.done()
    release.set()
    assert await waiting == 2

    entered.clear()
    failing = Marked.start(capacity=1, when_full="fail")
    release_failing = gate("async-full-fail")
    failing.tell(Hold("async-full-fail"))
    assert entered.wait(5)
    failing.tell(Note("fills it"))
    refused = failing.ask_async(Add(1, 1), timeout=10)
    release_failing.set()
    with pytest.raises(MailboxFull):
        await refused


async def test_a_task_cancelled_before_it_awaited_an_ask_cancels_its_future() -> None:
    # Nobody will read the answer: the future is cancelled (so a failing ask logs no
    # "exception was never retrieved"), and the ask itself still runs.
    ref = Calc.start()
    pending = ref.ask_async(Note("still runs"), timeout=10)
    task = asyncio.create_task(pending)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(pending, lowlevel.AskFuture) and pending.cancelled()
    assert await ref.ask_async("notes", timeout=5) == ["still runs"]


def test_invalid_timeouts_refused() -> None:
    ref = Calc.start()
    for bad in (0, -1, float("inf"), float("nan"), "1"):
        with pytest.raises(actors.LlmosError):
            ref.ask(Add(1, 1), timeout=bad)  # type: ignore[arg-type]


def test_stop_all_leaves_no_thread() -> None:
    refs = [Calc.start() for _ in range(20)]
    for r in refs:
        r.tell(Note("x"))
    actors.stop_all(timeout=10)
    assert not [t for t in threading.enumerate() if t.name.startswith("llmos:")]
    assert actors.running() == []
    assert all(not r.is_alive() for r in refs)


def test_public_names() -> None:
    public = {n for n in dir(actors) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(actors, n)).__name__ == "module"}
    assert set(actors.__all__) == public - modules


def test_deferred_reply_answers_later() -> None:
    class Batcher(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.waiting: list[tuple[Any, int]] = []

        def on_receive(self, message: Any) -> Any:
            if message == "flush":
                for reply, n in self.waiting:
                    reply.set_result(n * 10)
                self.waiting.clear()
                return len(self.waiting)
            if isinstance(message, int):
                self.waiting.append((self.actor_defer_reply(), message))
                return "ignored"
            if message == "tell-defer":
                self.actor_defer_reply()
            return None

    ref = Batcher.start()
    first, second = ref.ask(1, timeout=5), ref.ask(2, timeout=5)
    with pytest.raises(AskTimeout):
        first.get(timeout=0.05)  # deferred: no answer yet
    ref.tell("flush")
    assert (first.get(), second.get()) == (10, 20)
    ref.tell("tell-defer")  # a tell cannot be deferred: the actor fails (unsupervised: stops)
    assert ref._cell.stopped_event.wait(5)


async def test_ask_async_timeouts_of_mixed_lengths_each_expire_at_their_own_deadline() -> None:
    # The loop keeps one timer for all its pending asks: a short ask made after long ones
    # must still time out on time, and the long ones must not be expired early with it.
    ref = Calc.start()
    release = gate("async-mixed")
    ref.tell(Hold("async-mixed"))
    long_asks = [asyncio.create_task(ref.ask_async(Add(i, 1), timeout=30)) for i in range(50)]
    started = time.monotonic()
    with pytest.raises(AskTimeout):
        await ref.ask_async(Add(0, 0), timeout=0.2)
    waited = time.monotonic() - started
    assert 0.15 <= waited < 2.0
    assert not any(t.done() for t in long_asks)
    release.set()
    assert await asyncio.gather(*long_asks) == [i + 1 for i in range(50)]


async def test_ask_async_answers_share_wake_ups_and_leave_nothing_behind() -> None:
    # Answers that arrive together wake the loop once for many, not once each; and an
    # answered ask no longer waits for its deadline on the loop.
    from llmos.actors._async_reply import LoopLink

    loop = asyncio.get_running_loop()
    wakes = 0
    real = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal wakes
        wakes += 1
        return real(callback, *args, **kwargs)

    ref = Calc.start()
    release = gate("async-batch")
    ref.tell(Hold("async-batch"))  # the 1,000 answers then come in one burst
    asks = [asyncio.create_task(ref.ask_async(Add(i, 1), timeout=30)) for i in range(1000)]
    await asyncio.sleep(0)
    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    try:
        release.set()
        assert await asyncio.gather(*asks) == [i + 1 for i in range(1000)]
    finally:
        del loop.call_soon_threadsafe
    assert 1 <= wakes < 100
    assert LoopLink.of(loop).pending() == 0


@message("test.Three")
class Three:
    a: Any
    b: Any = None
    c: Any = None


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ((1, "s", 2.5), True),
        ((None, True, b"raw"), True),
        ((-(2**63), 2**64 - 1, 0), True),
        ((1, 2, 2**64), False),  # the last field alone is out of range
        ((1, -(2**63) - 1, 2), False),
        ((1, "s", {3}), False),
        ((object(), 1, 2), False),
        ((1, [1, 2], {"k": (1, b"x")}), True),  # containers take the full walk, and pass
        ((1, [1, {2.5: "float key"}], 2), False),
    ],
)
def test_wire_check_of_message_fields(fields: tuple[Any, ...], ok: bool) -> None:
    msg = Three(*fields)
    if ok:
        lowlevel.check_message(msg)
    else:
        with pytest.raises(MessageError):
            lowlevel.check_message(msg)


def test_an_answer_after_its_loop_closed_is_dropped_quietly() -> None:
    # asyncio.run() closes its loop when the coroutine ends: an ask still pending then is
    # answered into a closed loop, which must neither raise in the actor nor keep it.
    ref = Calc.start()
    release = gate("closed-loop")
    ref.tell(Hold("closed-loop"))

    async def ask_and_leave() -> asyncio.Task[Any]:
        task = asyncio.create_task(ref.ask_async(Add(1, 1), timeout=30))
        await asyncio.sleep(0)
        return task

    asyncio.run(ask_and_leave())  # cancels the pending ask's task, closes the loop
    release.set()
    assert ref.ask(Add(2, 2), timeout=5).get() == 4  # the actor answered both and goes on
    assert ref.statistics().failed == 0


@pytest.mark.parametrize("capacity", [None, 2])
def test_a_mailbox_get_waits_at_most_its_timeout(capacity: int | None) -> None:
    box = lowlevel.Mailbox(capacity)
    box.put(lowlevel.envelope("first"))
    assert box.get(timeout=1)[0] == "first"
    with pytest.raises(queue.Empty):
        box.get(timeout=0.05)
    box.put(lowlevel.envelope("second"))
    box.put(lowlevel.envelope("third"))
    assert [box.get()[0], box.get(True, 1)[0]] == ["second", "third"]
