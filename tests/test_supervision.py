"""Supervision: the failure contract, restart types, hooks, containment, death watch."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from test_kernel_support import (
    WAIT,
    Add,
    AskSelf,
    Crash,
    Exit,
    Fail,
    Get,
    Hold,
    Serial,
    Watch,
    Watcher,
    Worker,
    _fresh_records,  # noqa: F401 (autouse fixture)
    built_names,
    entered,
    gate,
    serial,
)

import llmos.actors as actors
from llmos.actors import Actor, ActorDeadError, DeadlockError, handler, message
from llmos.kernel import Backoff, ManualTimer, SupervisionError, Supervisor, kernel


def cell_of(name: str) -> Any:
    """The kernel's cell for a child (white box: to break its loop on purpose)."""
    for cell in kernel().child_cells():
        if cell.name == name:
            return cell
    raise AssertionError(f"the kernel has no child {name!r}")


def test_tell_failure_restarts_a_fresh_instance_behind_the_same_ref() -> None:
    ref = kernel().spawn(Worker, name="w")
    before = serial(ref)
    letters_before = actors.dead_letter_count()
    ref.tell(Add(5))
    ref.tell(Crash("tell failed"))
    assert ref.ask(Get(), timeout=WAIT).get() == 0  # a fresh instance: state not carried
    assert serial(ref) != before
    stats = ref.statistics()
    assert (stats.restarts, stats.failed, stats.state) == (1, 1, "running")
    assert actors.dead_letter_count() - letters_before == 1
    letter = actors.dead_letters("w")[-1]
    assert isinstance(letter.message, Crash)
    assert letter.reason.startswith("failed: RuntimeError('tell failed')")
    assert actors.get("w") == ref


def test_thousand_tells_behind_a_crash_are_all_handled_by_the_new_instance() -> None:
    ref = kernel().spawn(Worker, name="w")
    first = serial(ref)
    release = gate("busy")
    ref.tell(Hold("busy"))
    entered("busy")  # everything below queues behind the handler that holds the actor
    ref.tell(Crash())
    for _ in range(1000):
        ref.tell(Add(1))
    letters_before = actors.dead_letter_count()
    release.set()
    assert ref.ask(Get(), timeout=WAIT).get() == 1000
    assert serial(ref) != first
    assert ref.statistics().restarts == 1
    assert actors.dead_letter_count() - letters_before == 1  # only the failing message


def test_an_ask_error_goes_to_the_asker_and_is_counted_without_restart() -> None:
    ref = kernel().spawn(Worker, name="w")
    first = serial(ref)
    with pytest.raises(ValueError, match="on purpose"):
        ref.ask(Fail(), timeout=WAIT).get()
    assert serial(ref) == first
    stats = ref.statistics()
    assert (stats.failed, stats.restarts) == (1, 0)
    assert kernel().stats().ask_failures == 1


def test_restart_on_ask_error_is_configurable_per_spec() -> None:
    ref = kernel().spawn(Worker, name="w", restart_on_ask_error=True)
    first = serial(ref)
    with pytest.raises(ValueError):
        ref.ask(Fail(), timeout=WAIT).get()
    assert serial(ref) != first
    assert ref.statistics().restarts == 1


def test_an_exception_in_on_start_is_a_failure_and_restarts() -> None:
    ref = kernel().spawn(Worker, name="w", fail_start=1)
    assert ref.ask(Add(2), timeout=WAIT).get() == 2  # queued until the second instance is up
    assert built_names().count("w") == 2
    assert ref.statistics().restarts == 1


def test_the_actor_thread_dying_is_a_failure_and_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = kernel().spawn(Worker, name="w")
    first = serial(ref)
    cell = cell_of("w")
    real = type(cell)._unhandled
    broke: list[bool] = []

    def broken(self: Any, msg: Any, reply: Any) -> None:
        if self is not cell or broke:
            real(self, msg, reply)
            return
        broke.append(True)  # once is enough
        raise RuntimeError("the actor loop itself broke")

    # The loop calls it outside any handler: its thread dies.
    monkeypatch.setattr(type(cell), "_unhandled", broken)
    ref.tell("no handler for this")
    assert serial(ref) != first
    assert ref.statistics().restarts == 1


