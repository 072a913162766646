"""Total containment: a BaseException from any user code fails only its own actor.

Each hook an actor's author writes (constructor on start and on restart, ``on_start``,
``on_stop``, ``on_failure``, ``pre_restart``, ``post_restart``, a handler) raises each kind of
BaseException that is not an ordinary Exception. In every case: the supervisor hears of it,
a pending ask settles at once (answered by the restarted instance, or failed with a typed
error), no actor is left ``running`` without a thread, the kernel and a bystander still
answer, and ``stop_all()`` returns within its bound. Every case runs twice: with actors that own
a thread, and with actors run in turns by a :class:`~llmos.actors.Dispatcher`.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, ClassVar

import pytest
from test_kernel_support import Add, Get, RecordingSupervisor, Worker

import llmos.actors as actors
from llmos.actors import (
    Actor,
    ActorDeadError,
    ActorError,
    Dispatcher,
    LlmosError,
    handler,
    message,
)
from llmos.actors._registry import live_cells
from llmos.actors.lowlevel import Cell
from llmos.kernel import NodeStatus, kernel

WAIT = 10.0  # bound on every wait; none should come close
LONG = 60.0  # the pending ask's own timeout: settling must not wait for it


class Custom(BaseException):
    """A BaseException of the user's own, neither Exception nor a system exit."""


KINDS: list[type[BaseException]] = [SystemExit, KeyboardInterrupt, Custom]
HOOKS = [
    "init_start",
    "init_restart",
    "on_start",
    "on_stop",
    "on_failure",
    "pre_restart",
    "post_restart",
    "handler",
]


@message("ctest.Crash")
class Crash:
    """A tell whose handler raises (ValueError, or the planned kind for the handler hook)."""


@message("ctest.Ping")
class Ping:
    pass


class Hooked(Actor):
    """Raises PLAN[name] = (hook, kind) from that hook; counts its builds per name."""

    PLAN: ClassVar[dict[str, tuple[str, type[BaseException]]]] = {}
    BUILDS: ClassVar[collections.Counter[str]] = collections.Counter()

    def __init__(self, name: str) -> None:
        super().__init__()
        self.hook, self.kind = self.PLAN[name]
        self.BUILDS[name] += 1
        builds = self.BUILDS[name]
        if (self.hook == "init_start" and builds == 1) or (
            self.hook == "init_restart" and builds > 1
        ):
            raise self.kind(f"constructor build {builds} raised on purpose")

    def _raise_in(self, hook: str) -> None:
        if self.hook == hook:
            raise self.kind(f"{hook} raised on purpose")

    def on_start(self) -> None:
        self._raise_in("on_start")

    def on_stop(self) -> None:
        self._raise_in("on_stop")

    def on_failure(self, *exc_info: Any) -> None:
        self._raise_in("on_failure")

    def pre_restart(self, error: BaseException) -> Any:
        self._raise_in("pre_restart")
        return None

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        self._raise_in("post_restart")

    @handler(Crash)
    def crash(self, msg: Crash) -> None:
        self._raise_in("handler")
        raise ValueError("the tell failed on purpose")

    @handler(Ping)
    def ping(self, msg: Ping) -> str:
        return "pong"


POOL = Dispatcher(threads=2, name="ctest-pool")  # shared by every case; its threads never end


class PooledHooked(Hooked):
    actor_dispatcher = POOL


class PooledWorker(Worker):
    actor_dispatcher = POOL


MODES = {"thread": (Hooked, Worker), "pooled": (PooledHooked, PooledWorker)}


def no_zombie() -> None:
    """No actor is left ``running`` (or stopping) with nothing to run it: no live thread of its
    own, or no live dispatcher and instance for its turns."""
    for cell in live_cells():
        assert isinstance(cell, Cell)
        if cell.state in ("running", "stopping"):
            assert cell.serving(), f"{cell!r} has nothing running it"
            if cell.dispatcher is None:
                thread = cell.thread
                assert thread is not None and thread.is_alive(), f"{cell!r} has no thread"
    assert POOL.alive()


