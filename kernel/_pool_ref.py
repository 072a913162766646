"""PoolRef: a ref that behaves like an actor ref and spreads its messages over a pool.

Routing happens in the sender's thread: the router picks a member and the message goes straight
into that member's mailbox (one decision, no extra hop through the pool actor). If the chosen
member stopped for good in the meantime, the message is routed again (a replacement is already
in the table), so work sent to a pool is not lost when a member dies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llmos.actors import ActorDeadError, ActorRef, ActorStats, LocalRef, Reply, default_ask_timeout
from llmos.actors.lowlevel import Cell, check_message
from llmos.kernel._children import Sync
from llmos.kernel._pool import PoolCore
from llmos.kernel._stats import (
    BatchFigures,
    PoolStats,
    load_balance_efficiency,
    parallel_efficiency,
    utilisation,
)

__all__ = ["Batch", "GatherReply", "PoolRef"]

_RETRIES = 3


class GatherReply(Reply):
    """The answer of a broadcast ask: ``get()`` returns every member's answer, in member order.

    Raises (from ``get``) the first member error, AskTimeout or ActorDeadError it meets.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: list[Reply], deadline: float, span: float) -> None:
        super().__init__(deadline, None, span)
        self.parts = parts

    def done(self) -> bool:
        return all(part.done() for part in self.parts)

    def get(self, timeout: float | None = None) -> Any:
        end = None if timeout is None else time.monotonic() + timeout
        results = []
        for part in self.parts:
            left = None if end is None else max(end - time.monotonic(), 1e-6)
            results.append(part.get(left))
        return results

    result = get


class Batch:
    """Measures one batch of work on a pool: start it, send the work, wait for it, finish it.

    Example::

        batch = pool.batch()
        replies = [pool.ask(Task(i)) for i in range(100)]
        for r in replies:
            r.get()
        figures = batch.finish()   # BatchFigures: speed-up, parallel efficiency, ...
    """

    def __init__(self, core: PoolCore) -> None:
        self._core = core
        self._start = time.perf_counter()
        self._seconds = core.member_seconds(self._start)
        self._before = {c.name: (c.busy, c.processed) for c in core.cells}

    def finish(self) -> BatchFigures:
        """End the batch now (call it once all its work is done) and compute its figures."""
        core = self._core
        end = time.perf_counter()
        wall = end - self._start
        members = (core.member_seconds(end) - self._seconds) / wall if wall > 0 else 0.0
        busy: list[float] = []
        tasks = 0
        for cell in sorted(core.cells, key=lambda c: c.name):
            before_busy, before_done = self._before.get(cell.name, (0.0, 0))
            busy.append(cell.busy - before_busy)
            tasks += cell.processed - before_done
        total = sum(busy)
        speed_up, efficiency = parallel_efficiency(total, wall, members)
        figures = BatchFigures(
            tasks=tasks,
            members=members,
            wall_seconds=wall,
            busy_seconds=total,
            member_busy=tuple(busy),
            speed_up=speed_up,
            parallel_efficiency=efficiency,
            load_balance_efficiency=load_balance_efficiency(busy),
            utilisation=utilisation(total, members * wall),
        )
        core.last_batch = figures
        return figures


