"""Frozen records of what the kernel reports, and the three classic scheduling figures.

- load-balancing efficiency = the least-loaded member's load / the mean member load
  (1.0 = perfectly even; a member's load is its busy time);
- utilisation = busy time / available time (members x wall time);
- parallel efficiency = speed-up / members, where speed-up = summed task time / wall time of a
  finished batch of work.

A figure with nothing to measure (no members, no time, no work) is None, never a made-up 0 or 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from llmos.actors import ActorDeadError, ActorStats
from llmos.kernel._ledger import Ledger

__all__ = [
    "BatchFigures",
    "KernelStats",
    "PoolStats",
    "load_balance_efficiency",
    "parallel_efficiency",
    "utilisation",
]


def load_balance_efficiency(loads: Sequence[float]) -> float | None:
    """min(loads) / mean(loads); None when there are no loads or no load at all."""
    if not loads:
        return None
    mean = sum(loads) / len(loads)
    if mean <= 0:
        return None
    return min(loads) / mean


def utilisation(busy_seconds: float, available_seconds: float) -> float | None:
    """busy / available; None when no time was available."""
    if available_seconds <= 0:
        return None
    return busy_seconds / available_seconds


def parallel_efficiency(
    task_seconds: float, wall_seconds: float, workers: float
) -> tuple[float | None, float | None]:
    """(speed-up, parallel efficiency) of a finished batch; None where undefined."""
    if wall_seconds <= 0 or workers <= 0:
        return None, None
    speed_up = task_seconds / wall_seconds
    return speed_up, speed_up / workers


@dataclasses.dataclass(frozen=True, slots=True)
class BatchFigures:
    """The scheduling figures of one finished batch of work on a pool.

    Attributes:
        tasks: messages handled by the pool's members during the batch.
        members: mean number of members over the batch (the pool size when it did not scale).
        wall_seconds: from ``pool.batch()`` to ``Batch.finish()``.
        busy_seconds: summed time inside handlers (the summed task time).
        member_busy: busy seconds per member, by member name order.
        speed_up: busy_seconds / wall_seconds.
        parallel_efficiency: speed_up / members.
        load_balance_efficiency: min(member_busy) / mean(member_busy).
        utilisation: busy_seconds / (members x wall_seconds).
    """

    tasks: int
    members: float
    wall_seconds: float
    busy_seconds: float
    member_busy: tuple[float, ...]
    speed_up: float | None
    parallel_efficiency: float | None
    load_balance_efficiency: float | None
    utilisation: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool: its members' counters and its scheduling figures.

    Counters (processed, failed, restarts, busy_seconds) include members that have since been
    retired or replaced, so they only grow.

    Attributes:
        name: the pool's name (the name its ref carries).
        router: ``round_robin``, ``least_loaded``, ``consistent_hash`` or ``broadcast``.
        size: members now; min_size, max_size: the autoscaling bounds.
        members: each current member's :class:`~llmos.actors.ActorStats`.
        mailbox_depth, in_flight: summed over current members.
        processed, failed, restarts, busy_seconds: summed over all members ever.
        wall_seconds: since the pool started.
        member_seconds: the integral of the member count over that time (available time).
        load_balance_efficiency: over the current members' busy time.
        utilisation: busy_seconds / member_seconds.
        grown, shrunk, replaced: members added by autoscaling, retired by it, and started in
            place of a member that failed for good.
        last_batch: the figures of the last finished :meth:`PoolRef.batch`, if any.
    """

    name: str
    router: str
    size: int
    min_size: int
    max_size: int
    members: tuple[ActorStats, ...]
    mailbox_depth: int
    in_flight: int
    processed: int
    failed: int
    restarts: int
    busy_seconds: float
    wall_seconds: float
    member_seconds: float
    load_balance_efficiency: float | None
    utilisation: float | None
    grown: int
    shrunk: int
    replaced: int
    last_batch: BatchFigures | None


@dataclasses.dataclass(frozen=True, slots=True)
class KernelStats:
    """A snapshot of a kernel and everything it supervises.

    Attributes:
        at: ``time.time()`` of the snapshot.
        actors: every actor in the kernel's tree (supervisors and pool members included).
        pools: every pool in this process.
        processed, failed, restarts: summed over ``actors``.
        ask_failures: asks whose handler raised, as reported to supervisors.
        gave_up: children the kernel stopped for good after too many restarts.
        dead_letters: dead letters recorded in this process so far.
        tokens: the token ledger of every model actor running in this process, merged (per
            agent, per dialogue and per model, with the agents' budgets).
    """

    at: float
    actors: tuple[ActorStats, ...]
    pools: tuple[PoolStats, ...]
    processed: int
    failed: int
    restarts: int
    ask_failures: int
    gave_up: int
    dead_letters: int
    tokens: Ledger = dataclasses.field(default_factory=lambda: Ledger({}, {}, {}))

    def actor(self, name: str) -> ActorStats:
        """The stats of the actor named ``name``.

        Raises:
            ActorDeadError: no actor of that name was in the snapshot.
        """
        for stats in self.actors:
            if stats.name == name:
                return stats
        raise ActorDeadError(f"no actor named {name!r} in this snapshot; is it running?")

    def pool(self, name: str) -> PoolStats:
        """The stats of the pool named ``name``.

        Raises:
            ActorDeadError: no pool of that name was in the snapshot.
        """
        for stats in self.pools:
            if stats.name == name:
                return stats
        raise ActorDeadError(f"no pool named {name!r} in this snapshot; is it running?")
