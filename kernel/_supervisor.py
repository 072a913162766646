"""The Supervisor actor: starts children from specs, restarts the ones that fail.

Failure contract (what a supervisor does when a child fails):

1. a failed ``temporary`` child, or a ``transient`` one that exited normally, stops for good
   (its watchers get ``Terminated``, its queued asks fail with ``ActorDeadError``);
2. otherwise the restart is counted against the intensity window (``max_restarts`` in
   ``within`` seconds; OTP's defaults, 1 in 5 s). Past it, with ``escalate=True`` (OTP), the
   supervisor stops all its children and fails itself with ``SupervisionError``, so its own
   supervisor decides; with ``escalate=False`` (the kernel's root policy) the budget is per
   child and only that child is stopped for good;
3. within it, the strategy picks the children to restart (the failed one, all, or the rest),
   the backoff picks the wait, and each comes back as a fresh instance behind the same ref and
   mailbox, in start order. Siblings restarted with it first finish what was queued before.

The children table is shared with the threads that call :meth:`Supervisor.spawn` and with the
children's threads (which report through :class:`~llmos.actors.Supervisor` callbacks); decisions
are made in the supervisor's own thread, on typed messages it tells itself.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from llmos.actors import Actor, ActorError, ActorRef, LocalRef, WhenFull, handler
from llmos.actors.lowlevel import Cell
from llmos.kernel._children import (
    ChildFailed,
    ChildHalted,
    ChildRecord,
    Children,
    RestartDue,
    Sync,
    stop_children,
)
from llmos.kernel._errors import SupervisionError
from llmos.kernel._policy import RestartWindow
from llmos.kernel._restarts import Restarts
from llmos.kernel._spec import STRATEGIES, Backoff, ChildSpec, Restart, Strategy
from llmos.kernel._timer import Timer, default_timer

__all__ = ["Supervisor", "supervisor_of"]

log = logging.getLogger("llmos.kernel")

_live: dict[str, Supervisor] = {}


def supervisor_of(ref: ActorRef | str) -> Supervisor | None:
    """The running :class:`Supervisor` instance behind a ref (or name), or None."""
    return _live.get(ref if isinstance(ref, str) else ref.name)


class Supervisor(Actor):
    """An actor whose children it starts from specs and restarts when they fail.

    Start one under the kernel (``kernel().spawn(Supervisor, children=[...], name=...)``) or
    under another supervisor to nest them; add children later with :meth:`spawn` or
    ``kernel().spawn(..., supervisor=ref)``. See the module docstring for what happens on a
    failure. Subclasses may override :meth:`on_child_failure` to hear about every decision.

    Args:
        children: specs started, in order, by the constructor (so they run once the
            supervisor does; they, and every child added since, come back when it is itself
            restarted).
        strategy: ``one_for_one``, ``one_for_all`` or ``rest_for_one``.
        max_restarts: restarts allowed within ``within`` seconds (OTP's defaults: 1 in 5 s).
        within: the intensity window in seconds.
        backoff: waits between consecutive restarts of a child (None: never wait).
        escalate: past the intensity, stop all children and fail this supervisor (True, OTP),
            or count per child and only stop that child for good (False).
        timer: the clock and timer (default: the shared ``llmos:timer`` thread).
        shutdown_timeout: how long a normal stop waits for the children to finish.

    Raises:
        SupervisionError: an argument is invalid.

    Supervisors (the kernel and pools among them) are system actors (``actor_system``): a
    peer node may ask them, but never stop them over the network.
    """

    actor_system = True

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 1,
        within: float = 5.0,
        backoff: Backoff | None = Backoff(),  # noqa: B008 (frozen, shared safely)
        escalate: bool = True,
        timer: Timer | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise SupervisionError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        specs = list(children)
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise SupervisionError(f"children must be ChildSpec records, got {spec!r}")
        window = RestartWindow(max_restarts, within)  # checks its arguments first
        self._sup_timer: Timer = timer if timer is not None else default_timer()
        self._sup_shutdown_timeout = shutdown_timeout
        self._sup_table = Children(self._own_name())
        self._sup_restarts = Restarts(
            self._sup_table,
            strategy=strategy,
            window=window,
            backoff=backoff if backoff is not None else Backoff.none(),
            escalate=escalate,
            timer=self._sup_timer,
            wait_over=self._due,
        )
        self._sup_carry: list[ChildSpec] | None = None
        # The SupervisionErrors of children it gave up on (escalate=False), newest last.
        self.supervisor_gave_up: collections.deque[SupervisionError] = collections.deque(maxlen=100)
        self.supervisor_ask_failures = 0  # asks whose handler raised, in all its children
        _live[self._own_name()] = self
        # As in OTP, the supervisor is up only once its children are: a child whose
        # constructor raises fails the supervisor's own start, and nothing is left running.
        try:
            for spec in specs:
                self._start_child(spec, initial=True)
        except BaseException:
            self._shutdown_children("stopped: its supervisor failed to start", graceful=False)
            raise

    # -- public API (any thread) -----------------------------------------------------------

    @property
    def supervisor_timer(self) -> Timer:
        """The clock and timer this supervisor uses."""
        return self._sup_timer

    @property
    def supervisor_strategy(self) -> Strategy:
        """Which siblings restart with a failed child."""
        return self._sup_restarts.strategy

    @property
    def supervisor_escalate(self) -> bool:
        """Past the intensity: fail this supervisor (True), or give up on that child only."""
        return self._sup_restarts.escalate

    def spawn(
        self,
        actor_class: type[Actor],
        *args: Any,
        name: str | None = None,
        restart: Restart = "permanent",
        restart_on_ask_error: bool = False,
        capacity: int | None = None,
        when_full: WhenFull | None = None,
        **kwargs: Any,
    ) -> LocalRef:
        """Start a child (its constructor runs in this thread) and supervise it.

        Args:
            actor_class: the Actor subclass.
            *args: its constructor's positional arguments.
            name: a unique name (default: ``ClassName-N``).
            restart: ``permanent``, ``transient`` or ``temporary``.
            restart_on_ask_error: also restart it when an ask's handler raises.
            capacity: mailbox bound; when_full: mailbox policy.
            **kwargs: its constructor's keyword arguments.

        Returns:
            The child's stable ref.

        Raises:
            NameTaken: a live actor holds the name.
            SupervisionError: the spec is invalid or this supervisor is stopping.
            Exception: whatever the constructor raised.
        """
        spec = ChildSpec(
            actor_class, args, kwargs, name, restart, restart_on_ask_error, capacity, when_full
        )
        return self.start_child(spec)

    def start_child(self, spec: ChildSpec) -> LocalRef:
        """Start a child from a spec; see :meth:`spawn`."""
        return self._start_child(spec).cell.ref

    def _start_child(self, spec: ChildSpec, initial: bool = False) -> ChildRecord:
        cls = spec.actor_class
        cell = Cell(
            spec.build,
            spec.name,
            cls.actor_mailbox(spec.capacity, spec.when_full),
            class_name=cls.__name__,
            supervisor=self,
            ask_errors_fail=spec.restart_on_ask_error,
            dispatcher=cls.actor_dispatcher,
        )
        window = self._sup_restarts.child_window()
        rec = ChildRecord(spec.named(cell.name), cell, window, initial)
        self._sup_table.add(rec)
        try:
            cell.start()
        except BaseException:
            self._sup_table.discard(rec)
            raise
        self._child_added(rec)
        return rec

    def children(self) -> list[LocalRef]:
        """Refs of the children, in start order."""
        return [rec.cell.ref for rec in self._sup_table.records()]

    def child_specs(self) -> list[ChildSpec]:
        """The specs of the children, in start order (names fixed)."""
        return [rec.spec for rec in self._sup_table.records()]

    def child_cells(self) -> list[Cell]:
        """The children's cells, in start order (for statistics and pools)."""
        return [rec.cell for rec in self._sup_table.records()]

    # -- hooks -------------------------------------------------------------------------------

    def on_child_failure(self, name: str, error: BaseException, action: str) -> None:
        """Called in this supervisor's thread after it decided about a failed child.

        Args:
            name: the child's name.
            error: its failure, or the SupervisionError when giving up or escalating.
            action: ``restart``, ``stop`` (not restarted by its restart type), ``give_up``
                (``escalate=False``: its budget is spent, it stopped for good) or
                ``escalate`` (all children stopped, this supervisor fails next).
        """
        level = logging.WARNING if action in ("restart", "stop") else logging.ERROR
        log.log(level, "%s: child %s failed (%r): %s", self._own_name(), name, error, action)

    # -- the Supervisor protocol of cells (children's threads) ---------------------------------

    def child_failed(self, cell: Cell, error: BaseException) -> None:
        """The cell's instance failed (called in the child's thread): decide in ours."""
        self._report(cell, error, ChildFailed)

    def child_halted(self, cell: Cell) -> None:
        """The cell halted for a group restart (called in the child's thread)."""
        self._report(cell, cell.last_error, ChildHalted)

    def child_ask_failed(self, cell: Cell, error: BaseException) -> None:
        """An ask's handler raised (counted; the asker has the error)."""
        with self._sup_table.lock:
            self.supervisor_ask_failures += 1

    def child_stopped(self, cell: Cell) -> None:
        """The cell stopped for good (called in whichever thread stopped it)."""
        rec, group = self._sup_table.remove(cell)
        if rec is None:
            return
        self._child_removed(rec)
        if group is not None:
            self._tell_self(RestartDue(group.id, timed=False))

    def _report(self, cell: Cell, error: BaseException | None, kind: type[Any]) -> None:
        table = self._sup_table
        with table.lock:
            rec = table.known(cell)
            closing = table.closing
        if rec is None or closing:
            cell.finalize(f"failed: {error!r}; its supervisor is stopping")
            return
        if not self._tell_self(kind(cell.name, rec.serial, cell.restarts)):
            cell.finalize(f"failed: {error!r}; its supervisor {self._own_name()!r} is gone")

    # -- decisions (this supervisor's thread) -------------------------------------------------

    @handler(ChildFailed)
    def _on_child_failed(self, msg: ChildFailed) -> None:
        rec = self._current(msg.name, msg.serial, msg.incarnation)
        if rec is None:
            return
        name, sup = rec.cell.name, self._own_name()
        last = rec.cell.last_error
        error = last if last is not None else SupervisionError("unknown")
        now = self._sup_timer.now()
        action, gave_up = self._sup_restarts.judge(rec, error, now, sup)
        if gave_up is None:
            self.on_child_failure(name, error, action)
            if action == "restart":
                self._sup_restarts.restart(rec, error, now, sup)
            else:
                self._stop_for_good(rec, f"failed: {error!r} ({rec.spec.restart}, not restarted)")
        elif action == "escalate":
            self.on_child_failure(name, gave_up, action)
            self._shutdown_children(f"stopped: supervisor {sup!r} gave up", graceful=False)
            raise gave_up
        else:
            self.supervisor_gave_up.append(gave_up)
            self.on_child_failure(name, gave_up, action)
            self._stop_for_good(rec, f"failed: {error!r}; gave up after too many restarts")

    @handler(ChildHalted)
    def _on_child_halted(self, msg: ChildHalted) -> None:
        rec = self._current(msg.name, msg.serial, msg.incarnation)
        if rec is not None:
            self._sup_restarts.halted(rec)

    @handler(RestartDue)
    def _on_restart_due(self, msg: RestartDue) -> None:
        self._sup_restarts.due(msg.group, msg.timed)

    @handler(Sync)
    def _on_sync(self, msg: Sync) -> None:
        return None

    def _current(self, name: str, serial: int, incarnation: int) -> ChildRecord | None:
        """The child a report is about, if the report is not stale."""
        rec = self._sup_table.get(name)
        if rec is None or rec.serial != serial or rec.cell.stopped:
            return None
        if rec.cell.restarts != incarnation or rec.cell.state != "failed":
            return None  # restarted (or restarting) since this was sent
        if self._sup_table.closing:
            rec.cell.finalize(f"failed: {rec.cell.last_error!r}; its supervisor is stopping")
            return None
        return rec

    def _stop_for_good(self, rec: ChildRecord, reason: str) -> None:
        """A failed child will not come back: stop it (subclasses may save its queue first)."""
        rec.cell.finalize(reason)

    def _child_added(self, rec: ChildRecord) -> None:
        """Hook for subclasses: a child was started."""

    def _child_removed(self, rec: ChildRecord) -> None:
        """Hook for subclasses (any thread): a child stopped for good and left the table."""

    # -- life cycle ----------------------------------------------------------------------------

    def on_stop(self) -> None:
        self._shutdown_children("stopped", graceful=True)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._shutdown_children(f"stopped: supervisor {self._own_name()!r} failed", graceful=False)

    def pre_restart(self, error: BaseException) -> Any:
        self._shutdown_children(f"stopped: supervisor {self._own_name()!r} restarts", False)
        return self._sup_carry

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        """Start the children added after the constructor's, then ``on_start``."""
        for spec in state or ():
            if self._sup_table.get(spec.name) is None:
                self.start_child(spec)
        self.on_start()

    def _shutdown_children(self, reason: str, graceful: bool) -> None:
        """Stop every child, newest first; keep the added ones' specs for a restart."""
        recs, groups = self._sup_table.close()
        if self._sup_carry is None:
            self._sup_carry = [
                r.spec for r in recs if r.spec.restart != "temporary" and not r.initial
            ]
        if _live.get(self._own_name()) is self:
            del _live[self._own_name()]
        for group in groups:
            if group.handle is not None:
                group.handle.cancel()
        stop_children(recs, reason, graceful, self._sup_shutdown_timeout)

    # -- helpers -------------------------------------------------------------------------------

    def _own_name(self) -> str:
        try:
            return self.actor_name
        except ActorError:
            return type(self).__name__

    def _due(self, group: int) -> None:
        self._tell_self(RestartDue(group, timed=True))

    def _tell_self(self, msg: Any) -> bool:
        try:
            self.actor_ref.tell(msg)
        except ActorError:
            return False
        return True
