"""Supervision: strategies, restart intensity and escalation, backoff on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_kernel_support import (
    BUILT,
    WAIT,
    Add,
    Crash,
    Get,
    Hold,
    RecordingSupervisor,
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
from llmos.actors import ActorDeadError
from llmos.kernel import (
    Backoff,
    ChildSpec,
    ManualTimer,
    SupervisionError,
    Supervisor,
    kernel,
    supervisor_of,
)
from llmos.kernel._children import Sync

ABC = [ChildSpec(Worker, name=n) for n in ("a", "b", "c")]


def serials() -> dict[str, int]:
    return {n: serial(actors.get(n)) for n in ("a", "b", "c")}


def crash_b_and_wait() -> None:
    b = actors.get("b")
    b.tell(Crash())
    assert b.ask(Get(), timeout=WAIT).get() == 0  # answered by b's new instance


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        ("one_for_one", {"b"}),
        ("one_for_all", {"a", "b", "c"}),
        ("rest_for_one", {"b", "c"}),
    ],
)
def test_strategy_restarts_the_right_children_in_start_order(
    strategy: str, restarted: set[str]
) -> None:
    kernel().spawn(Supervisor, ABC, strategy=strategy, max_restarts=3, name="sup")
    before = serials()
    BUILT.clear()
    crash_b_and_wait()
    after = serials()  # asks queue behind any restart, so the new instances answer
    assert {n for n in before if before[n] != after[n]} == restarted
    assert built_names() == sorted(restarted)  # rebuilt in start order
    for name in "abc":
        assert actors.get(name).statistics().restarts == (1 if name in restarted else 0)


def test_a_sibling_restarted_with_a_failed_child_keeps_its_queued_messages() -> None:
    sup = kernel().spawn(
        RecordingSupervisor, ABC, strategy="one_for_all", max_restarts=3, name="sup"
    )
    a = actors.get("a")
    release = gate("a-busy")
    a.tell(Hold("a-busy"))
    entered("a-busy")
    for _ in range(10):
        a.tell(Add(1))  # queued before the restart request: handled by the old instance
    actors.get("b").tell(Crash())
    RecordingSupervisor.wait_for("sup", "restart")
    sup.ask(Sync(), timeout=WAIT).get()  # the supervisor has asked a to restart by now
    for _ in range(5):
        a.tell(Add(1))  # queued after the request: handled by the new instance
    release.set()
    assert a.ask(Get(), timeout=WAIT).get() == 5
    stats = a.statistics()
    assert stats.restarts == 1
    assert stats.processed == 1 + 10 + 5 + 1  # Hold, the old instance's Adds, the new, Get


@pytest.fixture
def manual() -> Iterator[ManualTimer]:
    timer = ManualTimer()
    Worker.clock = timer
    yield timer
    Worker.clock = None


def test_intensity_exceeded_stops_the_children_and_notifies_the_parent(
    manual: ManualTimer,
) -> None:
    k = kernel()
    parent = k.spawn(RecordingSupervisor, name="parent", max_restarts=5, timer=manual)
    watcher = Watcher.start()
    k.spawn(
        RecordingSupervisor,
        [ChildSpec(Worker, name="w1"), ChildSpec(Worker, name="w2")],
        name="child-sup",
        max_restarts=2,
        within=60.0,
        backoff=None,
        timer=manual,
        restart="temporary",
        supervisor=parent,
    )
    w1, w2 = actors.get("w1"), actors.get("w2")
    watcher.ask(Watch(w2), timeout=WAIT).get()
    for _ in range(2):  # two restarts are within the budget
        w1.tell(Crash())
        assert w1.ask(Get(), timeout=WAIT).get() == 0
    w1.tell(Crash("third"))
    pending = w2.ask(Get(), timeout=30)
    # the child supervisor escalates: its children stop, the parent hears of it
    [(name, error)] = RecordingSupervisor.wait_for("child-sup", "escalate")
    assert name == "w1" and isinstance(error, SupervisionError)
    [(name, error)] = RecordingSupervisor.wait_for("parent", "stop")
    assert name == "child-sup"
    assert isinstance(error, SupervisionError) and "gave up" in str(error)
    assert isinstance(error.__cause__, RuntimeError) and str(error.__cause__) == "third"
    assert not w1.is_alive() and not w2.is_alive()
    assert supervisor_of("child-sup") is None
    try:
        pending.get()  # answered before the stop, or failed fast: never hangs
    except ActorDeadError:
        pass
    notes = watcher.ask(Get(), timeout=WAIT).get()
    assert notes and notes[0][0] == "w2"


def test_a_restarted_supervisor_rebuilds_its_children_and_old_refs_reach_them(
    manual: ManualTimer,
) -> None:
    k = kernel()
    parent = k.spawn(RecordingSupervisor, name="parent", max_restarts=5, timer=manual)
    k.spawn(
        Supervisor,
        [ChildSpec(Worker, name="w1")],
        name="child-sup",
        max_restarts=0,
        timer=manual,
        supervisor=parent,
    )
    k.spawn(Worker, name="late", supervisor=actors.get("child-sup"))  # added at run time
    w1, late = actors.get("w1"), actors.get("late")
    first = serial(w1), serial(late)
    w1.tell(Crash())  # max_restarts=0: the child supervisor gives up at once and escalates
    queued = w1.ask(Add(1), timeout=30)
    with pytest.raises(ActorDeadError):
        queued.get()  # queued to the child that was stopped for good: fails fast
    RecordingSupervisor.wait_for("parent", "restart")
    parent.ask(Sync(), timeout=WAIT).get()  # the parent has rebuilt the child supervisor
    actors.get("child-sup").ask(Sync(), timeout=WAIT).get()  # which has started "late" again
    assert w1.ask(Add(7), timeout=WAIT).get() == 7  # the old ref reaches the rebuilt child
    assert (serial(w1), serial(late)) != first
    assert actors.get("child-sup").statistics().restarts == 1


def test_unnamed_children_come_back_once_when_their_supervisor_restarts(
    manual: ManualTimer,
) -> None:
    k = kernel()
    parent = k.spawn(RecordingSupervisor, name="parent", max_restarts=5, timer=manual)
    child_sup = k.spawn(
        Supervisor,
        [ChildSpec(Worker), ChildSpec(Worker)],
        name="child-sup",
        max_restarts=0,
        timer=manual,
        supervisor=parent,
    )
    k.spawn(Worker, supervisor=child_sup)  # added at run time, unnamed too
    first = supervisor_of("child-sup")
    assert first is not None and len(first.children()) == 3
    first.children()[0].tell(Crash())  # escalates: the parent restarts the child supervisor
    RecordingSupervisor.wait_for("parent", "restart")
    parent.ask(Sync(), timeout=WAIT).get()
    child_sup.ask(Sync(), timeout=WAIT).get()
    again = supervisor_of("child-sup")
    assert again is not None and again is not first
    assert len(again.children()) == 3  # two from its spec, the added one carried over


def test_backoff_spacing_follows_the_manual_clock(manual: ManualTimer) -> None:
    backoff = Backoff(min=0.1, max=0.4, factor=2.0, jitter=0.0, reset_after=10.0)
    kernel().spawn(
        Supervisor,
        [ChildSpec(Worker, name="w")],
        name="sup",
        max_restarts=100,
        within=1000.0,
        backoff=backoff,
        timer=manual,
    )
    ref = actors.get("w")
    expected = [0.0, 0.1, 0.2, 0.4, 0.4]
    for delay in expected:
        BUILT.clear()
        crashed_at = manual.now()
        ref.tell(Crash())
        if delay:
            assert manual.wait_pending(1, WAIT), "the supervisor scheduled no restart"
            assert manual.delays() == [pytest.approx(delay)]
            manual.advance(delay * 0.99)
            assert ref.statistics().state == "failed"  # not restarted before its time
            manual.advance(delay * 0.01)
        assert ref.ask(Get(), timeout=WAIT).get() == 0
        [(_, _, built_at)] = BUILT
        assert built_at - crashed_at == pytest.approx(delay)
        assert manual.delays() == []
    manual.advance(10.0)  # stable for reset_after: the next restart is immediate again
    ref.tell(Crash())
    assert ref.ask(Get(), timeout=WAIT).get() == 0
    assert manual.delays() == []


def test_a_stopping_supervisor_cancels_a_pending_restart(manual: ManualTimer) -> None:
    backoff = Backoff(min=5.0, max=5.0, jitter=0.0)
    sup = kernel().spawn(
        Supervisor, [ChildSpec(Worker, name="w")], max_restarts=9, backoff=backoff, timer=manual
    )
    ref = actors.get("w")
    for _ in range(2):
        ref.tell(Crash())
    assert manual.wait_pending(1, WAIT)
    queued = ref.ask(Get(), timeout=30)
    assert sup.stop(timeout=WAIT)
    assert manual.delays() == []
    with pytest.raises(ActorDeadError):
        queued.get()


def test_a_child_whose_constructor_fails_fails_the_supervisor_start() -> None:
    class Broken(Worker):
        def __init__(self) -> None:
            raise RuntimeError("cannot build")

    specs = [ChildSpec(Worker, name="ok"), ChildSpec(Broken, name="broken")]
    with pytest.raises(RuntimeError, match="cannot build"):
        kernel().spawn(Supervisor, specs, name="sup")
    with pytest.raises(ActorDeadError):
        actors.get("ok")
    with pytest.raises(ActorDeadError):
        actors.get("sup")


def test_spawn_under_something_that_is_not_a_supervisor_is_refused() -> None:
    worker = kernel().spawn(Worker, name="w")
    with pytest.raises(SupervisionError, match="not a running Supervisor"):
        kernel().spawn(Worker, supervisor=worker)
