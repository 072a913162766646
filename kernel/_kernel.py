"""The Kernel: one per node (process), the root supervisor of everything it spawns.

``kernel()`` starts it on first use; ``llmos.actors.stop_all()`` or ``kernel().shutdown()``
stops it with all its children. Its public methods are safe to call from any thread (they are
what the node's transport uses to spawn on behalf of remote nodes).

Root policy: the kernel restarts its children one_for_one with a budget per child (OTP's
defaults: 1 restart in 5 s, with backoff). A child past its budget stops for good: its
watchers get ``Terminated``, the ``SupervisionError`` is logged and kept in
``supervisor_gave_up``. There is no parent above the kernel to escalate to, and one
crash-looping agent must not stop the node.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from llmos.actors import (
    Actor,
    ActorDeadError,
    ActorError,
    ActorRef,
    ActorStats,
    LocalRef,
    WhenFull,
    dead_letter_count,
    get,
    handler,
)
from llmos.actors.lowlevel import Cell
from llmos.kernel._errors import SupervisionError
from llmos.kernel._ledger import live_ledgers, merge_ledgers
from llmos.kernel._pool import Autoscale, Pool, PoolCore, live_pools
from llmos.kernel._pool_ref import PoolRef
from llmos.kernel._routers import HashKey, Router, RouterName, make_router
from llmos.kernel._spec import Backoff, ChildSpec, Restart
from llmos.kernel._stats import KernelStats
from llmos.kernel._status import NodeStatus, status_rows
from llmos.kernel._supervisor import Supervisor, supervisor_of
from llmos.kernel._timer import Timer

__all__ = ["KERNEL_NAME", "Kernel", "kernel"]

KERNEL_NAME = "llmos.kernel"
"""The actor name of this node's kernel."""

_lock = threading.Lock()
_current: list[Kernel] = []
_pool_numbers = itertools.count(1)


def kernel() -> Kernel:
    """This node's kernel, started on first use (and again after ``stop_all``)."""
    return Kernel.get_or_start()


