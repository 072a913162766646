"""Pools: a supervisor whose children are interchangeable members, grown and shrunk on demand.

A pool has three parts:

- :class:`PoolCore`, plain shared state: the members (a tuple of cells, replaced as a whole),
  the router, the counters of retired members, the member-seconds clock;
- :class:`Pool`, the actor that supervises the members (one_for_one, a restart budget per
  member), replaces a member that failed for good, handing it the failed member's queued work,
  and runs the autoscaling checks on its timer;
- :class:`~llmos.kernel.PoolRef`, what callers hold: it routes in the sender's thread, straight
  into a member's mailbox, so a pool costs one routing decision per message and no extra hop.

Autoscaling (when ``max_size > min_size``): every ``interval`` seconds the pool looks at the
queued messages per member; above ``grow_above`` for ``grow_after`` checks in a row, it adds
``step`` members (up to ``max_size``); with no work at all for ``shrink_after`` checks in a row,
it retires ``step`` members per check (down to ``min_size``). A retired member leaves the
routing table first and stops one check later, after finishing what it had queued.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from typing import Any

from llmos.actors import ActorError, LocalRef, MailboxFull, handler, message
from llmos.actors.lowlevel import Cell, envelope
from llmos.kernel._children import ChildRecord
from llmos.kernel._errors import SupervisionError
from llmos.kernel._routers import Router
from llmos.kernel._spec import Backoff, ChildSpec
from llmos.kernel._stats import BatchFigures, PoolStats, load_balance_efficiency, utilisation
from llmos.kernel._supervisor import Supervisor
from llmos.kernel._timer import Timer, TimerHandle

__all__ = ["Autoscale", "Pool", "PoolCore", "ScaleTick", "live_pools"]

_live: dict[str, PoolCore] = {}
_live_lock = threading.Lock()


def live_pools() -> list[PoolCore]:
    """The pools running in this process."""
    with _live_lock:
        return list(_live.values())


@dataclasses.dataclass(frozen=True, slots=True)
class Autoscale:
    """When a pool grows and shrinks (only used when ``max_size > min_size``).

    Attributes:
        interval: seconds between checks.
        grow_above: queued messages per member above which the pool is behind.
        grow_after: checks in a row behind before members are added.
        shrink_after: checks in a row with no work at all before members are retired.
        step: members added or retired per decision.
    """

    interval: float = 0.25
    grow_above: float = 2.0
    grow_after: int = 2
    shrink_after: int = 8
    step: int = 1

    def __post_init__(self) -> None:
        if not self.interval > 0 or self.grow_above < 0:
            raise SupervisionError(f"Autoscale needs interval > 0 and grow_above >= 0: {self}")
        if min(self.grow_after, self.shrink_after, self.step) < 1:
            raise SupervisionError(f"Autoscale grow_after, shrink_after, step must be >= 1: {self}")


@message("llmos.kernel.ScaleTick", local_only=True)
class ScaleTick:
    """The pool's periodic autoscaling check."""


@message("llmos.kernel.Replenish", local_only=True)
class Replenish:
    """A member went away: bring the pool back to its minimum size."""


