"""Reply futures: the answer to one ask, waited on from a thread or from asyncio.

A :class:`Reply` is completed exactly once (with a value, an error, or by its own timeout).
Waiting is a plain lock acquire, much cheaper than pykka's Condition-based future. The
asyncio side (``AsyncReply``) is in :mod:`llmos.actors._async_reply`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic

from typing_extensions import TypeVar

from llmos.actors._errors import AskAbandoned, AskTimeout, DeadlockError

__all__ = ["Deferred", "Reply", "Returns", "current_actor_name", "late_replies"]

T = TypeVar("T", default=Any)  # a bare ``Reply`` is ``Reply[Any]``
A = TypeVar("A")

log = logging.getLogger("llmos.actors")
_allocate_lock = threading.Lock
_callbacks_lock = threading.Lock()  # only to create a reply's callback list, once
_monotonic = time.monotonic


class _Current(threading.local):
    # A class default, so a thread that never ran an actor reads None without the
    # AttributeError (and its formatted message) that getattr(..., None) costs on a miss.
    cell: Any = None


_local = _Current()
_late = [0]


def late_replies() -> int:
    """How many replies arrived after their ask had already timed out (and were dropped)."""
    return _late[0]


def current_cell() -> Any:
    """The actor cell whose thread is running now, or None outside any actor."""
    return _local.cell


def current_actor_name() -> str | None:
    """The name of the actor whose thread runs now (None outside any actor)."""
    cell = _local.cell
    return None if cell is None else str(cell.name)


def set_current_cell(cell: Any) -> None:
    _local.cell = cell


class Returns(Generic[A]):
    """Base of a message class whose answer has a declared type.

    ``ref.ask(msg)`` of such a message is a ``Reply[A]`` and ``await ref.ask_async(msg)`` an
    ``A`` for the type checker (at run time it changes nothing; the handler's return value is
    the answer as always). Example::

        @message("demo.Add")
        class Add(Returns[int]):
            a: int
            b: int

        total: int = ref.ask(Add(2, 3), timeout=1).get()
    """

    __slots__ = ()


class Reply(Generic[T]):
    """The future answer to one ask: ``Reply[T]`` when the message declares ``Returns[T]``.

    ``get()`` waits for the answer until the ask's deadline and returns it, or raises the error
    the actor raised, :class:`~llmos.actors.AskTimeout` when the deadline passes, or
    :class:`~llmos.actors.ActorDeadError` when the actor stopped before answering.
    """

    __slots__ = (
        "_claim",
        "_done",
        "_error",
        "_ready",
        "_then",
        "_value",
        "asker",
        "deadline",
        "span",
        "target",
    )

    def __init__(self, deadline: float, target: Any = None, span: float = 0.0) -> None:
        self.deadline = deadline
        self.span = span
        self.target = target
        self._claim = _allocate_lock()
        self._ready = _allocate_lock()
        self._ready.acquire()
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._then: list[Callable[[Reply[T]], object]] | None = None  # add_done_callback's
        # Who waits for the answer: any object with a ``stopped`` attribute that turns true
        # once it will never read it (the asking actor's cell; the transport's stand-in for
        # an asker on another node). None when unknown (an ask from outside any actor).
        self.asker: Any = None

    def done(self) -> bool:
        """True once the reply holds a value or an error."""
        return self._done

    def exception(self) -> BaseException | None:
        """The error this reply settled with; None when it settled with a value or is pending.

        Never waits: read it from a done callback, or once ``done()`` is True.
        """
        return self._error if self._done else None

    def abandoned(self) -> bool:
        """True when its asker gave up while the ask is pending, so nobody will read the
        answer: the local actor that asked has stopped for good (its supervisor stopped it
        mid-ask, say), or an asker on another node could no longer hear this node (see
        ``asker``). Always False for an ask made outside any actor.

        An actor never starts an abandoned ask: it takes it off its mailbox and settles it
        with :class:`~llmos.actors.AskAbandoned`. A long-running answerer can check it to
        drop such a request early (the model actor does, between decoding steps).
        """
        asker = self.asker
        return asker is not None and bool(asker.stopped)

    def abandon(self) -> None:
        """Settle, unstarted, with AskAbandoned (what an actor does with an abandoned ask)."""
        self.set_exception(
            AskAbandoned(
                f"the ask to {self.target!r} was not started: its asker had given up on it "
                "(it stopped, or it could no longer hear this node)"
            )
        )

    def expired(self) -> bool:
        """True when the ask's deadline has passed; such a request need not be handled."""
        return _monotonic() > self.deadline

    def set_result(self, value: T) -> bool:
        """Complete with a value. Returns False (and counts a late reply) if already complete."""
        if not self._claim.acquire(False):
            _late[0] += 1
            return False
        self._value = value
        self._deliver()
        return True

    def set_exception(self, error: BaseException) -> bool:
        """Complete with an error. Returns False if already complete."""
        if not self._claim.acquire(False):
            _late[0] += 1
            return False
        self._error = error
        self._deliver()
        return True

    def add_done_callback(self, fn: Callable[[Reply[T]], object]) -> None:
        """Call ``fn(reply)`` exactly once, when this reply settles.

        It settles with the handler's value or error, with ActorDeadError when the actor
        stops first, or with AskTimeout when it is expired. ``fn`` runs in the thread that
        settles the reply: the answering actor's thread for a local ask (or whichever thread
        completes an ask taken over with ``actor_defer_reply``), the node's I/O thread for a
        remote one, the thread that expires it. If the reply is already settled, ``fn`` runs
        at once in the caller's thread (if it settles while this call runs, in one of the two).
        Keep ``fn`` short and never blocking: tell an actor, set an event. Whatever it raises
        is logged and dropped; it never reaches the settling thread.

        A reply is expired by ``get()`` past its deadline, or by the actor when it takes an
        ask whose deadline passed off its mailbox; a caller that waits only through callbacks
        bounds its wait itself, calling :meth:`expire` at the deadline (a timer).

        Args:
            fn: called with this reply; read the outcome with ``get()`` (it does not block).
        """
        if not self._done:
            callbacks = self._then
            if callbacks is None:
                with _callbacks_lock:
                    callbacks = self._then
                    if callbacks is None:
                        callbacks = self._then = []
            callbacks.append(fn)
            if not self._done:
                return  # the settling thread runs it (it sets _done before reading the list)
            self._run_callbacks(callbacks)  # settled meanwhile: run it here unless it ran
            return
        try:
            fn(self)
        except BaseException as exc:
            log.error("a done callback of %r raised; dropped", self, exc_info=exc)

    def _run_callbacks(self, callbacks: list[Callable[[Reply[T]], object]]) -> None:
        # list.pop is atomic, so each callback runs once even when two threads get here.
        while callbacks:
            try:
                fn = callbacks.pop(0)
            except IndexError:
                return
            try:
                fn(self)
            except BaseException as exc:  # contained: the settling thread goes on
                log.error("a done callback of %r raised; dropped", self, exc_info=exc)

    def _deliver(self) -> None:
        self._done = True
        self._ready.release()
        callbacks = self._then
        if callbacks is not None:
            self._run_callbacks(callbacks)

    def expire(self) -> None:
        """Complete with AskTimeout unless an answer already arrived (then it is kept)."""
        self.set_exception(
            AskTimeout(
                f"no reply from {self.target!r} within {self.span:.3g} s; the actor may be "
                "busy or stuck (check its statistics()), or raise the timeout"
            )
        )

    def get(self, timeout: float | None = None) -> T:
        """Wait for the answer.

        Args:
            timeout: wait at most this long (never past the ask's own deadline); by default
                until the ask's deadline. A shorter wait that runs out raises AskTimeout but
                leaves the ask pending, so ``get`` can be called again.

        Returns:
            The value the actor's handler returned.

        Raises:
            AskTimeout: no answer in time.
            DeadlockError: called from within the very actor the ask went to.
            Exception: whatever the handler raised, or ActorDeadError.
        """
        if not self._done:
            cell = _local.cell
            if cell is not None and cell is self.target:
                raise DeadlockError(
                    f"{cell!r} waits on an ask to itself, which it can never answer; "
                    "use tell, or call the method directly"
                )
            remaining = self.deadline - _monotonic()
            short = timeout is not None and timeout < remaining
            wait = timeout if short else remaining
            if wait is not None and wait > 0 and self._ready.acquire(True, wait):
                self._ready.release()  # let any other waiter through too
            elif short:
                raise AskTimeout(f"no reply from {self.target!r} within {timeout:.3g} s")
            else:
                self.expire()
                self._ready.acquire()  # completed by now, by us or by the answer
                self._ready.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set once done, or T is None

    result = get

    def __repr__(self) -> str:
        state = "done" if self._done else "pending"
        return f"<Reply {state} from {self.target!r}>"


class Deferred:
    """Counts an actor's asks taken over with ``actor_defer_reply`` and not answered yet.

    A router's load figure counts them (an actor that queues its asks internally, like a model
    actor batching requests, is busy although its mailbox is empty).
    """

    __slots__ = ("_lock", "count")

    def __init__(self) -> None:
        self._lock = _allocate_lock()
        self.count = 0

    def track(self, reply: Reply[Any]) -> None:
        """Count ``reply`` until it completes, in whatever thread and however it completes."""
        settled = False

        def finished() -> None:
            nonlocal settled
            with self._lock:
                if not settled:
                    settled = True
                    self.count -= 1

        with self._lock:
            self.count += 1
        reply.add_done_callback(lambda _reply: finished())
