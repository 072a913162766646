"""Whether an asker on another node may have given up on a request queued here.

:class:`Hearing` is how this node hears one connection of a peer: when its frames come, and
what they say of how the peer hears this node. :class:`RemoteAsker` is what a queued request's
``Reply.asker`` is for an asker on another node: it turns ``stopped`` once the asker may have
given up, so the actor does not start the request (at-most-once, see
:mod:`llmos.transport._errors`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from llmos.transport._io import Pulse

__all__ = ["Hearing", "RemoteAsker"]

_monotonic = time.monotonic
_MAX_TIMEOUT_MS = 86_400_000  # a heartbeat timeout a peer may declare: up to a day


class Hearing:
    """How this node hears one connection of a peer (for :class:`RemoteAsker`): when its
    frames come (``seen``), and when one last said its node had not heard this node for longer
    than ``seen.gap`` (``unheard``, monotonic). Per connection, not per account: on a key that
    several nodes share, one node's silence must not be hidden by another's frames, nor
    another's deafness refuse its requests. Written by the I/O thread, read by any."""

    __slots__ = ("seen", "unheard")

    def __init__(self, gap: float) -> None:
        self.seen = Pulse(gap)
        self.unheard = -math.inf

    def pinged(self, silence: Any, timeout: Any) -> None:
        """A heartbeat: its node has not heard this node for ``silence`` ms, and gives up on a
        node after ``timeout`` ms of silence (both ints, else ignored).

        ``seen.gap`` becomes half that timeout (this node's own until one is declared): the
        peer pings twice in that time, and stops waiting for its requests only after twice
        that silence.
        """
        if type(timeout) is int and 0 < timeout <= _MAX_TIMEOUT_MS:
            self.seen.gap = timeout / 2000
        if type(silence) is int and silence > self.seen.gap * 1000:
            self.unheard = _monotonic()  # it may give up on this node soon


class RemoteAsker:
    """The asker of an ask from another node, as its Reply sees it (``Reply.asker``).

    It has given up (``stopped``) once its give-up time has passed, if since the request was
    read (or in the request itself) this node's I/O thread stopped turning (frozen, starved),
    the peer stopped sending (its heartbeats) for longer than the pulse's gap, or one of its
    frames said it had heard nothing from this node for longer than that gap (a one-way cut:
    its frames arrive, this node's answers do not). A heartbeat says so outright; a request
    through its give-up time, which is its send time plus the asker's heartbeat timeout less
    that silence. Then the peer may have heard nothing from this node for its heartbeat
    timeout and reported the request failed, so the actor must not start it (it settles it
    with AskAbandoned, answered as RequestExpired). While all kept going, the peer kept
    hearing this node's answers to its heartbeats and still waits, so a request queued past
    its give-up time on a busy but live node is still run.

    Why the last two together suffice: the gap is half the peer's heartbeat timeout ``H``, which
    its heartbeats declare (``Hearing.pinged``). Before the peer gives up, its silence grows
    from ``H / 2`` to ``H``. Either a frame sent in that time arrived (a heartbeat or a
    request), saying so, or none did, and its frames stopped for ``H / 2``.
    """

    __slots__ = ("give_up", "hearing", "io", "read")

    def __init__(self, io: Pulse, hearing: Hearing, read: float, give_up: float) -> None:
        self.io = io
        self.hearing = hearing  # its connection's: on a key several nodes share, each its own
        self.read = read  # when the request was read (monotonic)
        self.give_up = give_up  # its give-up time plus clock_skew, on this node's clock

    @property
    def stopped(self) -> bool:
        now = _monotonic()
        hearing = self.hearing
        return now > self.give_up and (
            self.io.missed_since(self.read, now)
            or hearing.seen.missed_since(self.read, now)
            or hearing.unheard >= self.read
        )
