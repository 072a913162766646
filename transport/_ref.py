"""Remote refs: the same ``tell`` / ``ask`` / ``ask_async`` API as a local ref, across nodes.

A :class:`RemoteRef` names an actor (``name``) on another node (``node``, that node's address)
and is bound to the local :class:`~llmos.transport.Node` that carries its messages. Refs inside
messages travel: a local ref arrives on the other side as a remote ref back to this node, so a
remote actor can reply to, watch, or call back a local one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorRef, ActorStats, AskTimeout, LlmosError, Reply
from llmos.actors.lowlevel import AsyncReply, ask_on_loop, check_timeout, trace_state
from llmos.transport._frames import ASK, STATS, STOP, TELL
from llmos.transport._peer import DOWN

if TYPE_CHECKING:
    from llmos.transport._peer import Peer
    from llmos.transport._sending import Outbound

__all__ = ["Callback", "QuietRef", "RemoteRef"]

log = logging.getLogger("llmos.transport")
_monotonic = time.monotonic
_LOG_INTERVAL = 5.0
_unnotified = 0
_last_unnotified_log = -1e9


class RemoteRef(ActorRef):  # type: ignore[misc,unused-ignore]
    """A ref to an actor on another node.

    Get one from :meth:`Node.ref` (``"name@tcp://host:port"``), :meth:`Node.lookup`,
    :meth:`Node.spawn_remote`, or inside a message. Failure contract, beyond a local ref's:

    - ``ask`` fails with :class:`~llmos.transport.NodeUnreachable` at once when the peer is known
      to be down, and every pending ask fails with it the moment the peer is marked down (a
      missed heartbeat or a lost connection), not at its own timeout;
    - ``tell`` to a peer that is down is recorded in dead letters (it never raises for that);
    - when the send queue to the peer stays full for ``send_timeout``, ``tell`` and ``ask``
      raise :class:`~llmos.transport.PeerBusy` (nothing is dropped silently);
    - once the peer answers heartbeats again, the same ref works again.
    """

    __slots__ = ("_peer", "_via")

    def __init__(self, name: str, node: str, via: Outbound) -> None:
        super().__init__(name, node)
        self._via = via
        self._peer: Peer | None = None

    @property
    def via(self) -> Outbound:
        """What carries this ref's messages: the outbound side of a local node."""
        return self._via

    def tell(self, message: Any) -> None:
        via = self._via
        payload = via.encode_message(message)
        hook = trace_state.hook  # None while tracing is off
        trace = None if hook is None else hook.outgoing(message)
        peer = self._peer
        if peer is None or peer.reaped:
            peer = self._peer = via.peer(self.node or "")
        peer.used = _monotonic()
        if peer.state == DOWN:
            via.tell_down(peer, self.name, payload)
            return
        if peer.full(via.max_outbox):
            via.wait_for_room(peer, True)
        via.post(
            peer, [TELL, self.name, payload] if trace is None else [TELL, self.name, payload, trace]
        )

    def ask(self, message: Any, timeout: float | None = None) -> Reply:
        span = check_timeout(timeout)
        via = self._via
        payload = via.encode_message(message)
        peer = self._peer
        if peer is None or peer.reaped:
            peer = self._peer = via.peer(self.node or "")
        peer.used = now = _monotonic()
        reply = Reply(now + span, self, span)
        hook = trace_state.hook
        trace = None if hook is None else hook.ask(message, self.name, reply)
        if trace is None:
            via.send_to(peer, ASK, self.name, payload, reply)
        else:
            try:
                via.send_to(peer, ASK, self.name, payload, reply, trace=trace)
            except BaseException as exc:  # settled, so the ask's span ends
                reply.set_exception(exc)
                raise
        return reply

    def ask_async(self, message: Any, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """Ask from asyncio; as a local ref's, the ask leaves at once when a loop runs."""
        return ask_on_loop(self._ask_on, message, timeout)

    def _ask_on(self, loop: asyncio.AbstractEventLoop, message: Any, timeout: float | None) -> Any:
        span = check_timeout(timeout)
        via = self._via
        payload = via.encode_message(message)
        reply = AsyncReply(_monotonic() + span, self, span, loop)
        address = self.node or ""
        hook = trace_state.hook
        trace = None if hook is None else hook.ask(message, self.name, reply)
        try:
            sent = via.send_request(address, ASK, self.name, payload, reply, False, trace=trace)
        except Exception as exc:  # settled, so nothing waits for its deadline
            reply.set_exception(exc)
            return reply.wait()
        if not sent:  # the send queue is full: wait for room in a worker thread, not the loop
            send = functools.partial(
                via.send_request, address, ASK, self.name, payload, reply, trace=trace
            )
            loop.run_in_executor(None, reply.run_or_fail, send)
        return reply.wait()

    def is_alive(self) -> bool:
        """Ask the peer whether the actor runs (False if the peer is down or does not answer)."""
        try:
            self._via.lookup(self.name, self.node or "", timeout=self._via.heartbeat)
        except LlmosError:
            return False
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the remote actor after its queued messages; wait up to ``timeout``.

        Raises:
            NodeUnreachable: the peer is down.
        """
        try:
            return bool(self._via.request(self.node or "", STOP, self.name, None, timeout))
        except AskTimeout:
            return False

    def statistics(self) -> ActorStats:
        """The remote actor's counters (a round trip to its node).

        Raises:
            ActorDeadError: no such actor runs there. NodeUnreachable: the peer is down.
        """
        fields = self._via.request(self.node or "", STATS, self.name, None, None)
        return ActorStats(**fields)

    def watch(self, watcher: ActorRef) -> None:
        """Have ``watcher`` receive ``Terminated`` when this actor stops, or its node is lost."""
        self._via.watch(self, watcher)

    def unwatch(self, watcher: ActorRef) -> None:
        self._via.unwatch(self, watcher)


class QuietRef(ActorRef):  # type: ignore[misc,unused-ignore]
    """Wraps a watcher ref so that telling it never raises (cells notify watchers while
    finalizing, and a lost node must not break that)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: ActorRef) -> None:
        super().__init__(inner.name, inner.node)
        self._inner = inner

    def tell(self, message: Any) -> None:
        try:
            self._inner.tell(message)
        except LlmosError as exc:
            global _unnotified, _last_unnotified_log
            _unnotified += 1
            now = _monotonic()
            if now - _last_unnotified_log > _LOG_INTERVAL:  # never a line per failed watcher
                _last_unnotified_log = now
                log.info(
                    "could not notify watcher %s: %s (%d watchers not notified so far)",
                    self._inner.address,
                    exc,
                    _unnotified,
                )

    def ask(self, message: Any, timeout: float | None = None) -> Reply:
        return self._inner.ask(message, timeout)

    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        return await self._inner.ask_async(message, timeout)

    def is_alive(self) -> bool:
        return bool(self._inner.is_alive())

    def stop(self, timeout: float | None = None) -> bool:
        return bool(self._inner.stop(timeout))

    def statistics(self) -> ActorStats:
        return self._inner.statistics()


class Callback(ActorRef):  # type: ignore[misc,unused-ignore]
    """An internal ref whose ``tell`` calls a function (used to learn when an actor stopped)."""

    __slots__ = ("_fn",)

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name, "llmos-internal")
        self._fn = fn

    def tell(self, message: Any) -> None:
        self._fn(message)

    def ask(self, message: Any, timeout: float | None = None) -> Reply:
        raise LlmosError("an internal callback ref cannot be asked")

    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        raise LlmosError("an internal callback ref cannot be asked")

    def is_alive(self) -> bool:
        return True

    def stop(self, timeout: float | None = None) -> bool:
        return True

    def statistics(self) -> ActorStats:
        raise LlmosError("an internal callback ref has no statistics")
