"""Mailboxes: a fast unbounded queue, or a bounded one with an explicit policy when full.

A mailbox belongs to an actor's cell, not to one actor instance, so the messages queued behind
a failing message survive the crash and are handled by the restarted instance. Control
envelopes (stop) bypass the capacity: a full mailbox never refuses them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from llmos.actors._errors import LlmosError, MailboxFull
from llmos.actors._trace import outgoing

__all__ = ["HALT", "Envelope", "Mailbox", "TurnScheduler", "WhenFull", "envelope"]

WhenFull = Literal["block", "fail"]

_monotonic = time.monotonic


Envelope = tuple[Any, Any, float, str | None]
"""One queued message as a plain tuple ``(message, reply, sent_at, trace)``: the message, the
reply to complete (None for a tell), ``time.monotonic()`` when it was sent, and the W3C
traceparent of the span it was sent from (None while tracing is off). A tuple, because
building one is the hot path of every tell."""


class TurnScheduler(Protocol):
    """What a mailbox tells when a message arrives for an actor with no thread of its own
    (a :class:`~llmos.actors.lowlevel.Cell` run by a dispatcher is one)."""

    scheduled: bool
    """True while a turn is queued or running: nothing to do."""

    def schedule_turn(self) -> None:
        """Queue a turn (quick, in the sender's thread); ignores a call while one is queued."""


def envelope(message: Any, reply: Any = None) -> Envelope:
    """Wrap a message for a mailbox, stamped with the time it was sent and the current trace."""
    return (message, reply, _monotonic(), outgoing(message))


class _Halt:
    """The control envelope that ends an instance's loop after the messages queued before it
    (to stop the actor, or to restart it when a supervisor asked for that)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "HALT"


HALT = _Halt()


class Mailbox:
    """The queue of one actor.

    Args:
        capacity: the most messages queued at once, or None for no bound.
        when_full: "block" waits up to ``put_timeout`` for room, then raises MailboxFull;
            "fail" raises MailboxFull at once.
        put_timeout: how long a blocked sender waits.
    """

    __slots__ = (
        "_put",
        "_queue",
        "_room",
        "_turns",
        "capacity",
        "get",
        "put",
        "put_timeout",
        "when_full",
    )

    def __init__(
        self, capacity: int | None = None, when_full: WhenFull = "block", put_timeout: float = 5.0
    ) -> None:
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            raise LlmosError(f"mailbox capacity must be a positive int or None, got {capacity!r}")
        if when_full not in ("block", "fail"):
            raise LlmosError(f"when_full must be 'block' or 'fail', got {when_full!r}")
        if put_timeout < 0:
            raise LlmosError(f"put_timeout must be >= 0, got {put_timeout!r}")
        self._queue: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
        self.capacity = capacity
        self.when_full = when_full
        self.put_timeout = put_timeout
        self._room = threading.Semaphore(capacity) if capacity is not None else None
        # ``put(envelope, timeout=None)``: queue, following the policy when full. For an
        # unbounded mailbox it is the queue's own put (in C): the local tell and ask, the
        # hottest paths, then cost no Python-level call.
        self.put: Callable[..., None] = self._queue.put if capacity is None else self._put_bounded
        self._put = self.put
        self._turns: TurnScheduler | None = None
        # ``get(block=True, timeout=None)``: take the next envelope, waiting for one (raises
        # queue.Empty after ``timeout``); the queue's own get (in C) for an unbounded mailbox, so
        # the actor's loop, too, makes no Python-level call per message.
        self.get: Callable[..., Envelope] = (
            self._queue.get if capacity is None else self._get_bounded
        )

    def _put_bounded(self, envelope: Envelope, timeout: float | None = None) -> None:
        """Queue a message, following the policy when the mailbox is full.

        Raises:
            MailboxFull: no room (at once for "fail", after the timeout for "block").
        """
        room = self._room
        assert room is not None
        if self.when_full == "fail":
            ok = room.acquire(False)
        else:
            ok = room.acquire(True, self.put_timeout if timeout is None else timeout)
        if not ok:
            waited = "" if self.when_full == "fail" else " after waiting"
            raise MailboxFull(
                f"mailbox full ({self.capacity} messages){waited}; the actor is behind: "
                "retry later, slow down, or raise its capacity"
            )
        self._queue.put(envelope)

    def schedule_turns(self, turns: TurnScheduler) -> None:
        """From now on, after every envelope queued (``put`` and ``put_control``, in the
        sender's thread), call ``turns.schedule_turn()`` unless ``turns.scheduled`` is set.

        How a cell with no thread of its own (run by a :class:`~llmos.actors.Dispatcher`)
        learns that it has work. The flag is read here, so a tell to an actor whose turn is
        already queued or running makes no call.
        """
        self._turns = turns
        self.put = self._put_scheduling

    def _put_scheduling(self, envelope: Envelope, timeout: float | None = None) -> None:
        self._put(envelope, timeout=timeout)
        turns = self._turns
        if not turns.scheduled:  # type: ignore[union-attr]  # set before put is
            turns.schedule_turn()  # type: ignore[union-attr]

    def put_control(self, envelope: Envelope) -> None:
        """Queue a control envelope (HALT); never refused, never counted against capacity."""
        self._queue.put(envelope)
        turns = self._turns
        if turns is not None and not turns.scheduled:
            turns.schedule_turn()

    def _get_bounded(self, block: bool = True, timeout: float | None = None) -> Envelope:
        """Take the next envelope, waiting for one, and give its room back."""
        item = self._queue.get(block, timeout)
        if self._room is not None and item[0] is not HALT:
            self._room.release()
        return item

    def get_nowait(self) -> Envelope | None:
        """Take the next envelope, or None when the mailbox is empty."""
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        if self._room is not None and item[0] is not HALT:
            self._room.release()
        return item

    def depth(self) -> int:
        """How many envelopes are queued now."""
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    def __repr__(self) -> str:
        bound = "unbounded" if self.capacity is None else f"capacity={self.capacity}"
        return f"<Mailbox {bound} depth={self.depth()}>"
