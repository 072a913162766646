"""Actors and helpers shared by the kernel, supervision and pool tests (no tests in here).

Waiting is always on events with a bound: a handler blocks on a gate the test opens, and tells
the test through ``entered`` that it is inside the handler.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import Any

import pytest

from llmos.actors import Actor, ActorRef, Terminated, handler, message
from llmos.kernel import Supervisor, Timer

WAIT = 10.0  # upper bound for every wait in these tests; none should come close

_serials = itertools.count(1)
GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}
BUILT: list[tuple[str, int, float]] = []  # (actor name, serial, clock time) at construction
NOTED: collections.defaultdict[str, threading.Event] = collections.defaultdict(threading.Event)


def gate(key: str) -> threading.Event:
    """A gate a Hold(key) message blocks on until the test sets it."""
    GATES[key] = threading.Event()
    ENTERED[key] = threading.Event()
    return GATES[key]


def entered(key: str) -> None:
    """Wait until an actor is inside Hold(key)."""
    assert ENTERED[key].wait(WAIT), f"no actor entered Hold({key!r})"


@message("ktest.Crash")
class Crash:
    why: str = "boom"


@message("ktest.Exit")
class Exit:
    code: int | None = None


@message("ktest.Hold")
class Hold:
    key: str


@message("ktest.Add")
class Add:
    n: int = 1


@message("ktest.Get")
class Get:
    pass


@message("ktest.Serial")
class Serial:
    pass


@message("ktest.Fail")
class Fail:
    pass


@message("ktest.Work")
class Work:
    seconds: float
    key: str = ""


@message("ktest.AskSelf")
class AskSelf:
    pass


@message("ktest.Watch")
class Watch:
    ref: Any


class Worker(Actor):
    """Counts Adds; crashes, exits, blocks or works on request; knows its instance serial."""

    clock: Timer | None = None

    def __init__(self, fail_start: int = 0) -> None:
        super().__init__()
        self.serial = next(_serials)
        self.total = 0
        self.fail_start = fail_start
        now = self.clock.now() if self.clock is not None else time.monotonic()
        cell = self._llmos_cell
        BUILT.append((cell.name if cell is not None else "?", self.serial, now))

    def on_start(self) -> None:
        if self.fail_start > len([b for b in BUILT if b[0] == self.actor_name]) - 1:
            raise RuntimeError("on_start failed on purpose")

    @handler(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(msg.why)

    @handler(Exit)
    def exit(self, msg: Exit) -> None:
        raise SystemExit(msg.code)

    @handler(Hold)
    def hold(self, msg: Hold) -> str:
        ENTERED[msg.key].set()
        assert GATES[msg.key].wait(WAIT), "test gate never opened"
        return self.actor_name

    @handler(Add)
    def add(self, msg: Add) -> int:
        self.total += msg.n
        return self.total

    @handler(Get)
    def get(self, msg: Get) -> int:
        return self.total

    @handler(Serial)
    def get_serial(self, msg: Serial) -> int:
        return self.serial

    @handler(Fail)
    def fail(self, msg: Fail) -> None:
        raise ValueError("the ask failed on purpose")

    @handler(Work)
    def work(self, msg: Work) -> str:
        time.sleep(msg.seconds)  # the task's own duration (simulated work), not a wait for state
        return self.actor_name

    @handler(AskSelf)
    def ask_self(self, msg: AskSelf) -> Any:
        return self.actor_ref.ask(Get(), timeout=WAIT).get()


class Watcher(Actor):
    """Watches the refs it is told about and keeps the Terminated notes it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[Terminated] = []
        self.got = threading.Event()

    @handler(Watch)
    def watch_ref(self, msg: Watch) -> None:
        self.watch(msg.ref)

    @handler(Terminated)
    def terminated(self, msg: Terminated) -> None:
        self.notes.append(msg)
        self.got.set()
        NOTED[msg.ref.name].set()

    @handler(Get)
    def get(self, msg: Get) -> list[tuple[str, str]]:
        return [(n.ref.name, n.reason) for n in self.notes]


class RecordingSupervisor(Supervisor):
    """A supervisor that keeps every decision it makes, for tests to wait on."""

    DECISIONS: list[tuple[str, str, BaseException, str]] = []
    DECIDED = threading.Condition()

    def on_child_failure(self, name: str, error: BaseException, action: str) -> None:
        with self.DECIDED:
            self.DECISIONS.append((self.actor_name, name, error, action))
            self.DECIDED.notify_all()

    @classmethod
    def wait_for(cls, sup: str, action: str, count: int = 1) -> list[tuple[str, BaseException]]:
        """Wait until supervisor ``sup`` made ``count`` decisions of kind ``action``."""

        def found() -> list[tuple[str, BaseException]]:
            return [(n, e) for s, n, e, a in cls.DECISIONS if s == sup and a == action]

        with cls.DECIDED:
            assert cls.DECIDED.wait_for(lambda: len(found()) >= count, WAIT), (
                f"{sup} made no {count} {action!r} decision(s): {cls.DECISIONS}"
            )
            return found()


def serial(ref: ActorRef) -> int:
    value: int = ref.ask(Serial(), timeout=WAIT).get()
    return value


def built_names() -> list[str]:
    return [b[0] for b in BUILT]


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
    """Each test starts with empty construction and decision records (import it to use it)."""
    BUILT.clear()
    NOTED.clear()
    RecordingSupervisor.DECISIONS.clear()
