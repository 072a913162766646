"""The core's public extension points: Reply.add_done_callback and Actor.actor_dispatch."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from llmos.actors import (
    UNHANDLED,
    Actor,
    ActorDeadError,
    ActorError,
    AskTimeout,
    MailboxFull,
    Reply,
    find,
    handler,
    message,
)

WAIT = 10.0


@message("htest.Echo")
class Echo:
    text: str


@message("htest.Hold")
class Hold:
    pass


@message("htest.Seen")
class Seen:
    pass


class Echoer(Actor):
    def __init__(
        self, gate: threading.Event | None = None, entered: threading.Event | None = None
    ) -> None:
        super().__init__()
        self.gate = gate
        self.entered = entered

    @handler(Echo)
    def echo(self, msg: Echo) -> str:
        return msg.text

    @handler(Hold)
    def hold(self, msg: Hold) -> None:
        if self.entered is not None:
            self.entered.set()
        assert self.gate is not None and self.gate.wait(WAIT)


def test_a_done_callback_runs_once_in_the_answering_actors_thread() -> None:
    gate = threading.Event()
    ref = Echoer.start(gate, name="echoer")
    ref.tell(Hold())
    reply = ref.ask(Echo("hi"), timeout=WAIT)
    calls: list[tuple[Reply, str]] = []
    ran = threading.Event()

    def done(r: Reply) -> None:
        calls.append((r, threading.current_thread().name))
        ran.set()

    reply.add_done_callback(done)
    assert not ran.is_set()
    gate.set()
    assert ran.wait(WAIT)
    assert calls == [(reply, "llmos:echoer")]
    assert reply.get() == "hi"


def test_a_done_callback_on_a_settled_reply_runs_at_once_in_the_callers_thread() -> None:
    reply = Reply(0.0)
    reply.set_result(3)
    threads: list[str] = []
    reply.add_done_callback(lambda r: threads.append(threading.current_thread().name))
    assert threads == [threading.current_thread().name]


def test_done_callbacks_see_errors_and_timeouts_and_what_they_raise_is_contained() -> None:
    failed = Reply(1e18)
    outcomes: list[Any] = []

    def read(r: Reply) -> None:
        try:
            outcomes.append(r.get())
        except Exception as exc:
            outcomes.append(type(exc))

    def broken(r: Reply) -> None:
        raise KeyboardInterrupt("a callback's own problem")

    failed.add_done_callback(broken)
    failed.add_done_callback(read)
    assert failed.set_exception(ActorDeadError("gone"))  # the settling thread goes on
    expired = Reply(0.0)
    expired.add_done_callback(read)
    expired.expire()
    assert outcomes == [ActorDeadError, AskTimeout]


def test_a_callback_added_while_the_reply_settles_runs_exactly_once() -> None:
    for _ in range(200):
        reply = Reply(1e18)
        calls: list[Reply] = []
        settle = threading.Thread(target=reply.set_result, args=(1,))
        settle.start()
        reply.add_done_callback(calls.append)
        settle.join(WAIT)
        assert calls == [reply]


class Audited(Echoer):
    """Wraps every message: records it, refuses Hold, and counts refusals."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, bool, str]] = []

    def actor_dispatch(self, message: Any) -> Any:
        self.seen.append(
            (type(message).__name__, self.actor_asked, self.actor_handler_name(message))
        )
        if isinstance(message, Hold):
            return UNHANDLED
        return super().actor_dispatch(message)

    @handler(Echo)
    def echo(self, msg: Echo) -> str:
        return f"{msg.text} ({len(self.seen)} seen)"

    @handler(Seen)
    def get_seen(self, msg: Seen) -> list[tuple[str, bool, str]]:
        return self.seen


def test_a_subclass_wraps_every_message_through_actor_dispatch() -> None:
    ref = Audited.start(name="audited")
    ref.tell(Echo("told"))
    assert ref.ask(Echo("asked"), timeout=WAIT).get() == "asked (2 seen)"
    with pytest.raises(ActorError, match="has no handler for Hold"):
        ref.ask(Hold(), timeout=WAIT).get()
    assert ref.ask(Echo("x"), timeout=WAIT).get() == "x (4 seen)"
    assert ref.ask(Seen(), timeout=WAIT).get()[:4] == [
        ("Echo", False, "echo"),
        ("Echo", True, "echo"),
        ("Hold", True, "hold"),
        ("Echo", True, "echo"),
    ]


def test_a_layer_above_feeds_an_actor_through_find_and_post() -> None:
    assert find("poster") is None
    gate, entered = threading.Event(), threading.Event()
    Echoer.start(gate, entered, name="poster", capacity=1, when_full="block")
    ref = find("poster")
    assert ref is not None
    ref.tell(Hold())
    assert entered.wait(WAIT)  # the actor holds; its one-message mailbox is empty
    answers: list[Any] = []
    reply = Reply(time.monotonic() + WAIT, ref, WAIT)
    reply.add_done_callback(lambda r: answers.append((r.exception(), r.get())))
    ref.post(Echo("posted"), reply, sent_at=time.monotonic())
    with pytest.raises(MailboxFull):
        ref.post(Echo("no room"))  # never waits, whatever the policy
    gate.set()
    assert reply.get() == "posted" and answers == [(None, "posted")]
    assert isinstance(ref.stop(block=False), bool)  # asked to stop; it need not be done yet
    assert ref.stop(timeout=WAIT)
    with pytest.raises(ActorDeadError):
        ref.post(Echo("late"))
