"""Actor refs: stable handles (node + name) with tell, ask and ask_async.

A ref never points at an actor instance, only at its name on its node, so it survives restarts.
:class:`~llmos.actors.LocalRef` (in ``_local_ref``) reaches an actor in this process; the
transport adds a remote ref with the same API, and refs travel inside messages.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from typing import TYPE_CHECKING, Any, TypeVar, overload

from llmos.actors._errors import LlmosError

if TYPE_CHECKING:
    from llmos.actors._records import ActorStats
    from llmos.actors._reply import Reply, Returns

__all__ = ["ActorRef", "check_timeout", "default_ask_timeout", "set_default_ask_timeout"]

A = TypeVar("A")
_monotonic = time.monotonic
_default_timeout = [30.0]


def default_ask_timeout() -> float:
    """The timeout an ask gets when none is given (30 s unless changed)."""
    return _default_timeout[0]


def set_default_ask_timeout(seconds: float) -> None:
    """Change the timeout an ask gets when none is given."""
    _default_timeout[0] = check_timeout(seconds)


def check_timeout(timeout: float | None) -> float:
    """Validate a timeout in seconds (of an ask, a wait, a remote request), returning the
    default ask timeout for None.

    Raises:
        LlmosError: the timeout is not a positive finite number.
    """
    if timeout is None:
        return _default_timeout[0]
    if (type(timeout) is float or type(timeout) is int) and 0 < timeout < math.inf:
        return float(timeout)  # the common case, without isinstance (once per ask)
    if type(timeout) is not bool and isinstance(timeout, int | float) and 0 < timeout < math.inf:
        return float(timeout)
    raise LlmosError(f"a timeout must be a positive finite number of seconds, got {timeout!r}")


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

    @overload
    def ask(self, message: Returns[A], timeout: float | None = None) -> Reply[A]: ...
    @overload
    def ask(self, message: Any, timeout: float | None = None) -> Reply[Any]: ...
    @abc.abstractmethod
    def ask(self, message: Any, timeout: float | None = None) -> Reply[Any]:
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

    @overload
    async def ask_async(self, message: Returns[A], timeout: float | None = None) -> A: ...
    @overload
    async def ask_async(self, message: Any, timeout: float | None = None) -> Any: ...
    @abc.abstractmethod
    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        """Ask from asyncio: await the answer without ever blocking the event loop.

        A local or remote ref called while a loop runs in the calling thread sends the ask at
        once and returns a future that asyncio also takes as a coroutine (``await``,
        ``gather``, ``wait_for``, ``create_task``; not ``asyncio.wait``, which refuses
        coroutines): await it on that loop. Called with no loop running there
        (``asyncio.run(ref.ask_async(msg))``, or for ``run_coroutine_threadsafe``), it asks
        when awaited. An error in making the ask comes out of the await.

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
