"""The Actor base class users subclass, and typed handlers.

Example::

    @message("demo.Add")
    class Add:
        a: int
        b: int

    class Calculator(Actor):
        @handler(Add)
        def add(self, msg: Add) -> int:
            return msg.a + msg.b

    ref = Calculator.start(name="calc")
    assert ref.ask(Add(2, 3), timeout=1).get() == 5

What llmos takes from pykka, and what it replaces:

- taken: the base class (an llmos actor is a ``pykka.ThreadingActor``, so code that knows pykka
  recognises one) and its vocabulary: ``start``, ``stop``, ``on_start``, ``on_stop``,
  ``on_failure``, ``on_receive``, ``actor_ref``, the ``actor_`` prefix of framework attributes;
- replaced: everything that runs. pykka's constructor is not called, so an instance carries no
  pykka URN, inbox, stop event or pykka ref; its thread loop, inbox, futures and registry are
  never used. The loop and life cycle are the cell's (:mod:`llmos.actors._cell`), the inbox is
  the cell's :class:`~llmos.actors.lowlevel.Mailbox`, answers are :class:`~llmos.actors.Reply`
  objects, names live in :mod:`llmos.actors._registry`.

Why: a ref must outlive an instance (a supervisor restarts a failed actor behind the same ref
and mailbox, which pykka cannot do), every BaseException from user code must be contained,
waiting must never block an asyncio loop, and the hot paths (a tell is one queue put) are
several times cheaper than pykka's.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

import pykka

from llmos.actors._cell import UNHANDLED, Cell, bound_cell
from llmos.actors._dispatcher import Dispatcher
from llmos.actors._errors import ActorError
from llmos.actors._mailbox import Mailbox, WhenFull

if TYPE_CHECKING:
    from llmos.actors._local_ref import LocalRef
    from llmos.actors._ref import ActorRef
    from llmos.actors._reply import Reply

__all__ = ["UNHANDLED", "Actor", "handler"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def handler(msg_type: type[Any], /) -> Callable[[F], F]: ...
@overload
def handler(msg_type: F, /) -> F: ...
def handler(msg_type: Any, /) -> Any:
    """Register a method as the handler of one message type.

    Use ``@handler(Greet)``, or bare ``@handler`` to take the type from the annotation of the
    method's message parameter. A message whose type has no handler (nor a handler for one of
    its base classes) goes to ``on_receive``. The handler's return value is the ask's answer.
    """
    if isinstance(msg_type, type):

        def mark(fn: F) -> F:
            fn.__llmos_handles__ = msg_type  # type: ignore[attr-defined]
            return fn

        return mark
    if callable(msg_type):
        msg_type.__llmos_handles__ = None
        return msg_type
    raise ActorError(f"@handler takes a message class, got {msg_type!r}")


def _resolve_handlers(cls: type[Actor]) -> dict[type[Any], Callable[[Any, Any], Any]]:
    table: dict[type[Any], Callable[[Any, Any], Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr, fn in vars(klass).items():
            if not hasattr(fn, "__llmos_handles__"):
                continue
            msg_type = fn.__llmos_handles__
            if msg_type is None:
                params = list(inspect.signature(fn).parameters)
                hints = typing.get_type_hints(fn)
                if len(params) < 2 or params[1] not in hints:
                    raise ActorError(
                        f"{cls.__qualname__}.{attr}: bare @handler needs the message parameter "
                        "annotated with its class; or write @handler(TheClass)"
                    )
                msg_type = hints[params[1]]
            # A subclass overriding the method by name takes over its message type.
            for known, other in list(table.items()):
                if other.__name__ == attr and known is not msg_type:
                    del table[known]
            table[msg_type] = getattr(cls, attr)
    return table


class Actor(pykka.ThreadingActor):
    """Base class for actors: subclass it, add handlers, start it with :meth:`start`.

    Each actor is a thread that handles one message at a time, so its fields need no locks.
    Failure contract: an exception while handling an ``ask`` goes back to the asker; one while
    handling a ``tell`` (or in ``on_start``) fails the actor, and its supervisor restarts it
    behind the same ref with its mailbox intact, or it stops for good (when unsupervised).
    Containment is total: any BaseException (SystemExit, KeyboardInterrupt, one of your own)
    from a constructor, a hook or a handler fails only this actor, never its supervisor, its
    caller's thread or a bystander. One raised by ``on_failure`` or ``pre_restart`` is logged
    and the failure handled as if they had returned; one raised by ``on_stop`` is logged and
    the actor stops all the same.

    Class attributes (set them in a subclass):
        actor_mailbox_capacity: bound on queued messages (None: unbounded).
        actor_when_full: "block" (wait up to ``actor_put_timeout``) or "fail" (MailboxFull).
        actor_put_timeout: how long a sender blocks on a full mailbox.
        actor_system: the actor is part of the node itself (a kernel, a supervisor, a pool):
            no peer may stop it over the network, whatever the node's ``remote_stop``.
        actor_dispatcher: None (the default): the actor owns a thread. A
            :class:`~llmos.actors.Dispatcher` (``Dispatcher.shared()``, say): it owns none, and
            the dispatcher's few threads run its messages in turns, for the many-actors case
            (thousands of agents); its handlers then must not block for long.
    """

    actor_mailbox_capacity: ClassVar[int | None] = None
    actor_when_full: ClassVar[WhenFull] = "block"
    actor_put_timeout: ClassVar[float] = 5.0
    actor_system: ClassVar[bool] = False
    actor_dispatcher: ClassVar[Dispatcher | None] = None
    _llmos_tables: ClassVar[dict[type[Any], dict[type[Any], Callable[[Any, Any], Any]]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the instance (in the thread that starts or restarts the actor).

        Subclasses take their own arguments and call ``super().__init__()`` first. Start an
        actor with :meth:`start` (or a kernel's ``spawn``), never by calling the class: an
        instance built directly has no ref. pykka's constructor is deliberately not called
        (see the module docstring).
        """
        cell = bound_cell()
        self._llmos_cell: Cell | None = cell
        cls = type(self)
        table = Actor._llmos_tables.get(cls)
        if table is None:
            table = Actor._llmos_tables[cls] = _resolve_handlers(cls)
        self._llmos_table = table
        self._llmos_cache: dict[type[Any], Callable[[Any, Any], Any] | None] = dict(table)

    def __repr__(self) -> str:
        cell = self._llmos_cell
        return f"<{type(self).__name__} {cell.name if cell is not None else '(not started)'}>"

    __str__ = __repr__

    @classmethod
    def start(  # type: ignore[override]
        cls,
        *args: Any,
        name: str | None = None,
        capacity: int | None = None,
        when_full: WhenFull | None = None,
        **kwargs: Any,
    ) -> LocalRef:
        """Start an unsupervised actor (in its own thread, unless ``actor_dispatcher`` is set).

        Args:
            *args: passed to the constructor.
            name: a unique name in this process (default: class name and a number).
            capacity: mailbox bound (default: ``actor_mailbox_capacity``).
            when_full: mailbox policy (default: ``actor_when_full``).
            **kwargs: passed to the constructor.

        Returns:
            The actor's stable ref.

        Raises:
            NameTaken: the name is in use by a live actor.
            ActorError: the constructor raised a BaseException that is not an Exception
                (SystemExit, KeyboardInterrupt...), kept as ``__cause__``.
            Exception: whatever else the constructor raised.
        """
        cell = Cell(
            lambda: cls(*args, **kwargs),
            name,
            cls.actor_mailbox(capacity, when_full),
            class_name=cls.__name__,
            dispatcher=cls.actor_dispatcher,
        )
        cell.start()
        return cell.ref

    @classmethod
    def actor_mailbox(
        cls, capacity: int | None = None, when_full: WhenFull | None = None
    ) -> Mailbox:
        """Build the mailbox for a new actor of this class (start and kernels use this)."""
        return Mailbox(
            capacity if capacity is not None else cls.actor_mailbox_capacity,
            when_full if when_full is not None else cls.actor_when_full,
            cls.actor_put_timeout,
        )

    @property
    def actor_ref(self) -> LocalRef:  # type: ignore[override]
        """This actor's stable ref (the same object across restarts)."""
        cell = self._llmos_cell
        if cell is None:
            raise ActorError(f"{type(self).__name__} was built outside start(); it has no ref")
        return cell.ref

    @property
    def actor_name(self) -> str:
        name: str = self.actor_ref.name
        return name

    def stop(self) -> None:
        """Stop this actor after the messages already queued."""
        if self._llmos_cell is not None:
            self._llmos_cell.request_stop()

    def actor_defer_reply(self) -> Reply:
        """Take over answering the ask being handled now, to complete it later.

        The handler's return value is then ignored; complete the returned reply with
        ``set_result`` or ``set_exception`` whenever the answer is ready (from any thread).
        Use it to batch requests or to wait on other actors without blocking this one.

        Raises:
            ActorError: the message being handled is a tell (nobody waits for an answer).
        """
        cell = self._llmos_cell
        reply = cell.current_reply if cell is not None else None
        if reply is None:
            raise ActorError("actor_defer_reply() called while handling a tell: no one awaits it")
        assert cell is not None
        cell.current_reply = None
        cell.deferred.track(reply)
        return cast("Reply", reply)

    def watch(self, ref: ActorRef) -> None:
        """Receive :class:`~llmos.actors.Terminated` when ``ref``'s actor stops for good."""
        watch = getattr(ref, "watch", None)
        if watch is None:
            raise ActorError(f"{ref!r} does not support death watch")
        watch(self.actor_ref)

    @property
    def actor_cell(self) -> Cell:
        """The cell behind this actor: the stable identity a supervisor drives (low level).

        Raises:
            ActorError: the instance was built outside ``start`` (or a kernel).
        """
        cell = self._llmos_cell
        if cell is None:
            raise ActorError(f"{type(self).__name__} was built outside start(); it has no cell")
        return cell

    @property
    def actor_asked(self) -> bool:
        """True while handling an ask whose answer is still this handler's to give.

        False while handling a tell, outside a handler, and once the handler took the answer
        over with :meth:`actor_defer_reply`.
        """
        cell = self._llmos_cell
        return cell is not None and cell.current_reply is not None

    @property
    def actor_supervised(self) -> bool:
        """True when a supervisor decides what happens to this actor after a failure."""
        cell = self._llmos_cell
        return cell is not None and cell.supervisor is not None

    def actor_message_types(self) -> list[type[Any]]:
        """The message classes this actor has a typed handler for (not ``on_receive``)."""
        return list(self._llmos_table)

    def actor_handler_name(self, message: Any) -> str:
        """The name of the method that handles ``message``: a handler's, or ``on_receive``."""
        fn = self._llmos_cache.get(type(message))
        if fn is None and type(message) not in self._llmos_cache:
            fn = next((f for t, f in self._llmos_table.items() if isinstance(message, t)), None)
        return getattr(fn, "__name__", "on_receive") if fn is not None else "on_receive"

    def actor_dispatch(self, message: Any) -> Any:
        """Handle one message: run its handler (or ``on_receive``) and return the answer.

        The actor's thread calls this once per message. Override it to act around every
        message (validate, log, time: what ``llmos.agents.Agent`` does) and call
        ``super().actor_dispatch(message)`` to run the handler. Return :data:`UNHANDLED` to
        refuse a message; raising follows the failure contract of the class docstring. To
        answer an ask in another way, take it over with :meth:`actor_defer_reply`.

        Args:
            message: the message, as sent.

        Returns:
            The handler's return value (an ask's answer), or UNHANDLED.
        """
        cache = self._llmos_cache
        msg_type = type(message)
        try:
            fn = cache[msg_type]
        except KeyError:
            fn = None
            for known, candidate in self._llmos_table.items():
                if isinstance(message, known):
                    fn = candidate
                    break
            cache[msg_type] = fn
        if fn is None:
            return self.on_receive(message)
        return fn(self, message)

    # -- hooks ----------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle a message no typed handler took. By default: refuse it.

        A refused ask fails with ActorError; a refused tell goes to dead letters with a warning.
        """
        return UNHANDLED

    def on_start(self) -> None:
        """Run in the actor's thread before the first message. Raising fails the actor."""

    def on_stop(self) -> None:
        """Run in the actor's thread after the last message of a normal stop."""

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Run in the actor's thread when it fails, before its supervisor decides."""

    def pre_restart(self, error: BaseException) -> Any:
        """Run on the failed instance before a restart; return state to carry over.

        Whatever this returns is handed to ``post_restart`` of the new instance (kept in
        memory, never sent anywhere). By default nothing is carried.
        """
        return None

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        """Run on the new instance after a restart, instead of ``on_start``.

        Args:
            error: the failure that caused the restart.
            state: what ``pre_restart`` of the failed instance returned.

        By default it calls ``on_start``.
        """
        self.on_start()
