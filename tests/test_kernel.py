"""The kernel actor, its public surface, and the plain policy, spec and timer classes."""

from __future__ import annotations

import random
import threading

import pytest
from test_kernel_support import (
    WAIT,
    Add,
    Crash,
    Get,
    Watch,
    Watcher,
    Worker,
    _fresh_records,  # noqa: F401 (autouse fixture)
)

import llmos.actors as actors
import llmos.kernel
from llmos.actors import ActorDeadError, NameTaken
from llmos.kernel import (
    KERNEL_NAME,
    Backoff,
    ChildSpec,
    Kernel,
    KernelStats,
    ManualTimer,
    RestartWindow,
    SupervisionError,
    Supervisor,
    ThreadTimer,
    kernel,
    restart_group,
    should_restart,
)


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in vars(llmos.kernel) if not n.startswith("_")}
    assert set(llmos.kernel.__all__) == public


def test_one_kernel_per_process_started_lazily_and_again_after_stop_all() -> None:
    first = kernel()
    assert kernel() is first and Kernel.get_or_start() is first
    assert first.ref.name == KERNEL_NAME and actors.get(KERNEL_NAME) == first.ref
    assert any(t.name == f"llmos:{KERNEL_NAME}" for t in threading.enumerate())
    child = first.spawn(Worker, name="w")
    actors.stop_all()
    assert not child.is_alive() and not first.ref.is_alive()
    second = kernel()
    assert second is not first and second.ref.is_alive()


def test_shutdown_stops_every_child_and_tells_their_watchers() -> None:
    k = kernel()
    watcher = Watcher.start()
    refs = [k.spawn(Worker, name=f"w{i}") for i in range(3)]
    for ref in refs:
        watcher.ask(Watch(ref), timeout=WAIT).get()
    nested = k.spawn(Supervisor, [ChildSpec(Worker, name="inner")], name="nested")
    assert k.shutdown(timeout=WAIT)
    assert not any(ref.is_alive() for ref in [*refs, nested])
    with pytest.raises(ActorDeadError):
        actors.get("inner")
    notes = watcher.ask(Get(), timeout=WAIT).get()
    assert sorted(notes) == [(f"w{i}", "stopped") for i in range(3)]
    assert kernel() is not k  # a fresh kernel on next use


def test_spawn_is_a_plain_method_usable_as_a_node_spawner() -> None:
    spawner = kernel().spawn
    ref = spawner(Worker, name="remote-made", fail_start=0)
    assert ref.ask(Add(2), timeout=WAIT).get() == 2
    with pytest.raises(NameTaken):
        spawner(Worker, name="remote-made")
    unnamed = spawner(Worker)
    assert unnamed.name.startswith("Worker-")
    node_made = kernel().spawner(Worker, (), {"restart": "temporary"}, "node-made")
    assert node_made.ask(Add(3), timeout=WAIT).get() == 3
    assert "node-made" in {c.name for c in kernel().child_cells()}
    with pytest.raises(SupervisionError, match="Actor subclasses"):
        kernel().spawner(int, (), {}, None)


def test_the_kernel_spawner_fits_the_transport_node() -> None:
    from llmos.transport import Spawner

    spawner: Spawner = kernel().spawner  # mypy checks the shape; the call checks the rest
    assert spawner(Worker, (0,), {}, "via-node").ask(Add(1), timeout=WAIT).get() == 1


def test_lookup_finds_actors_and_pools() -> None:
    k = kernel()
    ref = k.spawn(Worker, name="w")
    pool = k.spawn_pool(Worker, size=1, name="p")
    assert k.lookup("w") == ref and k.lookup("p") == pool and k.pool("p") == pool
    with pytest.raises(ActorDeadError):
        k.lookup("nobody")
    with pytest.raises(ActorDeadError, match="not a pool"):
        k.pool("w")


def test_stats_snapshot_covers_the_tree_and_the_pools() -> None:
    k = kernel()
    ref = k.spawn(Worker, name="w")
    nested = k.spawn(Supervisor, [ChildSpec(Worker, name="inner")], name="nested")
    k.spawn_pool(Worker, size=2, name="p")
    ref.tell(Add())
    ref.tell(Crash())
    assert ref.ask(Get(), timeout=WAIT).get() == 0
    stats = k.stats()
    assert isinstance(stats, KernelStats)
    names = {a.name for a in stats.actors}
    assert {"w", "nested", "inner", "p", "p-1", "p-2"} <= names
    w = stats.actor("w")
    assert (w.processed, w.failed, w.restarts, w.mailbox_depth) == (3, 1, 1, 0)
    assert w.busy_seconds > 0
    assert stats.restarts == 1 and stats.failed == 1 and stats.processed >= 3
    assert stats.pool("p").size == 2
    with pytest.raises(ActorDeadError):
        stats.actor("nobody")
    with pytest.raises(AttributeError):
        stats.restarts = 5  # type: ignore[misc]
    assert nested.is_alive()