def settle(ask: Any) -> Any:
    """The outcome of ``ask()`` (an ask and its get), which must come well before its timeout."""
    start = time.monotonic()
    try:
        outcome: Any = ask()
    except LlmosError as exc:
        outcome = exc
    assert time.monotonic() - start < WAIT, "the pending ask waited for its timeout"
    assert outcome == "pong" or isinstance(outcome, ActorDeadError), outcome
    return outcome


def wait_decision(sup: str) -> str:
    """The first decision supervisor ``sup`` made about a child."""
    with RecordingSupervisor.DECIDED:
        assert RecordingSupervisor.DECIDED.wait_for(
            lambda: any(s == sup for s, *_ in RecordingSupervisor.DECISIONS), WAIT
        ), f"supervisor {sup} never heard of the failure"
        return next(a for s, _n, _e, a in RecordingSupervisor.DECISIONS if s == sup)


def wait_removed(sup: Any, name: str) -> None:
    deadline = time.monotonic() + WAIT
    while any(r.name == name for r in sup.children()):
        assert time.monotonic() < deadline, f"{name} still a child of its supervisor"
        threading.Event().wait(0.01)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("hook", HOOKS)
def test_a_base_exception_from_any_hook_fails_only_its_actor(
    hook: str, kind: type[BaseException], mode: str
) -> None:
    hooked, worker = MODES[mode]
    k = kernel()
    case = f"{hook}-{kind.__name__}-{mode}"
    sup_name = f"sup-{case}"
    sup_ref = k.spawn(RecordingSupervisor, name=sup_name, escalate=False, backoff=None)
    bystander = k.spawn(worker, name=f"bystander-{case}", supervisor=sup_ref)
    name = f"hooked-{case}"
    Hooked.PLAN[name] = (hook, kind)
    if hook == "init_start":
        with pytest.raises(ActorError) as info:
            k.spawn(hooked, name, name=name, supervisor=sup_ref)
        assert isinstance(info.value.__cause__, kind)
    else:
        ref = k.spawn(hooked, name, name=name, supervisor=sup_ref)
        if hook == "on_stop":
            assert ref.stop(timeout=WAIT)
            from llmos.kernel import supervisor_of

            sup = supervisor_of(sup_ref)
            assert sup is not None
            wait_removed(sup, name)
        else:
            if hook != "on_start":
                ref.tell(Crash())
            pending = ref.ask(Ping(), timeout=LONG)
            assert wait_decision(sup_name) in ("restart", "give_up")
            settle(pending.get)
    no_zombie()
    assert bystander.ask(Add(2), timeout=WAIT).get() == 2
    assert bystander.ask(Get(), timeout=WAIT).get() == 2
    assert k.ref.ask(NodeStatus(), timeout=WAIT).get()
    start = time.monotonic()
    actors.stop_all(timeout=WAIT)
    assert time.monotonic() - start < WAIT
    assert not actors.running()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("hook", ["init_start", "on_start", "on_stop", "on_failure", "handler"])
def test_an_unsupervised_actor_stops_for_good_and_fails_its_pending_asks(
    hook: str, kind: type[BaseException], mode: str
) -> None:
    hooked, worker = MODES[mode]
    case = f"{hook}-{kind.__name__}-{mode}"
    bystander = worker.start(name=f"lone-bystander-{case}")
    name = f"lone-{case}"
    Hooked.PLAN[name] = (hook, kind)
    if hook == "init_start":
        with pytest.raises(ActorError) as info:
            hooked.start(name, name=name)
        assert isinstance(info.value.__cause__, kind)
        assert hooked.start(name, name=name).ask(Ping(), timeout=WAIT).get() == "pong"
    else:
        ref = hooked.start(name, name=name)
        if hook == "on_stop":
            assert ref.stop(timeout=WAIT)
        else:
            if hook != "on_start":
                ref.tell(Crash())
            outcome = settle(lambda: ref.ask(Ping(), timeout=LONG).get())
            assert isinstance(outcome, ActorDeadError)
        assert not ref.is_alive()
    no_zombie()
    assert bystander.ask(Add(1), timeout=WAIT).get() == 1
    start = time.monotonic()
    actors.stop_all(timeout=WAIT)
    assert time.monotonic() - start < WAIT