class PoolRef(ActorRef):
    """The ref of a pool: tell, ask and ask_async go to a member chosen by the pool's router.

    ``broadcast`` pools send every message to every member; their ``ask`` returns a
    :class:`GatherReply` (a list of answers) and ``ask_async`` awaits that list.
    """

    __slots__ = ("_core",)

    def __init__(self, core: PoolCore) -> None:
        super().__init__(core.name, None)
        self._core = core

    def _cells(self) -> tuple[Cell, ...]:
        cells = self._core.cells
        if not cells:
            raise ActorDeadError(
                f"pool {self.name!r} is stopped (no members); spawn it again with spawn_pool"
            )
        return cells

    def _pick(self, message: Any) -> Cell:
        cells = self._cells()
        return self._core.router.select(message, cells)

    def tell(self, message: Any) -> None:
        core = self._core
        cells = core.cells
        router = core.router
        if cells and not router.broadcast:
            try:  # the fast path: one routing decision, then the member's own tell
                router.select(message, cells).ref.tell(message)
                return
            except ActorDeadError:
                pass  # that member is gone; its replacement is in the table
        if router.broadcast:
            check_message(message)
            for cell in self._cells():
                cell.ref.tell(message)
            return
        for _ in range(_RETRIES):
            cell = self._pick(message)
            try:
                cell.ref.tell(message)
                return
            except ActorDeadError:
                continue
        raise ActorDeadError(f"no member of pool {self.name!r} took the message; is it stopping?")

    def ask(self, message: Any, timeout: float | None = None) -> Reply:
        if self._core.router.broadcast:
            span = default_ask_timeout() if timeout is None else timeout
            parts = [cell.ref.ask(message, span) for cell in self._cells()]
            return GatherReply(parts, time.monotonic() + span, span)
        for _ in range(_RETRIES):
            cell = self._pick(message)
            try:
                return cell.ref.ask(message, timeout)
            except ActorDeadError:
                continue
        raise ActorDeadError(f"no member of pool {self.name!r} took the ask; is it stopping?")

    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        if self._core.router.broadcast:
            cells = self._cells()
            return list(await asyncio.gather(*(c.ref.ask_async(message, timeout) for c in cells)))
        for _ in range(_RETRIES):
            cell = self._pick(message)
            try:
                return await cell.ref.ask_async(message, timeout)
            except ActorDeadError:
                if not cell.stopped:
                    raise  # the member's own answer, not a routing miss
        raise ActorDeadError(f"no member of pool {self.name!r} took the ask; is it stopping?")

    def is_alive(self) -> bool:
        manager = self._core.manager
        return manager is not None and manager.is_alive() and bool(self._core.cells)

    def stop(self, timeout: float | None = None) -> bool:
        manager = self._core.manager
        return True if manager is None else manager.stop(timeout)

    def watch(self, watcher: ActorRef) -> None:
        """Have ``watcher`` receive ``Terminated`` when the pool stops for good."""
        manager = self._core.manager
        if manager is None:
            raise ActorDeadError(f"pool {self.name!r} has not started")
        manager.watch(watcher)

    def unwatch(self, watcher: ActorRef) -> None:
        manager = self._core.manager
        if manager is not None:
            manager.unwatch(watcher)

    def statistics(self) -> ActorStats:
        """The pool as one actor: members' counters summed (latency: their mean)."""
        s = self._core.snapshot()
        members = s.members
        handled = sum(m.processed for m in members)
        mean = sum(m.mean_latency * m.processed for m in members) / handled if handled else 0.0
        state = "running" if self.is_alive() else "stopped"
        return ActorStats(
            name=s.name,
            state=state,
            mailbox_depth=s.mailbox_depth,
            in_flight=s.in_flight,
            processed=s.processed,
            failed=s.failed,
            restarts=s.restarts,
            busy_seconds=s.busy_seconds,
            last_latency=max((m.last_latency for m in members), default=0.0),
            mean_latency=mean,
            deferred=sum(m.deferred for m in members),
        )

    # -- pool extras ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Members now (retiring ones excluded)."""
        return len(self._core.cells)

    @property
    def router(self) -> str:
        return self._core.router.name

    def members(self) -> list[LocalRef]:
        """Refs of the current members."""
        return [cell.ref for cell in self._core.cells]

    def pool_stats(self) -> PoolStats:
        """A snapshot of the pool's counters and scheduling figures."""
        return self._core.snapshot()

    def batch(self) -> Batch:
        """Start measuring a batch of work (see :class:`Batch`)."""
        return Batch(self._core)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until the pool actor has handled everything sent to it so far (scaling checks,
        member failures). Meant for tests and benchmarks.

        Raises:
            ActorDeadError: the pool is stopped.
            AskTimeout: it did not get there within ``timeout``.
        """
        manager = self._core.manager
        if manager is None:
            raise ActorDeadError(f"pool {self.name!r} has not started")
        manager.ask(Sync(), timeout).get()
