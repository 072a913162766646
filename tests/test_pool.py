"""Pools: the four routers, supervised members, autoscaling, statistics and figures."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from test_kernel_support import (
    NOTED,
    WAIT,
    Add,
    Crash,
    Get,
    Hold,
    Watch,
    Watcher,
    Work,
    Worker,
    _fresh_records,  # noqa: F401 (autouse fixture)
    entered,
    gate,
)

import llmos.actors as actors
from llmos.actors import ActorDeadError, MessageError
from llmos.actors.lowlevel import check_message
from llmos.kernel import (
    Autoscale,
    ConsistentHash,
    ManualTimer,
    PoolRef,
    RoundRobin,
    SupervisionError,
    kernel,
)


def names(pool: PoolRef) -> list[str]:
    return sorted(ref.name for ref in pool.members())


def test_round_robin_takes_each_member_in_turn() -> None:
    pool = kernel().spawn_pool(Worker, size=3, name="rr")
    assert isinstance(pool, actors.ActorRef) and pool.size == 3
    served = [pool.ask(Work(0), timeout=WAIT).get() for _ in range(6)]
    assert served == ["rr-1", "rr-2", "rr-3"] * 2
    assert pool.statistics().processed == 6


def test_consistent_hash_sends_a_key_to_the_same_member() -> None:
    pool = kernel().spawn_pool(Worker, size=4, router="consistent_hash", name="ch")
    owners: dict[str, set[str]] = {}
    for _ in range(3):
        for i in range(40):
            key = f"session-{i}"
            owners.setdefault(key, set()).add(pool.ask(Work(0, key), timeout=WAIT).get())
    assert all(len(owner) == 1 for owner in owners.values())
    assert len({next(iter(o)) for o in owners.values()}) >= 3  # the keys spread out
    with pytest.raises(MessageError, match="found no 'key'"):
        pool.tell(Get())


def test_consistent_hash_moves_few_keys_when_a_member_joins() -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    ring = ConsistentHash()
    four = tuple(Named(f"m-{i}") for i in range(4))
    ring.update(four)  # type: ignore[arg-type]
    before = {k: ring.select(k, four).name for k in range(2000)}  # type: ignore[arg-type]
    five = (*four, Named("m-4"))
    ring.update(five)  # type: ignore[arg-type]
    after = {k: ring.select(k, five).name for k in range(2000)}  # type: ignore[arg-type]
    moved = sum(before[k] != after[k] for k in before) / len(before)
    assert 0.05 < moved < 0.35  # ideally 1/5 of the keys, all of them to the new member
    assert all(after[k] == "m-4" for k in before if before[k] != after[k])


def test_hash_key_may_be_a_field_name_or_a_function() -> None:
    assert ConsistentHash("why").key_of(Crash("x")) == "x"
    assert ConsistentHash(lambda m: m["user"]).key_of({"user": 7}) == 7
    assert ConsistentHash().key_of({"key": "k"}) == "k"
    assert ConsistentHash().key_of("plain") == "plain"


def test_broadcast_reaches_every_member_and_gathers_their_answers() -> None:
    pool = kernel().spawn_pool(Worker, size=3, router="broadcast", name="bc")
    pool.tell(Add(2))
    assert pool.ask(Get(), timeout=WAIT).get() == [2, 2, 2]
    assert sorted(pool.ask(Work(0), timeout=WAIT).get()) == ["bc-1", "bc-2", "bc-3"]


def test_least_loaded_avoids_a_busy_member() -> None:
    pool = kernel().spawn_pool(Worker, size=3, router="least_loaded", name="ll")
    busy = pool.members()[0]
    release = gate("ll-busy")
    busy.tell(Hold("ll-busy"))
    entered("ll-busy")
    busy.tell(Add())
    served = {pool.ask(Work(0), timeout=WAIT).get() for _ in range(12)}
    assert busy.name not in served and len(served) == 2
    release.set()


class Deferring(actors.Actor):
    """Takes over every ask; "count" answers how many it holds, "release" answers them all
    (with its name)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[actors.Reply] = []

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.held)
        if message == "release":
            for reply in self.held:
                reply.set_result(self.actor_ref.name)
            self.held = []
            return None
        self.held.append(self.actor_defer_reply())
        return None