def test_system_exit_fails_only_that_actor() -> None:
    k = kernel()
    bystander = k.spawn(Worker, name="bystander")
    ref = k.spawn(Worker, name="w")
    first = serial(ref)
    ref.tell(Exit(3))
    assert serial(ref) != first  # permanent: restarted like any crash
    assert bystander.ask(Add(1), timeout=WAIT).get() == 1
    assert k.ref.is_alive()


def test_transient_stops_on_a_normal_exit_and_restarts_on_a_crash() -> None:
    k = kernel()
    watcher = Watcher.start()
    ref = k.spawn(Worker, name="t", restart="transient")
    watcher.ask(Watch(ref), timeout=WAIT).get()
    first = serial(ref)
    ref.tell(Exit(1))  # non-zero: abnormal, restarted
    assert serial(ref) != first
    ref.tell(Exit(0))  # normal exit: stopped for good
    pending = ref.ask(Get(), timeout=WAIT)
    with pytest.raises(ActorDeadError):
        pending.get()
    assert not ref.is_alive()
    notes = watcher.ask(Get(), timeout=WAIT).get()
    assert notes == [("t", "failed: SystemExit(0) (transient, not restarted)")]


def test_temporary_is_never_restarted_and_queued_asks_fail_fast() -> None:
    ref = kernel().spawn(Worker, name="tmp", restart="temporary")
    release = gate("tmp")
    ref.tell(Hold("tmp"))
    entered("tmp")
    ref.tell(Crash())
    queued = ref.ask(Get(), timeout=30)
    release.set()
    start = time.monotonic()
    with pytest.raises(ActorDeadError):
        queued.get()
    assert time.monotonic() - start < 5  # not its 30 s timeout
    with pytest.raises(ActorDeadError):
        ref.ask(Get(), timeout=30)
    with pytest.raises(ActorDeadError):
        ref.tell(Add())


def test_death_watch_delivers_terminated_for_a_stop_and_a_failure() -> None:
    k = kernel()
    watcher_ref = Watcher.start(name="watcher")
    stopped = k.spawn(Worker, name="stopped")
    crashed = k.spawn(Worker, name="crashed", restart="temporary")
    watcher_ref.ask(Watch(stopped), timeout=WAIT).get()
    watcher_ref.ask(Watch(crashed), timeout=WAIT).get()
    assert stopped.stop(timeout=WAIT)
    crashed.tell(Crash("bye"))
    # stop() returns once the actor stopped for good, and Terminated is sent before that.
    assert crashed.stop(timeout=WAIT)
    notes = watcher_ref.ask(Get(), timeout=WAIT).get()
    assert ("stopped", "stopped") in notes
    assert any(n == "crashed" and r.startswith("failed: RuntimeError('bye')") for n, r in notes)


