"""The asyncio side of an ask: a reply that completes a future on the loop that asked.

Every loop that asks gets one :class:`LoopLink`, shared by all its pending asks:

- **One wake-up for many answers.** A thread that settles a reply puts it on the link's list;
  only the first one since the loop last looked calls ``call_soon_threadsafe`` (a write to
  the loop's self-pipe). 1,000 answers that arrive together wake the loop once or a few times,
  not 1,000 times.
- **One timer for many deadlines.** Asks with the same timeout expire in the order they were
  made, so the link keeps one queue per timeout and one loop timer, at the earliest deadline
  of all, instead of a timer per ask.

Both run on the loop's own thread except :meth:`LoopLink.settled`, which any thread may call.

An ``ask_async`` made while a loop runs in the calling thread returns the reply's
:class:`AskFuture` at once, the ask already sent: a future that asyncio also takes as a
coroutine (``create_task``), so ``gather`` over 1,000 asks makes no Task per ask. Made with no
loop running there (``asyncio.run(ref.ask_async(msg))``, or a coroutine for
``run_coroutine_threadsafe``), it is a coroutine that asks when awaited (:func:`ask_on_loop`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from typing_extensions import TypeVar

from llmos.actors._reply import Reply

__all__ = ["AskFuture", "AsyncReply", "LoopLink", "ask_on_loop"]

T = TypeVar("T", default=Any)

_monotonic = time.monotonic
_LINK = "_llmos_loop_link"  # the attribute a loop's link is kept under


class AskFuture(asyncio.Future[T], Coroutine[Any, Any, T]):
    """The answer to an ``ask_async``: an asyncio future that is also a coroutine.

    ``await`` it, or hand it to ``gather`` or ``wait_for`` like any future (neither wraps it in
    a Task); ``create_task`` takes it as a coroutine that awaits itself. ``asyncio.wait``
    refuses it, as it refuses any coroutine: pass it ``create_task(...)``. Await it on the
    loop it was made on: the ask left when it was made, so handing it to another loop
    (``run_coroutine_threadsafe``), or to ``asyncio.run`` inside a running loop, raises while
    the ask still runs.
    """

    __slots__ = ()

    def send(self, value: Any) -> Any:
        # A future's __await__ iterator keeps no state of its own: a fresh one per step works.
        return self.__await__().send(value)

    def throw(self, *exc: Any) -> Any:
        # Thrown into (a task cancelled before it awaited this): nobody will read the answer.
        # Cancelled, the future keeps asyncio from logging an error nobody retrieved; the ask
        # itself runs on (or expires), as when an awaiting task is cancelled.
        self.cancel()
        return self.__await__().throw(*exc)

    def close(self) -> None:
        """Nobody will await it: cancel the future (the ask itself runs on or expires)."""
        self.cancel()


Ask = Callable[[asyncio.AbstractEventLoop, Any, "float | None"], "AskFuture[Any]"]
"""``ask(loop, message, timeout)``: make an ask on ``loop`` and return its future."""


def ask_on_loop(ask: Ask, message: Any, timeout: float | None) -> Coroutine[Any, Any, Any]:
    """What an ``ask_async`` returns: ``ask(loop, message, timeout)`` made now on the running
    loop (an error raised making it comes out of the await, as from a coroutine), or, with no
    loop running, a coroutine that makes it on the loop that awaits it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _when_awaited(ask, message, timeout)
    try:
        return ask(loop, message, timeout)
    except Exception as exc:
        failed: AskFuture[Any] = AskFuture(loop=loop)
        failed.set_exception(exc)
        return failed


async def _when_awaited(ask: Ask, message: Any, timeout: float | None) -> Any:
    return await ask(asyncio.get_running_loop(), message, timeout)


