"""LocalRef: the ref to an actor in this process, and the hot paths of tell and ask."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar, overload

from llmos.actors._async_reply import AsyncReply, ask_on_loop
from llmos.actors._errors import ActorDeadError, MailboxFull
from llmos.actors._mailbox import Mailbox
from llmos.actors._messages import check_message
from llmos.actors._records import ActorStats
from llmos.actors._ref import ActorRef, check_timeout
from llmos.actors._reply import Reply, Returns, current_cell
from llmos.actors._trace import on_switch
from llmos.actors._trace import state as _tracing

__all__ = ["LocalRef", "RefTarget"]

A = TypeVar("A")
_monotonic = time.monotonic


class RefTarget(Protocol):
    """What a :class:`LocalRef` uses of the actor behind it (a
    :class:`~llmos.actors.lowlevel.Cell` is one): its mailbox, its life cycle and its figures."""

    @property
    def name(self) -> str: ...
    @property
    def mailbox(self) -> Mailbox: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def stop_reason(self) -> str: ...
    @property
    def stopped_event(self) -> threading.Event: ...
    @property
    def instance(self) -> object | None: ...
    def successor(self) -> RefTarget | None:
        """The live actor started under the same name since this one stopped, if any."""

    def drain(self) -> None: ...
    def request_stop(self) -> None: ...
    def statistics(self) -> ActorStats: ...
    def watch(self, watcher: ActorRef) -> None: ...
    def unwatch(self, watcher: ActorRef) -> None: ...


class LocalRef(ActorRef):
    """A ref to an actor in this process."""

    __slots__ = ("_cell",)

    def __init__(self, cell: RefTarget) -> None:
        super().__init__(cell.name, None)
        self._cell = cell

    def _live_cell(self) -> RefTarget:
        cell = self._cell
        if cell.stopped:
            # A new actor may have been started under the same name since.
            newer = cell.successor()
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
        cell.mailbox.put((message, None, _monotonic(), None))
        if cell.stopped:
            cell.drain()  # it stopped while we queued: fail fast, never strand the message

    @overload
    def ask(self, message: Returns[A], timeout: float | None = None) -> Reply[A]: ...
    @overload
    def ask(self, message: Any, timeout: float | None = None) -> Reply[Any]: ...
    def ask(self, message: Any, timeout: float | None = None) -> Reply[Any]:
        span = check_timeout(timeout)
        check_message(message)
        cell = self._live_cell()
        reply = Reply(_monotonic() + span, cell, span)
        reply.asker = current_cell()  # an answerer may drop the ask once its asker is gone
        hook = _tracing.hook
        trace = None if hook is None else hook.ask(message, self.name, reply)
        try:
            cell.mailbox.put((message, reply, _monotonic(), trace), timeout=span)
        except BaseException as exc:  # settled, so a traced ask's span ends
            reply.set_exception(exc)
            raise
        if cell.stopped:
            cell.drain()
        return reply

    @overload
    def ask_async(
        self, message: Returns[A], timeout: float | None = None
    ) -> Coroutine[Any, Any, A]: ...
    @overload
    def ask_async(self, message: Any, timeout: float | None = None) -> Coroutine[Any, Any, Any]: ...
    def ask_async(self, message: Any, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """Ask from asyncio; see ``ActorRef.ask_async``. Called while a loop runs, it sends the
        ask at once and returns its :class:`~llmos.actors.lowlevel.AskFuture` (``gather`` of
        many asks then makes no Task per ask); with no loop running, it asks when awaited."""
        return ask_on_loop(self._ask_on, message, timeout)

    def _ask_on(self, loop: asyncio.AbstractEventLoop, message: Any, timeout: float | None) -> Any:
        span = check_timeout(timeout)
        check_message(message)
        cell = self._live_cell()
        reply = AsyncReply(_monotonic() + span, cell, span, loop)
        hook = _tracing.hook
        trace = None if hook is None else hook.ask(message, self.name, reply)
        envelope = (message, reply, _monotonic(), trace)
        mailbox = cell.mailbox
        try:
            mailbox.put(envelope, timeout=0)
        except MailboxFull as full:
            if mailbox.when_full == "block":  # wait for room in a worker thread, not the loop
                loop.run_in_executor(None, reply.run_or_fail, _put_and_check, cell, envelope, span)
            else:
                reply.set_exception(full)
            return reply.wait()
        if cell.stopped:
            cell.drain()
        return reply.wait()

    def post(
        self,
        message: Any,
        reply: Reply | None = None,
        *,
        sent_at: float | None = None,
        trace: str | None = None,
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
            trace: the W3C traceparent it carried, already checked (see
                :func:`llmos.actors.tracing.check_traceparent`); None for none.

        Raises:
            ActorDeadError: the actor is stopped for good.
            MailboxFull: its bounded mailbox has no room now.
        """
        cell = self._live_cell()
        arrived = _monotonic() if sent_at is None else sent_at
        cell.mailbox.put((message, reply, arrived, trace), 0)
        if cell.stopped:
            cell.drain()  # it stopped while we queued: fail fast, never strand the message

    @property
    def actor_class(self) -> type[Any] | None:
        """The class of the instance behind this ref now (None while none runs)."""
        instance = self._cell.instance
        return type(instance) if instance is not None else None

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


def _put_and_check(cell: RefTarget, envelope: Any, timeout: float) -> None:
    cell.mailbox.put(envelope, timeout=timeout)
    if cell.stopped:
        cell.drain()


def _traced_tell(self: LocalRef, message: Any) -> None:
    """``LocalRef.tell`` while tracing is on: the message carries the current span's context.

    It takes the place of ``tell`` only while tracing is on, so an untraced tell, the hottest
    path of all, makes no tracing check at all.
    """
    check_message(message)
    cell = self._cell
    if cell.stopped:
        cell = self._live_cell()
    hook = _tracing.hook
    trace = None if hook is None else hook.outgoing(message)
    cell.mailbox.put((message, None, _monotonic(), trace))
    if cell.stopped:
        cell.drain()


_untraced_tell = LocalRef.tell


def _switch_tell(on: bool) -> None:
    setattr(LocalRef, "tell", _traced_tell if on else _untraced_tell)  # noqa: B010


on_switch(_switch_tell)