class Memory(Actor):
    """Carries its memory across restarts through pre_restart/post_restart."""

    HOOKS: list[str] = []

    def __init__(self) -> None:
        super().__init__()
        self.memory: list[int] = []

    def on_start(self) -> None:
        self.HOOKS.append("on_start")

    def on_stop(self) -> None:
        self.HOOKS.append("on_stop")

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.HOOKS.append(f"on_failure:{exception_value}")

    def pre_restart(self, error: BaseException) -> Any:
        self.HOOKS.append("pre_restart")
        return list(self.memory)

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        self.HOOKS.append(f"post_restart:{error}")
        self.memory = state

    @handler(Add)
    def add(self, msg: Add) -> list[int]:
        self.memory.append(msg.n)
        return self.memory

    @handler(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(msg.why)


def test_pre_and_post_restart_carry_state_across_a_restart() -> None:
    Memory.HOOKS.clear()
    ref = kernel().spawn(Memory, name="mem")
    ref.tell(Add(1))
    ref.tell(Add(2))
    ref.tell(Crash("lost my train of thought"))
    assert ref.ask(Add(3), timeout=WAIT).get() == [1, 2, 3]
    assert ref.stop(timeout=WAIT)
    assert Memory.HOOKS == [
        "on_start",
        "on_failure:lost my train of thought",
        "pre_restart",
        "post_restart:lost my train of thought",
        "on_stop",
    ]


def test_a_blocking_ask_to_itself_fails_at_once_with_deadlock_error() -> None:
    ref = kernel().spawn(Worker, name="w")
    start = time.monotonic()
    with pytest.raises(DeadlockError):
        ref.ask(AskSelf(), timeout=WAIT).get()
    assert time.monotonic() - start < 2
    assert ref.statistics().restarts == 0


def test_the_kernel_gives_up_on_a_crash_looping_child_and_keeps_running() -> None:
    k = kernel()
    other = k.spawn(Worker, name="other")
    ref = k.spawn(Worker, name="loop")  # kernel default: 1 restart in 5 s, per child
    ref.tell(Crash("once"))
    assert ref.ask(Get(), timeout=WAIT).get() == 0
    ref.tell(Crash("twice"))
    queued = ref.ask(Get(), timeout=30)
    with pytest.raises(ActorDeadError):
        queued.get()
    assert not ref.is_alive()
    assert len(k.supervisor_gave_up) == 1
    error = k.supervisor_gave_up[0]
    assert isinstance(error, SupervisionError) and "'loop'" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert k.stats().gave_up == 1
    assert other.ask(Add(1), timeout=WAIT).get() == 1 and k.ref.is_alive()


def test_a_ref_taken_before_a_crash_reaches_the_new_instance() -> None:
    k = kernel()
    ref = k.spawn(Worker, name="w")
    same = actors.get("w")
    ref.tell(Crash())
    assert same.ask(Add(4), timeout=WAIT).get() == 4
    assert ref.ask(Serial(), timeout=WAIT).get() == same.ask(Serial(), timeout=WAIT).get()


@message("ktest.Ident")
class Ident:
    pass


class Threaded(Worker):
    BUILDS = [0]

    def __init__(self, fail_build: int = 0) -> None:
        self.BUILDS[0] += 1
        if self.BUILDS[0] == fail_build:
            raise RuntimeError("constructor failed on purpose")
        super().__init__()

    @handler(Ident)
    def ident(self, msg: Ident) -> int:
        return threading.get_ident()


def test_a_restart_reuses_the_failed_instance_thread() -> None:
    sup = kernel().spawn(Supervisor, name="sup", max_restarts=100, backoff=None)
    ref = kernel().spawn(Threaded, name="t", supervisor=sup)
    idents = [ref.ask(Ident(), timeout=WAIT).get()]
    for _ in range(20):
        ref.tell(Crash())
        idents.append(ref.ask(Ident(), timeout=WAIT).get())
    # The failed thread waits for the new instance; only if the supervisor is faster than the
    # failed thread is a new one started. Either way the old one ends.
    reused = sum(a == b for a, b in itertools.pairwise(idents))
    assert reused >= 1
    assert ref.statistics().restarts == 20
    for thread in threading.enumerate():
        if thread.name == "llmos:t" and thread.ident != idents[-1]:
            thread.join(WAIT)  # a superseded thread ends
    assert [t.name for t in threading.enumerate()].count("llmos:t") == 1


def test_a_constructor_failing_on_restart_counts_and_the_next_restart_works() -> None:
    Threaded.BUILDS[0] = 0
    sup = kernel().spawn(Supervisor, name="sup", max_restarts=5, backoff=None)
    ref = kernel().spawn(Threaded, 2, name="t", supervisor=sup)
    ref.tell(Crash())  # restart 1: the constructor raises (a new failure); restart 2 works
    assert ref.ask(Add(1), timeout=WAIT).get() == 1
    assert ref.statistics().restarts == 2 and Threaded.BUILDS[0] == 3


def test_stopping_an_actor_that_waits_for_a_delayed_restart_ends_its_thread() -> None:
    timer = ManualTimer()
    backoff = Backoff(min=60.0, max=60.0, jitter=0.0)
    sup = kernel().spawn(Supervisor, name="sup", max_restarts=5, backoff=backoff, timer=timer)
    ref = kernel().spawn(Threaded, name="t", supervisor=sup)
    ref.tell(Crash())
    ref.tell(Crash())  # the second restart waits 60 s on the manual clock
    assert timer.wait_pending(1, WAIT)
    threads = [t for t in threading.enumerate() if t.name == "llmos:t"]
    assert ref.stop(timeout=WAIT)
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert sup.is_alive()