class Kernel(Supervisor):
    """The root supervisor of a node. Get it with :func:`kernel`; do not start it yourself.

    Args:
        timer: the clock and timer for restarts and autoscaling (default: the shared one).
        max_restarts, within: the per-child restart budget (OTP's defaults: 1 in 5 s).
        backoff: waits between consecutive restarts of a child.
    """

    def __init__(
        self,
        *,
        timer: Timer | None = None,
        max_restarts: int = 1,
        within: float = 5.0,
        backoff: Backoff | None = Backoff(),  # noqa: B008 (frozen, shared safely)
    ) -> None:
        super().__init__(
            strategy="one_for_one",
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            escalate=False,
            timer=timer,
        )

    @classmethod
    def get_or_start(cls) -> Kernel:
        """The running kernel of this process, started if there is none."""
        with _lock:
            if _current and not _current[0].kernel_stopping():
                return _current[0]
            cell = Cell(cls, KERNEL_NAME, cls.actor_mailbox(), class_name=cls.__name__)
            cell.start()
            instance = cell.instance
            assert isinstance(instance, Kernel)
            _current[:] = [instance]
            return instance

    def kernel_stopping(self) -> bool:
        """True once this kernel is stopping or stopped (``kernel()`` then starts a new one)."""
        cell = self.actor_cell
        return cell.stopped or cell.state == "stopping"

    @property
    def ref(self) -> LocalRef:
        """The kernel actor's own ref."""
        return self.actor_ref

    # -- spawning --------------------------------------------------------------------------------

    def spawn(
        self,
        actor_class: type[Actor],
        *args: Any,
        name: str | None = None,
        restart: Restart = "permanent",
        restart_on_ask_error: bool = False,
        capacity: int | None = None,
        when_full: WhenFull | None = None,
        supervisor: ActorRef | None = None,
        **kwargs: Any,
    ) -> LocalRef:
        """Start a supervised actor: under the kernel, or under the nested ``supervisor``.

        Args:
            actor_class: the Actor subclass (a :class:`Supervisor` to nest one).
            *args: its constructor's positional arguments.
            name: a unique name (default: ``ClassName-N``).
            restart: ``permanent``, ``transient`` or ``temporary``.
            restart_on_ask_error: also restart it when an ask's handler raises.
            capacity, when_full: its mailbox bound and policy.
            supervisor: the ref of a running Supervisor to start it under (default: the
                kernel).
            **kwargs: its constructor's keyword arguments.

        Returns:
            Its stable ref (it survives restarts).

        Raises:
            NameTaken: a live actor holds the name.
            SupervisionError: invalid spec, or ``supervisor`` is not a running Supervisor.
            ActorError: the constructor raised a BaseException that is not an Exception
                (kept as ``__cause__``).
            Exception: whatever else the constructor raised.
        """
        spec = ChildSpec(
            actor_class, args, kwargs, name, restart, restart_on_ask_error, capacity, when_full
        )
        return self._parent(supervisor).start_child(spec)

    def spawner(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None
    ) -> ActorRef:
        """:meth:`spawn` in the shape of ``llmos.transport.Spawner``, for ``Node(spawner=...)``.

        Remote spawn requests then start supervised actors on this node. Spawn options
        (``restart=``, ``capacity=``, ...) may travel in ``kwargs``.

        Raises:
            SupervisionError: ``cls`` is not an Actor subclass; or as for :meth:`spawn`.
        """
        if not isinstance(cls, type) or not issubclass(cls, Actor):
            raise SupervisionError(f"a node can only spawn Actor subclasses, got {cls!r}")
        return self.spawn(cls, *args, name=name, **kwargs)

    def _parent(self, supervisor: ActorRef | None) -> Supervisor:
        if supervisor is None:
            return self
        found = supervisor_of(supervisor)
        if found is None:
            raise SupervisionError(
                f"{supervisor!r} is not a running Supervisor in this process; start one with "
                "kernel().spawn(Supervisor, ...) first"
            )
        if isinstance(found, Pool):
            raise SupervisionError(
                f"{supervisor!r} is a pool, which only supervises its own members; start the "
                "actor under the kernel or a Supervisor"
            )
        return found

    def spawn_pool(
        self,
        actor_class: type[Actor],
        *args: Any,
        size: int = 2,
        router: RouterName | Router = "round_robin",
        min_size: int | None = None,
        max_size: int | None = None,
        name: str | None = None,
        hash_key: HashKey = None,
        autoscale: Autoscale | None = None,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = Backoff(),  # noqa: B008 (frozen, shared safely)
        restart_on_ask_error: bool = False,
        capacity: int | None = None,
        when_full: WhenFull | None = None,
        supervisor: ActorRef | None = None,
        timer: Timer | None = None,
        **kwargs: Any,
    ) -> PoolRef:
        """Start a pool of ``size`` interchangeable actors behind one ref.

        Args:
            actor_class: the members' class; *args and **kwargs go to each constructor.
            size: members at start.
            router: ``round_robin``, ``least_loaded``, ``consistent_hash`` or ``broadcast``.
            min_size, max_size: autoscaling bounds (default: both ``size``, no autoscaling).
            name: the pool's name (members are ``name-1``, ``name-2``, ...).
            hash_key: for ``consistent_hash``: a field name or a function of the message.
            autoscale: when to grow and shrink (default: :class:`Autoscale`).
            max_restarts, within, backoff: each member's restart budget and backoff; a member
                past its budget is replaced by a new one that takes over its queued work.
            restart_on_ask_error: also restart a member when an ask's handler raises.
            capacity, when_full: each member's mailbox bound and policy.
            supervisor: the ref of a Supervisor to start the pool under (default: the kernel).
            timer: the clock for autoscaling and restarts (default: the supervisor's).

        Returns:
            The pool's ref.

        Raises:
            SupervisionError: invalid sizes, router or spec.
        """
        parent = self._parent(supervisor)
        if name is None:
            name = f"{actor_class.__name__}-pool-{next(_pool_numbers)}"
        low = size if min_size is None else min_size
        high = size if max_size is None else max_size
        member = ChildSpec(
            actor_class, args, kwargs, None, "permanent", restart_on_ask_error, capacity, when_full
        )
        core = PoolCore(
            name,
            member,
            size,
            low,
            high,
            make_router(router, hash_key),
            autoscale if autoscale is not None else Autoscale(),
            timer if timer is not None else parent.supervisor_timer,
        )
        options = {"max_restarts": max_restarts, "within": within, "backoff": backoff}
        parent.start_child(ChildSpec(Pool, (core,), options, name=name))
        return PoolRef(core)

    # -- lookup and statistics -------------------------------------------------------------------

    def lookup(self, name: str) -> ActorRef:
        """The ref of the pool or live actor named ``name``.

        Raises:
            ActorDeadError: nothing of that name is running in this process.
        """
        for core in live_pools():
            if core.name == name:
                return PoolRef(core)
        return get(name)

    def pool(self, name: str) -> PoolRef:
        """The ref of the running pool named ``name``.

        Raises:
            ActorDeadError: no pool of that name is running.
        """
        ref = self.lookup(name)
        if not isinstance(ref, PoolRef):
            raise ActorDeadError(f"{name!r} is an actor, not a pool; use kernel().lookup")
        return ref

    def stats(self) -> KernelStats:
        """A snapshot of every actor in the kernel's tree and every pool, with the figures."""
        actors: list[ActorStats] = []
        ask_failures = 0
        gave_up = 0
        todo: list[Supervisor] = [self]
        while todo:
            sup = todo.pop()
            ask_failures += sup.supervisor_ask_failures
            gave_up += len(sup.supervisor_gave_up) if sup is self else 0
            for cell in sup.child_cells():
                actors.append(cell.statistics())
                inner = cell.instance
                if isinstance(inner, Supervisor) and not cell.stopped:
                    todo.append(inner)
        return KernelStats(
            at=time.time(),
            actors=tuple(actors),
            pools=tuple(core.snapshot() for core in live_pools()),
            processed=sum(a.processed for a in actors),
            failed=sum(a.failed for a in actors),
            restarts=sum(a.restarts for a in actors),
            ask_failures=ask_failures,
            gave_up=gave_up,
            dead_letters=dead_letter_count(),
            tokens=merge_ledgers(ledger.snapshot() for ledger in live_ledgers()),
        )

    @handler(NodeStatus)
    def node_status(self, _msg: NodeStatus) -> list[dict[str, Any]]:
        """Answer ``llmos status``: one row per actor running in this process."""
        return status_rows()

    # -- life cycle --------------------------------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop every child (newest first), then the kernel; True if all stopped in time."""
        try:
            return self.actor_ref.stop(timeout)
        except ActorError:
            return True

    def on_stop(self) -> None:
        super().on_stop()
        with _lock:
            if _current and _current[0] is self:
                _current.clear()