def test_least_loaded_counts_asks_a_member_took_over_and_has_not_answered() -> None:
    pool = kernel().spawn_pool(Deferring, size=2, router="least_loaded", name="dl")
    first, second = pool.members()
    held = [first.ask("hold", timeout=WAIT) for _ in range(3)]
    assert first.ask("count", timeout=WAIT).get() == 3  # all three taken over by now
    stats = first.statistics()
    assert (stats.mailbox_depth, stats.in_flight, stats.deferred, stats.load) == (0, 0, 3, 3)
    # The first member's mailbox is empty and it is idle, but it holds three unanswered asks:
    # the pool sends the next three to the other member.
    routed = [pool.ask("work", timeout=WAIT) for _ in range(3)]
    assert second.ask("count", timeout=WAIT).get() == 3
    second.tell("release")
    first.tell("release")
    assert [r.get() for r in routed] == ["dl-2"] * 3
    assert [r.get() for r in held] == ["dl-1"] * 3
    assert pool.statistics().deferred == 0
    # Answered asks no longer count: with both members idle again, ties go round robin.
    assert sorted(pool.ask("count", timeout=WAIT).get() for _ in range(2)) == [0, 0]


def makespan(router: str, name: str) -> float:
    """40 tasks arriving every 5 ms; every 4th takes 80 ms, the others 2 ms."""
    pool = kernel().spawn_pool(Worker, size=4, router=router, name=name)  # type: ignore[arg-type]
    start = time.perf_counter()
    replies = []
    for i in range(40):
        replies.append(pool.ask(Work(0.08 if i % 4 == 0 else 0.002), timeout=WAIT))
        time.sleep(0.005)  # the arrival rate of the workload, not a wait for state
    for reply in replies:
        reply.get()
    return time.perf_counter() - start


def test_least_loaded_beats_round_robin_on_skewed_task_durations() -> None:
    round_robin = makespan("round_robin", "rr")
    least_loaded = makespan("least_loaded", "ll")
    # round robin queues every long task on one member (>= 0.8 s); least loaded spreads them
    assert round_robin / least_loaded >= 1.8, (round_robin, least_loaded)


def test_a_member_that_crashes_restarts_with_its_queued_work() -> None:
    pool = kernel().spawn_pool(Worker, size=2, name="p")
    member = pool.members()[0]
    release = gate("p-busy")
    member.tell(Hold("p-busy"))
    entered("p-busy")
    member.tell(Crash())
    for _ in range(50):
        member.tell(Add())
    release.set()
    assert member.ask(Get(), timeout=WAIT).get() == 50
    assert member.statistics().restarts == 1 and pool.size == 2


def test_a_member_past_its_budget_is_replaced_and_its_work_handed_over() -> None:
    pool = kernel().spawn_pool(Worker, size=2, name="p", max_restarts=0)
    member = pool.members()[0]
    Watcher.start().ask(Watch(member), timeout=WAIT).get()
    release = gate("p-busy")
    member.tell(Hold("p-busy"))
    entered("p-busy")
    member.tell(Crash())
    for _ in range(20):
        member.tell(Add())
    release.set()
    assert NOTED[member.name].wait(WAIT), "the failed member never stopped"
    assert pool.size == 2 and member.name not in names(pool)
    [fresh] = [ref for ref in pool.members() if ref.name == "p-3"]
    assert fresh.ask(Get(), timeout=WAIT).get() == 20  # none of the queued work was lost
    stats = pool.pool_stats()
    assert (stats.replaced, stats.failed) == (1, 1)


def test_autoscaling_grows_under_backlog_and_shrinks_when_idle() -> None:
    timer = ManualTimer()
    rule = Autoscale(interval=1.0, grow_above=2.0, grow_after=2, shrink_after=3)
    pool = kernel().spawn_pool(
        Worker, size=1, min_size=1, max_size=3, autoscale=rule, timer=timer, name="auto"
    )

    def tick() -> None:
        assert timer.wait_pending(1, WAIT)
        timer.advance(1.0)
        pool.sync()

    def threads() -> int:
        return sum(t.name.startswith("llmos:auto-") for t in threading.enumerate())

    release = gate("auto-busy")
    pool.tell(Hold("auto-busy"))
    entered("auto-busy")
    for _ in range(12):
        pool.members()[0].tell(Add())  # a backlog of 12 on the only member
    tick()
    assert pool.size == 1  # one check over the threshold is not enough
    tick()
    assert pool.size == 2 and threads() == 2
    tick()
    tick()
    assert pool.size == 3 and threads() == 3  # 12 / 2 per member is still over 2
    tick()
    tick()
    assert pool.size == 3  # max_size
    release.set()
    extra = [t for t in threading.enumerate() if t.name in ("llmos:auto-2", "llmos:auto-3")]
    for ref in pool.members():
        ref.ask(Get(), timeout=WAIT).get()  # all work done: the pool is idle from now on
    for _ in range(3):
        tick()
    assert pool.size == 2
    tick()
    assert pool.size == 1  # min_size
    tick()  # the retired members left the table first; they stop at the next check
    for thread in extra:
        thread.join(WAIT)
    assert threads() == 1
    stats = pool.pool_stats()
    assert (stats.grown, stats.shrunk, stats.size) == (2, 2, 1)
    assert stats.processed == 1 + 12 + 3