class LoopLink:
    """What one event loop's pending asks share: see the module docstring."""

    __slots__ = ("_deadlines", "_lock", "_ready", "_scheduled", "_timer", "_timer_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: list[AsyncReply[Any]] = []  # settled, not yet resolved on the loop
        self._scheduled = False  # a call to _resolve_ready is on its way to the loop
        # timeout -> pending replies in the order asked (so their deadlines ascend)
        self._deadlines: dict[float, deque[AsyncReply[Any]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    @staticmethod
    def of(loop: asyncio.AbstractEventLoop) -> LoopLink:
        """The loop's link, made on first use (call it on the loop's thread)."""
        link: LoopLink | None = getattr(loop, _LINK, None)
        if link is None:
            link = LoopLink(loop)
            try:
                setattr(loop, _LINK, link)
            except AttributeError:  # a loop without a __dict__: a link per ask still works
                pass
        return link

    def watch(self, reply: AsyncReply[Any]) -> None:
        """Expire ``reply`` at its deadline unless it settles first (on the loop's thread)."""
        queue = self._deadlines.get(reply.span)
        if queue is None:
            queue = self._deadlines[reply.span] = deque()
        queue.append(reply)
        if reply.deadline < self._timer_at:
            self._arm(reply.deadline)

    def pending(self) -> int:
        """How many replies still wait here for their deadline or their answer."""
        return sum(len(queue) for queue in self._deadlines.values())

    def settled(self, reply: AsyncReply[Any]) -> None:
        """``reply`` settled (in any thread): have the loop resolve its future soon."""
        with self._lock:
            self._ready.append(reply)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._resolve_ready)
        except RuntimeError:  # the loop is closed: nobody is awaiting any more
            with self._lock:
                self._ready.clear()
                self._scheduled = False

    def _resolve_ready(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        deadlines = self._deadlines
        for reply in ready:
            reply.resolve()
            queue = deadlines.get(reply.span)
            while queue and queue[0].done():
                queue.popleft()  # answered: no longer waits for its deadline

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self.loop
        self._timer_at = deadline
        self._timer = loop.call_at(loop.time() + (deadline - _monotonic()), self._sweep)

    def _sweep(self) -> None:
        """Expire every reply past its deadline, then set the timer for the next one."""
        self._timer, self._timer_at = None, math.inf
        now = _monotonic()
        earliest = math.inf
        for span, queue in list(self._deadlines.items()):
            while queue and (queue[0].done() or queue[0].deadline <= now):
                reply = queue.popleft()
                if not reply.done():
                    reply.expire()
            if queue:
                earliest = min(earliest, queue[0].deadline)
            else:
                del self._deadlines[span]
        if earliest < math.inf:
            self._arm(earliest)


class AsyncReply(Reply[T]):
    """A reply that also completes an asyncio future on the loop that asked.

    Made on the loop's thread; it is expired at its deadline by the loop's :class:`LoopLink`.
    """

    __slots__ = ("future", "link", "loop")

    def __init__(
        self, deadline: float, target: Any, span: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(deadline, target, span)
        self.loop = loop
        self.future: AskFuture[T] = AskFuture(loop=loop)
        self.link = link = LoopLink.of(loop)
        link.watch(self)

    def _deliver(self) -> None:
        super()._deliver()
        self.link.settled(self)

    def resolve(self) -> None:
        """Pass the outcome to the future (on the loop's thread)."""
        if self.future.done():
            return  # the awaiting task was cancelled
        if self._error is not None:
            self.future.set_exception(self._error)
        else:
            self.future.set_result(self._value)  # type: ignore[arg-type]  # set once done

    def wait(self) -> AskFuture[T]:
        """The future to await for the answer (``await reply.wait()``): it completes with the
        value or the error on this loop, by the ask's deadline at the latest, without blocking
        the loop. A future, so an ask costs no coroutine of its own.

        Cancelling the awaiting task leaves the ask itself to complete or expire.
        """
        return self.future

    def run_or_fail(self, step: Callable[..., object], *args: Any) -> None:
        """Run ``step(*args)`` (a blocking send, in a worker thread); settle with what it raises."""
        try:
            step(*args)
        except BaseException as exc:
            self.set_exception(exc)
