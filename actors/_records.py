"""Frozen records the actor core reports: statistics and dead letters."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any

__all__ = [
    "ASK_LATENCY_BOUNDS",
    "ActorStats",
    "DeadLetter",
    "dead_letter_count",
    "dead_letters",
    "record_dead_letter",
]


ASK_LATENCY_BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the buckets of ``ActorStats.ask_latency_counts``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ActorStats:
    """A snapshot of one actor's counters, cumulative across its restarts.

    Attributes:
        name: the actor's name.
        state: "running", "failed" (waiting for its supervisor), "restarting", or "stopped".
        mailbox_depth: messages queued now.
        in_flight: 1 while a message is being handled, else 0.
        processed: messages handled (successfully or not).
        failed: messages whose handler raised.
        restarts: times a fresh instance replaced a failed one.
        busy_seconds: total time spent inside handlers.
        last_latency: seconds from send to handled for the latest message.
        mean_latency: mean of that over all handled messages.
        class_name: the actor's class.
        deferred: asks it took over with ``actor_defer_reply`` and has not answered yet.
        ask_latency_counts: asks handled (or failed), by their send-to-handled latency: one
            count per bucket of :data:`ASK_LATENCY_BOUNDS` (latency <= that bound, above the
            previous one), then one for longer; a histogram, not cumulative.
        ask_latency_sum: the summed send-to-handled latency of those asks, in seconds.
    """

    name: str
    state: str
    mailbox_depth: int
    in_flight: int
    processed: int
    failed: int
    restarts: int
    busy_seconds: float
    last_latency: float
    mean_latency: float
    class_name: str = ""
    deferred: int = 0
    ask_latency_counts: tuple[int, ...] = ()
    ask_latency_sum: float = 0.0

    @property
    def load(self) -> int:
        """Work waiting or running: mailbox depth + in flight + deferred asks (what
        least-loaded routing reads)."""
        return self.mailbox_depth + self.in_flight + self.deferred


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that was not handled.

    Attributes:
        recipient: the name of the actor it was sent to.
        message: the message itself.
        reason: why it was not handled ("failed", "stopped", "unhandled", "expired", ...).
        at: ``time.time()`` when it was recorded.
    """

    recipient: str
    message: Any
    reason: str
    at: float


_MAX_KEPT = 10_000
_kept: collections.deque[DeadLetter] = collections.deque(maxlen=_MAX_KEPT)
_count = [0]
_lock = threading.Lock()


def record_dead_letter(recipient: str, message: Any, reason: str) -> None:
    """Record a message that will not be handled (the newest 10,000 are kept)."""
    with _lock:
        _kept.append(DeadLetter(recipient, message, reason, time.time()))
        _count[0] += 1


def dead_letters(recipient: str | None = None) -> list[DeadLetter]:
    """The dead letters kept so far, oldest first, optionally only those for one actor."""
    with _lock:
        letters = list(_kept)
    if recipient is None:
        return letters
    return [d for d in letters if d.recipient == recipient]


def dead_letter_count() -> int:
    """How many dead letters were recorded since the process started (kept or not)."""
    return _count[0]