def test_pool_figures_for_a_finished_batch() -> None:
    pool = kernel().spawn_pool(Worker, size=4, router="least_loaded", name="farm")
    batch = pool.batch()
    replies = [pool.ask(Work(0.01), timeout=WAIT) for _ in range(20)]
    for reply in replies:
        reply.get()
    figures = batch.finish()
    assert figures.tasks == 20 and figures.members == pytest.approx(4.0, rel=0.01)
    assert figures.busy_seconds >= 20 * 0.01
    assert figures.speed_up is not None and figures.speed_up > 1.2
    assert figures.parallel_efficiency is not None and 0 < figures.parallel_efficiency <= 1.05
    assert figures.load_balance_efficiency is not None
    assert 0 < figures.load_balance_efficiency <= 1
    stats = kernel().stats().pool("farm")
    assert stats.last_batch == figures and stats.processed == 20
    assert stats.utilisation is not None and 0 < stats.utilisation <= 1
    assert len(stats.members) == 4


def test_the_pool_actor_forwards_what_is_sent_to_its_name() -> None:
    pool = kernel().spawn_pool(Worker, size=2, name="fw")
    by_name = actors.get("fw")
    assert by_name.ask(Work(0), timeout=WAIT).get() in ("fw-1", "fw-2")
    by_name.tell(Add(3))
    pool.sync()  # the pool actor has forwarded the Add to a member's mailbox by now
    assert sorted(pool.ask(Get(), timeout=WAIT).get() for _ in range(2)) == [0, 3]
    assert kernel().lookup("fw") == pool and isinstance(kernel().lookup("fw"), PoolRef)
    check_message({"pool": pool})  # a pool ref travels in messages like any ref


async def test_ask_async_through_a_pool() -> None:
    pool = kernel().spawn_pool(Worker, size=2, name="aa")
    assert await pool.ask_async(Work(0), timeout=WAIT) == "aa-1"
    broadcast = kernel().spawn_pool(Worker, size=2, router="broadcast", name="ab")
    assert sorted(await broadcast.ask_async(Work(0), timeout=WAIT)) == ["ab-1", "ab-2"]


def test_a_stopped_pool_refuses_messages() -> None:
    pool = kernel().spawn_pool(Worker, size=2, name="gone")
    members = pool.members()
    watcher = Watcher.start()
    watcher.ask(Watch(pool), timeout=WAIT).get()
    assert pool.stop(timeout=WAIT)
    assert watcher.ask(Get(), timeout=WAIT).get() == [("gone", "stopped")]
    assert not pool.is_alive() and not any(m.is_alive() for m in members)
    with pytest.raises(ActorDeadError):
        pool.tell(Add())
    with pytest.raises(ActorDeadError):
        pool.ask(Get(), timeout=WAIT)


def test_pool_arguments_are_checked() -> None:
    with pytest.raises(SupervisionError, match="min_size <= size <= max_size"):
        kernel().spawn_pool(Worker, size=2, min_size=3)
    with pytest.raises(SupervisionError, match="router must be one of"):
        kernel().spawn_pool(Worker, router="random")  # type: ignore[arg-type]
    with pytest.raises(SupervisionError):
        Autoscale(step=0)
    pool = kernel().spawn_pool(Worker, size=1, name="not-a-parent")
    with pytest.raises(SupervisionError, match="is a pool"):
        kernel().spawn(Worker, supervisor=pool)
    turn = RoundRobin()
    cells: tuple[Any, ...] = tuple(range(3))
    picked: list[Any] = [turn.select(None, cells) for _ in range(4)]
    assert picked == [0, 1, 2, 0]


def test_a_real_time_autoscaling_pool_leaves_no_timer_thread_behind() -> None:
    rule = Autoscale(interval=0.01)
    pool = kernel().spawn_pool(Worker, size=1, max_size=2, autoscale=rule, name="rt")
    timers = [t for t in threading.enumerate() if t.name == "llmos:timer"]
    assert timers, "the pool's checks run on the shared llmos:timer thread"
    pool.sync()
    assert pool.stop(timeout=WAIT)
    for thread in timers:
        thread.join(WAIT)  # nothing is scheduled any more: the timer thread ends
        assert not thread.is_alive()