def test_child_spec_and_backoff_are_checked() -> None:
    with pytest.raises(SupervisionError, match="Actor subclass"):
        ChildSpec(int)  # type: ignore[arg-type]
    with pytest.raises(SupervisionError, match="restart must be one of"):
        ChildSpec(Worker, restart="always")  # type: ignore[arg-type]
    with pytest.raises(SupervisionError, match="strategy must be one of"):
        kernel().spawn(Supervisor, strategy="all_for_one")
    with pytest.raises(SupervisionError, match=r"Backoff\.max"):
        Backoff(min=2.0, max=1.0)
    with pytest.raises(SupervisionError, match="jitter"):
        Backoff(jitter=1.5)
    with pytest.raises(SupervisionError, match="max_restarts"):
        RestartWindow(-1, 5.0)
    spec = ChildSpec(Worker, kwargs={"fail_start": 0})
    assert spec.named("x").name == "x" and spec.name is None
    assert isinstance(spec.build(), Worker)


def test_backoff_grows_exponentially_within_its_jitter_and_cap() -> None:
    plain = Backoff(min=0.1, max=1.0, factor=2.0, jitter=0.0)
    assert [plain.delay(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    jittered = Backoff(min=0.1, max=10.0, factor=2.0, jitter=0.5)
    rng = random.Random(7)
    for attempt in range(1, 8):
        base = 0.1 * 2 ** (attempt - 1)
        for _ in range(50):
            assert base * 0.5 <= jittered.delay(attempt, rng) <= base * 1.5
    assert Backoff.none().delay(9) == 0.0


def test_restart_window_counts_restarts_in_a_sliding_window() -> None:
    window = RestartWindow(2, 5.0)
    assert window.allow(0.0) and window.allow(1.0)
    assert not window.allow(2.0)  # a third within 5 s
    assert window.allow(7.5)  # 0.0, 1.0 and 2.0 have left the window
    assert window.count(7.5) == 1


def test_restart_types_and_strategy_groups() -> None:
    assert should_restart("permanent", SystemExit(0))
    assert not should_restart("transient", SystemExit(0))
    assert not should_restart("transient", SystemExit(None))
    assert should_restart("transient", SystemExit(2)) and should_restart("transient", KeyError())
    assert not should_restart("temporary", RuntimeError())
    order = ["a", "b", "c", "d"]
    assert restart_group("one_for_one", order, "b") == ["b"]
    assert restart_group("one_for_all", order, "b") == order
    assert restart_group("rest_for_one", order, "b") == ["b", "c", "d"]


def test_thread_timer_runs_callbacks_in_order_and_its_thread_ends_when_idle() -> None:
    timer = ThreadTimer(name="llmos:test-timer")
    ran: list[int] = []
    done = threading.Event()
    cancelled = timer.call_later(0.03, lambda: ran.append(99))
    timer.call_later(0.02, lambda: ran.append(2))
    timer.call_later(0.01, lambda: ran.append(1))
    timer.call_later(0.04, done.set)
    cancelled.cancel()
    assert done.wait(WAIT)
    assert ran == [1, 2]
    for thread in threading.enumerate():
        if thread.name == "llmos:test-timer":
            thread.join(WAIT)
    assert timer.pending() == 0
    assert not any(t.name == "llmos:test-timer" for t in threading.enumerate())
    long = timer.call_later(3600, lambda: None)
    long.cancel()  # nothing left pending: the thread ends at once, it does not wait an hour
    for thread in threading.enumerate():
        if thread.name == "llmos:test-timer":
            thread.join(WAIT)
            assert not thread.is_alive()


def test_manual_timer_moves_only_when_advanced() -> None:
    timer = ManualTimer(start=100.0)
    ran: list[float] = []
    timer.call_later(2.0, lambda: ran.append(timer.now()))
    handle = timer.call_later(1.0, lambda: ran.append(-1))

    def chain() -> None:
        timer.call_later(0.5, lambda: ran.append(timer.now()))

    timer.call_later(0.5, chain)
    handle.cancel()
    assert timer.delays() == [0.5, 2.0]
    assert timer.advance(1.0) == 2 and ran == [101.0]
    assert timer.advance(5.0) == 1 and ran == [101.0, 102.0]
    assert timer.now() == 106.0 and timer.delays() == []
    assert not timer.wait_pending(1, timeout=0.01)