class PoolCore:
    """The state a pool shares between its manager actor, its refs and the kernel's stats."""

    def __init__(
        self,
        name: str,
        member: ChildSpec,
        size: int,
        min_size: int,
        max_size: int,
        router: Router,
        autoscale: Autoscale,
        timer: Timer,
    ) -> None:
        if not 1 <= min_size <= size <= max_size:
            raise SupervisionError(
                f"pool {name!r} needs 1 <= min_size <= size <= max_size, got min_size="
                f"{min_size}, size={size}, max_size={max_size}"
            )
        self.name = name
        self.member = member
        self.size = size
        self.min_size = min_size
        self.max_size = max_size
        self.router = router
        self.autoscale = autoscale
        self.timer = timer
        self.cells: tuple[Cell, ...] = ()
        self.manager: LocalRef | None = None
        self.lock = threading.Lock()
        self.numbers = itertools.count(1)
        self.started = time.perf_counter()
        self._seconds = 0.0
        self._since = self.started
        self.retired = [0, 0, 0, 0.0]  # processed, failed, restarts, busy of members gone
        self.grown = self.shrunk = self.replaced = 0
        self.last_batch: BatchFigures | None = None

    def add(self, cell: Cell) -> None:
        with self.lock:
            if cell not in self.cells:
                self._set((*self.cells, cell))

    def remove(self, cell: Cell) -> bool:
        with self.lock:
            if cell not in self.cells:
                return False
            self._set(tuple(c for c in self.cells if c is not cell))
        return True

    def retire(self, cell: Cell) -> None:
        """Count a member that is gone for good into the pool's totals."""
        s = cell.statistics()
        with self.lock:
            self.retired[0] += s.processed
            self.retired[1] += s.failed
            self.retired[2] += s.restarts
            self.retired[3] += s.busy_seconds

    def _set(self, cells: tuple[Cell, ...]) -> None:
        now = time.perf_counter()
        self._seconds += len(self.cells) * (now - self._since)
        self._since = now
        self.router.update(cells)
        self.cells = cells

    def member_seconds(self, now: float | None = None) -> float:
        """Available time so far: the integral of the member count over time."""
        now = time.perf_counter() if now is None else now
        with self.lock:
            return self._seconds + len(self.cells) * (now - self._since)

    def snapshot(self) -> PoolStats:
        now = time.perf_counter()
        cells = self.cells
        members = tuple(c.statistics() for c in cells)
        with self.lock:
            processed, failed, restarts, busy = self.retired
        busy += sum(m.busy_seconds for m in members)
        seconds = self.member_seconds(now)
        return PoolStats(
            name=self.name,
            router=self.router.name,
            size=len(cells),
            min_size=self.min_size,
            max_size=self.max_size,
            members=members,
            mailbox_depth=sum(m.mailbox_depth for m in members),
            in_flight=sum(m.in_flight for m in members),
            processed=int(processed) + sum(m.processed for m in members),
            failed=int(failed) + sum(m.failed for m in members),
            restarts=int(restarts) + sum(m.restarts for m in members),
            busy_seconds=busy,
            wall_seconds=now - self.started,
            member_seconds=seconds,
            load_balance_efficiency=load_balance_efficiency([m.busy_seconds for m in members]),
            utilisation=utilisation(busy, seconds),
            grown=self.grown,
            shrunk=self.shrunk,
            replaced=self.replaced,
            last_batch=self.last_batch,
        )


