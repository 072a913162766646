"""Actor refs: stable handles (node + name) with tell, ask and ask_async.

A ref never points at an actor instance, only at its name on its node, so it survives restarts.
:class:`LocalRef` reaches an actor in this process; the transport adds a remote ref with the
same API, and refs travel inside messages.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from typing import TYPE_CHECKING, Any

from llmos.actors import _messages
from llmos.actors._errors import ActorDeadError, LlmosError, MailboxFull
from llmos.actors._messages import check_message
from llmos.actors._records import ActorStats
from llmos.actors._reply import AsyncReply, Reply

if TYPE_CHECKING:
    from llmos.actors._cell import Cell

__all__ = [
    "ActorRef",
    "LocalRef",
    "default_ask_timeout",
    "set_default_ask_timeout",
]

_monotonic = time.monotonic
_default_timeout = [30.0]


def default_ask_timeout() -> float:
    """The timeout an ask gets when none is given (30 s unless changed)."""
    return _default_timeout[0]


def set_default_ask_timeout(seconds: float) -> None:
    """Change the timeout an ask gets when none is given."""
    _default_timeout[0] = check_timeout(seconds)


def check_timeout(timeout: float | None) -> float:
    """Validate an ask timeout, returning the default one for None.

    Raises:
        LlmosError: the timeout is not a positive finite number.
    """
    if timeout is None:
        return _default_timeout[0]
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise LlmosError(
            f"an ask timeout must be a positive finite number of seconds, got {timeout!r}"
        )
    return float(timeout)


class ActorRef(abc.ABC):
    """A stable handle on an actor: its node and its name.

    Two refs are equal when they name the same actor on the same node. A ref taken before a
    restart reaches the new instance.
    """

    __slots__ = ("name", "node")

    def __init__(self, name: str, node: str | None) -> None:
        self.name = name
        self.node = node

    @property
    def address(self) -> str:
        """``name@node`` for a remote actor, the bare name for a local one."""
        return self.name if self.node is None else f"{self.name}@{self.node}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.name == self.name and other.node == self.node

    def __hash__(self) -> int:
        return hash((self.name, self.node))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    @abc.abstractmethod
    def tell(self, message: Any) -> None:
        """Send a message and return at once (fire and forget).

        Raises:
            MessageError: the message cannot be sent (no wire form).
            ActorDeadError: the actor is stopped for good.
            MailboxFull: its bounded mailbox refused the message.
        """

    @abc.abstractmethod
    def ask(self, message: Any, timeout: float | None = None) -> Reply:
        """Send a message and return a :class:`Reply` for the answer.

        Args:
            message: the request.
            timeout: seconds until the ask gives up (default: ``default_ask_timeout()``).

        Returns:
            A reply whose ``get()`` returns the handler's return value or raises its error,
            AskTimeout after the timeout, or ActorDeadError if the actor stops first.

        Raises:
            MessageError, ActorDeadError, MailboxFull: as for ``tell``, at once.
        """

    @abc.abstractmethod
    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        """Ask from asyncio: await the answer without ever blocking the event loop.

        Raises:
            AskTimeout: no answer within the timeout.
            Exception: whatever the handler raised, or ActorDeadError.
        """

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """True while the actor is not stopped for good (a restarting actor is alive)."""

    @abc.abstractmethod
    def stop(self, timeout: float | None = None) -> bool:
        """Stop the actor after the messages already queued; wait up to ``timeout``.

        Returns:
            True if it stopped within the timeout (or was already stopped).
        """

    async def stop_async(self, timeout: float | None = None) -> bool:
        """``stop`` for asyncio: waits in a worker thread, never blocking the loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.stop, timeout)

    @abc.abstractmethod
    def statistics(self) -> ActorStats:
        """A frozen snapshot of the actor's counters."""


class LocalRef(ActorRef):
    """A ref to an actor in this process."""

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell.name, None)
        self._cell = cell

    def _live_cell(self) -> Cell:
        cell = self._cell
        if cell.stopped:
            # A new actor may have been started under the same name since.
            from llmos.actors._cell import lookup

            newer = lookup(self.name)
            if newer is None:
                raise ActorDeadError(
                    f"actor {self.name!r} is stopped ({cell.stop_reason}); start it again"
                )
            self._cell = cell = newer
        return cell

    def tell(self, message: Any) -> None:
        check_message(message)
        cell = self._cell
        if cell.stopped:
            cell = self._live_cell()
        cell.mailbox.put((message, None, _monotonic()))
        if cell.stopped:
            cell.drain()  # it stopped while we queued: fail fast, never strand the message

    def ask(self, message: Any, timeout: float | None = None) -> Reply:
        span = check_timeout(timeout)
        check_message(message)
        cell = self._live_cell()
        reply = Reply(_monotonic() + span, cell, span)
        cell.mailbox.put((message, reply, _monotonic()), timeout=span)
        if cell.stopped:
            cell.drain()
        return reply

    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        span = check_timeout(timeout)
        check_message(message)
        cell = self._live_cell()
        loop = asyncio.get_running_loop()
        reply = AsyncReply(_monotonic() + span, cell, span, loop)
        envelope = (message, reply, _monotonic())
        mailbox = cell.mailbox
        if mailbox.capacity is not None and mailbox.when_full == "block":
            try:
                mailbox.put(envelope, timeout=0)
            except MailboxFull:
                # Wait for room in a worker thread so the loop keeps running.
                await loop.run_in_executor(None, mailbox.put, envelope, span)
        else:
            mailbox.put(envelope)
        if cell.stopped:
            cell.drain()
        return await reply.wait()

    def post(
        self, message: Any, reply: Reply | None = None, *, sent_at: float | None = None
    ) -> None:
        """Queue a message that already passed the wire check, never waiting for room.

        For a layer that receives messages from elsewhere (the transport, which decoded it):
        unlike ``tell`` and ``ask`` it does not check the message again, never blocks on a
        full mailbox, and keeps the time the message arrived. With a ``reply``, the actor
        answers it as an ask (complete it with a done callback to forward the answer).

        Args:
            message: the message, as decoded.
            reply: the ask's reply, or None for a tell.
            sent_at: ``time.monotonic()`` when it arrived (default: now), for latency figures.

        Raises:
            ActorDeadError: the actor is stopped for good.
            MailboxFull: its bounded mailbox has no room now.
        """
        cell = self._live_cell()
        cell.mailbox.put((message, reply, _monotonic() if sent_at is None else sent_at), 0)
        if cell.stopped:
            cell.drain()  # it stopped while we queued: fail fast, never strand the message

    def is_alive(self) -> bool:
        try:
            return not self._live_cell().stopped
        except ActorDeadError:
            return False

    def stop(self, timeout: float | None = None, *, block: bool = True) -> bool:
        """Stop the actor after the messages already queued; see ``ActorRef.stop``.

        Args:
            timeout: how long to wait for it to stop.
            block: False to ask it to stop and return at once (watch it to hear when).

        Returns:
            True if it stopped (within the timeout when blocking).
        """
        cell = self._cell
        cell.request_stop()
        if not block:
            return cell.stopped
        return bool(cell.stopped_event.wait(check_timeout(timeout)))

    def statistics(self) -> ActorStats:
        return self._cell.statistics()

    def watch(self, watcher: ActorRef) -> None:
        """Have ``watcher`` receive ``Terminated`` when this actor stops for good."""
        self._cell.watch(watcher)

    def unwatch(self, watcher: ActorRef) -> None:
        self._cell.unwatch(watcher)


_messages._ref_types = (ActorRef,)