class Pool(Supervisor):
    """The actor that supervises a pool's members and scales them. Start it with
    ``kernel().spawn_pool(...)``, which returns the pool's :class:`~llmos.kernel.PoolRef`.

    Messages sent to the pool actor by name (``actors.get(pool_name)``, or from another node)
    are forwarded to a member chosen by the router, asks included (the member answers the
    asker directly); a broadcast pool forwards tells only.
    """

    def __init__(
        self,
        core: PoolCore,
        *,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = Backoff(),  # noqa: B008 (frozen, shared safely)
    ) -> None:
        super().__init__(
            strategy="one_for_one",
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            escalate=False,
            timer=core.timer,
        )
        self._core = core
        self._hot = 0
        self._idle = 0
        self._retiring: list[Cell] = []
        self._tick: TimerHandle | None = None
        core.manager = self.actor_ref
        with _live_lock:
            _live[core.name] = core
        try:  # members are up once the pool is, so spawn_pool returns a working ref
            while len(core.cells) < core.size:
                self._add_member()
        except BaseException:
            self._end()
            self._shutdown_children("stopped: its pool failed to start", graceful=False)
            raise

    def on_start(self) -> None:
        self._schedule_tick()

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        # Members are interchangeable: the constructor already started fresh ones.
        self.on_start()

    def on_stop(self) -> None:
        self._end()
        super().on_stop()

    def on_failure(self, *exc_info: Any) -> None:
        self._end()
        super().on_failure(*exc_info)

    def _end(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        core = self._core
        with _live_lock:
            if _live.get(core.name) is core:
                del _live[core.name]
        with core.lock:
            core.size = max(core.min_size, len(core.cells))

    # -- members -------------------------------------------------------------------------------

    def _add_member(self) -> Cell:
        core = self._core
        return self._start_child(core.member.named(f"{core.name}-{next(core.numbers)}")).cell

    def _child_added(self, rec: ChildRecord) -> None:
        self._core.add(rec.cell)

    def _child_removed(self, rec: ChildRecord) -> None:
        core = self._core
        core.remove(rec.cell)
        core.retire(rec.cell)
        if rec.cell in self._retiring:
            return
        if not self._sup_table.closing and len(core.cells) < core.min_size:
            self._tell_self(Replenish())

    def _stop_for_good(self, rec: ChildRecord, reason: str) -> None:
        """Replace a member that will not restart, handing its queued work to the new one."""
        core = self._core
        core.remove(rec.cell)
        if not self._sup_table.closing:
            fresh = self._add_member()
            core.replaced += 1
            rec.cell.hand_over(fresh)
        super()._stop_for_good(rec, reason)

    @handler(Replenish)
    def _on_replenish(self, msg: Replenish) -> None:
        while not self._sup_table.closing and len(self._core.cells) < self._core.min_size:
            self._add_member()

    # -- autoscaling ---------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        core = self._core
        if core.max_size > core.min_size and not self._sup_table.closing:
            self._tick = self.supervisor_timer.call_later(core.autoscale.interval, self._send_tick)

    def _send_tick(self) -> None:
        try:
            self.actor_ref.tell(ScaleTick())
        except ActorError:
            pass  # the pool stopped meanwhile

    @handler(ScaleTick)
    def _on_tick(self, msg: ScaleTick) -> None:
        self._tick = None
        for cell in self._retiring:
            cell.request_stop()  # out of the routing table since the last check
        self._retiring = [c for c in self._retiring if not c.stopped]
        self.autoscale_step()
        self._schedule_tick()

    def autoscale_step(self) -> int:
        """Run one autoscaling check now; returns members added (>0) or retired (<0)."""
        core, rule = self._core, self._core.autoscale
        cells = core.cells
        n = len(cells)
        if n == 0:
            return 0
        queued = sum(c.mailbox.depth() for c in cells)
        busy = sum(c.in_flight for c in cells)
        self._hot = self._hot + 1 if queued / n > rule.grow_above else 0
        self._idle = self._idle + 1 if queued + busy == 0 else 0
        if self._hot >= rule.grow_after and n < core.max_size:
            self._hot = 0
            added = min(rule.step, core.max_size - n)
            for _ in range(added):
                self._add_member()
            core.grown += added
            with core.lock:
                core.size = len(core.cells)
            return added
        if self._idle >= rule.shrink_after and n > core.min_size:
            gone = list(cells[-min(rule.step, n - core.min_size) :])
            for cell in gone:
                core.remove(cell)
                self._retiring.append(cell)
            core.shrunk += len(gone)
            with core.lock:
                core.size = len(core.cells)
            return -len(gone)
        return 0

    # -- messages sent to the pool actor itself --------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        cells = self._core.cells
        asked = self.actor_asked
        if not cells:
            raise ActorError(f"pool {self._core.name!r} has no members; it is stopping")
        if self._core.router.broadcast:
            if asked:
                raise ActorError(
                    f"pool {self._core.name!r} broadcasts: ask it through its PoolRef "
                    "(kernel().lookup(name)), which gathers every member's answer"
                )
            for cell in cells:
                cell.ref.tell(message)
            return None
        reply = self.actor_defer_reply() if asked else None
        cell = self._core.router.select(message, cells)
        try:
            cell.mailbox.put(envelope(message, reply))
        except MailboxFull as exc:
            if reply is None:
                raise
            reply.set_exception(exc)
        return None
