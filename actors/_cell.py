"""The cell: the stable identity behind an ActorRef.

A cell owns an actor's name, mailbox, counters and watchers, and the recipe to build its
instance. The instance and its thread come and go (a supervisor may replace a failed one); the
cell and its mailbox stay, which is what lets a ref taken before a crash reach the new instance
and keeps every message queued behind the failing one.

Failure contract (the actor loop: :meth:`Cell._run` and the methods after it):

- an exception while handling an ask goes back to the asker and is counted; the actor goes on
  (unless ``ask_errors_fail`` is set, then it also fails as below);
- an exception while handling a tell, in ``on_start`` or ``post_restart``, or any
  BaseException (SystemExit, KeyboardInterrupt, one of the user's own) from any user code
  fails only this actor: the failing message goes to dead letters, the rest of the
  mailbox is kept, and the supervisor decides (restart, stop, escalate). With no supervisor the
  actor stops for good;
- an exception that escapes the actor loop itself (the actor's thread dying) is handled like a
  failed tell, so the supervisor still hears of it and the cell never stays "running" with no
  thread behind it;
- when the actor stops for good, every queued ask fails with ActorDeadError, queued tells go to
  dead letters, and every watcher receives Terminated.

A supervisor may also ask a healthy actor to restart (:meth:`Cell.request_restart`, for the
one_for_all and rest_for_one strategies): the running instance finishes the messages queued
before the request, hands its state to ``pre_restart``, and waits for the supervisor; the rest of
the mailbox goes to the new instance.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from llmos.actors import _registry
from llmos.actors._dispatcher import Dispatcher
from llmos.actors._errors import ActorDeadError, ActorError, LlmosError
from llmos.actors._local_ref import LocalRef
from llmos.actors._mailbox import HALT, Envelope, Mailbox, envelope
from llmos.actors._messages import Terminated
from llmos.actors._records import ASK_LATENCY_BOUNDS, ActorStats, record_dead_letter
from llmos.actors._reply import Deferred, current_cell, set_current_cell
from llmos.actors._trace import handle as _traced

if TYPE_CHECKING:
    from types import TracebackType

    from llmos.actors._ref import ActorRef

__all__ = ["UNHANDLED", "Cell", "CellSupervisor", "Instance", "binding", "bound_cell"]

log = logging.getLogger("llmos.actors")
_monotonic = time.monotonic
_bucket = bisect.bisect_left  # latency <= bound: the bucket of that bound


class _Unhandled:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNHANDLED"


UNHANDLED: Any = _Unhandled()
"""What ``on_receive`` (and so ``actor_dispatch``) returns for a message no handler takes: the
actor then refuses it (an ask fails with ActorError, a tell goes to dead letters)."""


class _Binding(threading.local):
    cell: Cell | None = None  # a class default: reading it never raises


_binding = _Binding()


@contextlib.contextmanager
def binding(cell: Cell) -> Iterator[None]:
    """Make ``cell`` the one an Actor constructed in this thread attaches to."""
    previous = _binding.cell
    _binding.cell = cell
    try:
        yield
    finally:
        _binding.cell = previous


def bound_cell() -> Cell | None:
    """The cell an Actor constructed now in this thread belongs to (None outside a start)."""
    return _binding.cell


class Instance(Protocol):
    """What a cell runs and calls, all in the actor's thread: the hooks of
    :class:`~llmos.actors.Actor`, which implements each of them."""

    def actor_dispatch(self, message: Any) -> Any: ...

    def on_start(self) -> None: ...

    def on_stop(self) -> None: ...

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def pre_restart(self, error: BaseException) -> Any: ...

    def post_restart(self, error: BaseException | None, state: Any) -> None: ...


class CellSupervisor(Protocol):
    """What a cell tells its supervisor. Both calls come from the child's own thread.

    Optional extras, looked up with ``getattr``: ``child_ask_failed(cell, error)`` (an ask's
    handler raised) and ``child_halted(cell)`` (the instance ended on :meth:`Cell.request_restart`
    and waits for ``restart()``; without it the cell restarts itself at once).
    """

    def child_failed(self, cell: Cell, error: BaseException) -> None: ...

    def child_stopped(self, cell: Cell) -> None: ...


class Cell:
    """The stable identity of one actor. Built by ``Actor.start`` or by a kernel."""

    __slots__ = (
        "__weakref__",
        "_active",
        "_handoff",
        "_lock",
        "_parked",
        "_sched_lock",
        "_starting",
        "_turn",
        "ask_errors_fail",
        "ask_latency",
        "ask_seconds",
        "busy",
        "carried_state",
        "class_name",
        "current_reply",
        "deferred",
        "dispatcher",
        "factory",
        "failed",
        "halting",
        "in_flight",
        "instance",
        "last_error",
        "last_latency",
        "mailbox",
        "name",
        "processed",
        "ref",
        "restarts",
        "scheduled",
        "state",
        "stop_reason",
        "stopped",
        "stopped_event",
        "supervisor",
        "thread",
        "total_latency",
        "wakes",
        "watchers",
    )

    def __init__(
        self,
        factory: Callable[[], Instance],
        name: str | None,
        mailbox: Mailbox,
        *,
        class_name: str,
        supervisor: CellSupervisor | None = None,
        ask_errors_fail: bool = False,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.name = name if name is not None else f"{class_name}-{_registry.next_number()}"
        if not isinstance(self.name, str) or not self.name or "@" in self.name:
            raise ActorError(f"an actor name must be a non-empty str without '@', got {name!r}")
        self.class_name = class_name
        self.factory = factory
        self.mailbox = mailbox
        self.supervisor = supervisor
        self.ask_errors_fail = ask_errors_fail
        self.state = "new"
        self.stopped = False
        self.stop_reason = ""
        self.instance: Instance | None = None
        self.thread: threading.Thread | None = None
        self.watchers: list[ActorRef] = []
        self.stopped_event = threading.Event()
        self.last_error: BaseException | None = None
        self.carried_state: Any = None
        self.current_reply: Any = None
        self.halting: BaseException | None = None
        self._parked = False  # the failed instance's thread waits on _handoff for the next one
        self._handoff: queue.SimpleQueue[Instance | None] | None = None
        self.wakes = 0  # restart markers (HALT envelopes) queued by request_restart, not yet seen
        self._lock = threading.Lock()
        self.processed = 0
        self.failed = 0
        self.restarts = 0
        self.in_flight = 0
        self.deferred = Deferred()  # asks taken over with actor_defer_reply, not answered yet
        self.busy = 0.0
        self.last_latency = 0.0
        self.total_latency = 0.0
        self.ask_latency = [0] * (len(ASK_LATENCY_BOUNDS) + 1)  # asks by latency bucket
        self.ask_seconds = 0.0
        self.ref: LocalRef = LocalRef(self)
        # With a dispatcher, no thread of its own: turns on the dispatcher's threads.
        self.dispatcher = dispatcher
        self.scheduled = False  # a turn is queued or running (at most one at a time)
        self._sched_lock = threading.Lock()
        self._active: Instance | None = None  # the instance turns run (None: none may run)
        self._starting: bool | None = None  # its on_start (False) or post_restart (True) is due
        self._turn = self._take_turn
        if dispatcher is not None:
            mailbox.schedule_turns(self)

    def __repr__(self) -> str:
        return f"<actor {self.name} {self.state}>"

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Register the name, build the instance in this thread, start its thread.

        Raises:
            NameTaken: a live actor already holds the name.
            Exception: whatever the actor's constructor raised (the name is released).
        """
        _registry.register(self)
        try:
            self._launch(restarted=False)
        except BaseException as exc:
            _registry.unregister(self)
            if isinstance(exc, Exception):
                raise
            # SystemExit, KeyboardInterrupt...: contained, so the caller (maybe a kernel or a
            # node's thread spawning for a peer) goes on; the original stays as the cause.
            raise ActorError(
                f"the constructor of {self.class_name} ({self.name!r}) raised {exc!r}; the "
                "actor was not started"
            ) from exc

    def _launch(self, restarted: bool) -> None:
        with binding(self):
            instance = self.factory()
        self.instance = instance
        self.state = "running"
        if self.dispatcher is not None:
            self._starting = restarted
            self._active = instance
            self.schedule_turn()
            return
        thread = threading.Thread(
            target=self._run, args=(instance, restarted), name=f"llmos:{self.name}", daemon=True
        )
        self.thread = thread
        _registry.add_thread(thread)
        thread.start()

    def restart(self) -> None:
        """Replace the failed instance with a fresh one behind the same ref and mailbox.

        Called by the supervisor. The new instance is built in the calling thread and runs in
        the failed one's thread when that is still waiting (see ``_park``), else in a new one
        (or in its dispatcher's turns).
        If building it raises, that counts as a new failure and goes back to the supervisor.
        """
        with self._lock:
            if self.stopped or self.state not in ("failed", "restarting"):
                return
            self.state = "restarting"
            parked, self._parked = self._parked, False
        self.restarts += 1
        try:
            if not parked:
                self._launch(restarted=True)
                return
            with binding(self):
                instance = self.factory()
        except BaseException as exc:  # any kind: the caller is the supervisor's thread
            log.error("restarting %s: constructor failed", self.name, exc_info=exc)
            with self._lock:
                self._parked = parked  # the waiting thread still waits
            self._fail(None, exc, None)
            return
        self.instance = instance
        with self._lock:
            if self.state == "restarting":
                self.state = "running"
        assert self._handoff is not None
        self._handoff.put(instance)

    def request_restart(self, reason: BaseException) -> bool:
        """Have the running instance end after the messages queued so far, for a restart.

        Called by a supervisor whose strategy restarts siblings of a failed child. The instance
        handles what is already queued, then ``pre_restart(reason)`` runs and the supervisor is
        told (``child_halted``); the messages sent after this call wait for the new instance.

        Returns:
            True if a running instance will halt; False if the actor is not running (failed,
            restarting, stopping or stopped), so there is nothing to halt.
        """
        with self._lock:
            if self.stopped or self.state != "running" or self.halting is not None:
                return False
            self.halting = reason
            self.wakes += 1
        self.mailbox.put_control(envelope(HALT))
        return True

    def request_stop(self) -> None:
        """Stop after the messages queued so far; at once if no instance is running."""
        with self._lock:
            if self.stopped or self.state == "stopping":
                return
            running = self.state in ("running", "restarting")
            if running:
                self.state = "stopping"
        if running:
            self.mailbox.put_control(envelope(HALT))
        else:
            self.finalize("stopped")

    def finalize(self, reason: str) -> None:
        """Stop for good: release the name, fail what is queued, tell the watchers."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            self.state = "stopped"
            self.stop_reason = reason
            parked, self._parked = self._parked, False
        if parked and self._handoff is not None:
            self._handoff.put(None)  # the waiting thread ends
        _registry.unregister(self)
        self.drain()
        if self.dispatcher is not None:
            running = self._active is not None and current_cell() is not self
        else:
            thread = self.thread
            running = thread is not None and thread.is_alive() and not parked
            running = running and thread is not threading.current_thread()
        if running:
            self.mailbox.put_control(envelope(HALT))  # end the loop of a still running instance
        watchers, self.watchers = self.watchers, []
        note = Terminated(self.ref, reason)
        for watcher in watchers:
            try:
                watcher.tell(note)
            except LlmosError as exc:  # the watcher is gone, or its node is unreachable
                log.info("Terminated for %s not delivered to %r: %s", self.name, watcher, exc)
        self.stopped_event.set()
        sup = self.supervisor
        if sup is not None:
            sup.child_stopped(self)

    def successor(self) -> Cell | None:
        """The live cell started under this one's name since it stopped, if any."""
        newer = _registry.lookup(self.name)
        return newer if isinstance(newer, Cell) and newer is not self else None

    def drain(self) -> None:
        """Fail every queued ask with ActorDeadError; queued tells go to dead letters."""
        while (item := self.mailbox.get_nowait()) is not None:
            msg, reply, _sent, _trace = item
            if msg is HALT:
                continue
            if reply is not None:
                reply.set_exception(
                    ActorDeadError(
                        f"actor {self.name!r} stopped ({self.stop_reason}) before handling "
                        f"{type(msg).__name__}; start it again and resend"
                    )
                )
            else:
                record_dead_letter(self.name, msg, f"stopped: {self.stop_reason}")

    def hand_over(self, other: Cell) -> int:
        """Move every queued message (asks keep their replies) into ``other``'s mailbox.

        For a pool replacing a member that will not come back. Moved messages are never
        refused by a full mailbox; control envelopes stay behind.

        Returns:
            How many messages moved.
        """
        moved = 0
        while (item := self.mailbox.get_nowait()) is not None:
            if item[0] is not HALT:
                other.mailbox.put_control(item)
                moved += 1
        return moved

    def watch(self, watcher: ActorRef) -> None:
        """Send ``Terminated`` to ``watcher`` when this actor stops for good."""
        with self._lock:
            if not self.stopped:
                self.watchers.append(watcher)
                return
        watcher.tell(Terminated(self.ref, self.stop_reason))

    def unwatch(self, watcher: ActorRef) -> None:
        with self._lock:
            if watcher in self.watchers:
                self.watchers.remove(watcher)

    def statistics(self) -> ActorStats:
        processed = self.processed
        return ActorStats(
            name=self.name,
            state=self.state,
            mailbox_depth=self.mailbox.depth(),
            in_flight=self.in_flight,
            processed=processed,
            failed=self.failed,
            restarts=self.restarts,
            busy_seconds=self.busy,
            last_latency=self.last_latency,
            mean_latency=self.total_latency / processed if processed else 0.0,
            class_name=self.class_name,
            deferred=self.deferred.count,
            ask_latency_counts=tuple(self.ask_latency),
            ask_latency_sum=self.ask_seconds,
        )

    # -- the actor loop (runs in the actor's thread) ----------------------------------------

    def _run(self, instance: Instance, restarted: bool) -> None:
        set_current_cell(self)
        try:
            current: Instance | None = instance
            while current is not None:
                self._serve(current, restarted)
                restarted = True
                current = self._park()
        finally:
            set_current_cell(None)
            me = threading.current_thread()
            _registry.discard_thread(me)
            if self.thread is me and self.state in ("running", "stopping") and not self.stopped:
                # Last resort: never leave a cell "running" with no thread to serve it.
                self.finalize(f"failed: its thread ended ({self.last_error!r})")

    def _serve(self, instance: Instance, restarted: bool) -> None:
        """Run one instance until it stops, fails or halts."""
        try:
            if restarted:
                state, self.carried_state = self.carried_state, None
                instance.post_restart(self.last_error, state)
            else:
                instance.on_start()
        except BaseException as exc:
            self._fail(instance, exc, None)
            return
        try:
            self._loop(instance, iter(self.mailbox.get, None))  # get blocks, never gives None
        except BaseException as exc:  # the loop itself broke: the actor's thread is dying
            self._fail(instance, exc, None)

    def _park(self) -> Instance | None:
        """After a failure or halt, wait for the supervisor's restart in this same thread.

        Starting a thread is the slow part of a restart (milliseconds at the tail), so the
        failed instance's thread waits for the new instance instead of ending. Returns None
        (the thread ends) once the actor is stopped for good or another thread took over.
        """
        with self._lock:
            mine = self.thread is threading.current_thread()
            if self.stopped or self.state != "failed" or not mine:
                return None
            if self._handoff is None:
                self._handoff = queue.SimpleQueue()
            handoff = self._handoff
            self._parked = True
        return handoff.get()

    # -- turns on a dispatcher (a cell with no thread of its own) ---------------------------

    def schedule_turn(self) -> None:
        """A message arrived: queue a turn unless one is queued or running already."""
        if self.scheduled:
            return
        with self._sched_lock:
            if self.scheduled:
                return
            self.scheduled = True
        dispatcher = self.dispatcher
        assert dispatcher is not None
        try:
            dispatcher.submit(self._turn)
        except LlmosError:
            with self._sched_lock:
                self.scheduled = False
            raise

    def _take_turn(self, budget: int) -> bool:
        """One turn in a dispatcher thread: handle up to ``budget`` messages, then yield.

        Returns True when there is more to do: the cell stays scheduled and the dispatcher
        runs its next turn (at once, or after the other ready actors' turns).
        """
        more = False
        set_current_cell(self)
        try:
            self._turn_of(self._active, budget)
            more = self._has_work()
        finally:
            set_current_cell(None)
            if not more:
                with self._sched_lock:
                    self.scheduled = False
                # Anything that came in since the turn last looked (a message, a restart)
                # found the turn still scheduled and queued none: queue one now.
                if self._has_work():
                    self.schedule_turn()
        return more

    def _has_work(self) -> bool:
        waiting = not self.mailbox.empty()
        if self._active is not None:
            return waiting or self._starting is not None
        return waiting and self.stopped  # a turn drains them

    def _turn_of(self, instance: Instance | None, budget: int) -> None:
        if instance is None:  # failed and waiting for its supervisor, or stopped for good
            if self.stopped:
                self.drain()
            return
        starting, self._starting = self._starting, None
        try:
            if starting is not None:
                if starting:
                    state, self.carried_state = self.carried_state, None
                    instance.post_restart(self.last_error, state)
                else:
                    instance.on_start()
            items = itertools.islice(iter(self.mailbox.get_nowait, None), budget)
            if self._loop(instance, items):
                return  # the turn is over; the instance goes on
        except BaseException as exc:  # a hook, or the loop itself, broke: the instance fails
            if self._active is instance:
                self._active = None
            self._fail(instance, exc, None)
            return
        if self._active is instance:  # it halted, stopped or failed (unless already replaced)
            self._active = None

    def serving(self) -> bool:
        """True while an instance runs and something runs its messages: its own live thread,
        or (with a dispatcher) a live dispatcher. A cell ``running`` but not serving would be
        a zombie; the failure contract never leaves one."""
        if self.dispatcher is not None:
            return self._active is not None and self.dispatcher.alive()
        thread = self.thread
        return thread is not None and thread.is_alive()

    # -- the loop (an own thread's, or one turn's) -------------------------------------------

    def _loop(self, instance: Instance, items: Iterator[Envelope]) -> bool:
        """Handle the envelopes ``items`` yields; True when they ran out (a turn's end), False
        when the instance ended (it halted, stopped or failed)."""
        dispatch = instance.actor_dispatch
        monotonic = _monotonic
        for item in items:
            msg, reply, sent_at, trace = item
            if msg is HALT:
                # A marker of request_restart always sits before any HALT queued after it.
                if self.wakes:
                    if self._halt(instance):
                        return False
                    continue  # stale marker (a failure or a stop came first): its HALT follows
                self._stop_instance(instance)
                return False
            if reply is not None:
                if monotonic() > reply.deadline:  # reply.expired(), inline
                    reply.expire()
                    record_dead_letter(self.name, msg, "expired: the ask timed out while queued")
                    continue
                asker = reply.asker
                if asker is not None and asker.stopped:  # reply.abandoned(), inline
                    reply.abandon()
                    record_dead_letter(self.name, msg, "abandoned: its asker gave up on it")
                    continue
            self.in_flight = 1
            self.current_reply = reply
            start = monotonic()
            try:
                if trace is None:
                    result = dispatch(msg)
                else:  # sent from a traced span: handled in a span of its own
                    result = _traced(dispatch, msg, trace, self.name, reply is not None)
            except BaseException as exc:  # contain, report to the supervisor
                self._account(sent_at, start)
                self.failed += 1
                if reply is not None:
                    self.ask_latency[_bucket(ASK_LATENCY_BOUNDS, self.last_latency)] += 1
                    self.ask_seconds += self.last_latency
                    if isinstance(exc, Exception):
                        reply.set_exception(exc)
                    else:
                        reply.set_exception(
                            ActorError(f"actor {self.name!r} died handling the ask: {exc!r}")
                        )
                    report = getattr(self.supervisor, "child_ask_failed", None)
                    if report is not None:
                        report(self, exc)
                    if isinstance(exc, Exception) and not self.ask_errors_fail:
                        continue
                    self._fail(instance, exc, None)
                else:
                    self._fail(instance, exc, item)
                return False
            end = monotonic()  # one clock for both: busy time, and latency since it was sent
            self.in_flight = 0
            self.processed += 1
            self.busy += end - start
            latency = end - sent_at
            self.last_latency = latency
            self.total_latency += latency
            if reply is not None:
                self.ask_latency[_bucket(ASK_LATENCY_BOUNDS, latency)] += 1
                self.ask_seconds += latency
            if result is UNHANDLED:
                self._unhandled(msg, reply)
            elif reply is not None and self.current_reply is not None:
                reply.set_result(result)  # unless the handler took it over (actor_defer_reply)
        return True

    def _account(self, sent_at: float, start: float) -> None:
        end = _monotonic()
        self.in_flight = 0
        self.processed += 1
        self.busy += end - start
        latency = end - sent_at
        self.last_latency = latency
        self.total_latency += latency

    def _unhandled(self, msg: Any, reply: Any) -> None:
        kind = type(msg).__name__
        if reply is not None:
            reply.set_exception(
                ActorError(f"actor {self.name!r} ({self.class_name}) has no handler for {kind}")
            )
        else:
            log.warning("%s has no handler for %s; message sent to dead letters", self.name, kind)
            record_dead_letter(self.name, msg, "unhandled")

    def _stop_instance(self, instance: Instance) -> None:
        try:
            instance.on_stop()
        except BaseException as exc:  # contained: the actor stops all the same
            self.last_error = exc
            log.error("on_stop of %s raised", self.name, exc_info=exc)
        self.finalize("stopped")

    def _halt(self, instance: Instance) -> bool:
        """End the instance for a restart the supervisor asked for; False if a stop came first."""
        with self._lock:
            self.wakes -= 1
            reason, self.halting = self.halting, None
            if self.stopped or self.state != "running" or reason is None:
                return False
            self.state = "failed"  # waiting for the supervisor, with no instance (as on failure)
        self.last_error = reason
        self._pre_restart(instance, reason)
        report = getattr(self.supervisor, "child_halted", None)
        if report is not None:
            report(self)
        else:
            self.restart()
        return True

    def _pre_restart(self, instance: Instance, error: BaseException) -> None:
        """Keep what ``pre_restart`` returns for the next instance; nothing if it raises."""
        self.carried_state = None
        try:
            self.carried_state = instance.pre_restart(error)
        except BaseException as exc:  # contained: the restart goes on without carried state
            log.error("pre_restart of %s raised; nothing carried over", self.name, exc_info=exc)

    def _fail(self, instance: Instance | None, error: BaseException, item: Envelope | None) -> None:
        """The instance failed: keep the mailbox, hand the decision to the supervisor."""
        self.last_error = error
        if item is not None:
            record_dead_letter(self.name, item[0], f"failed: {error!r}")
        log.error("actor %s failed", self.name, exc_info=error)
        if instance is not None:
            try:
                instance.on_failure(type(error), error, error.__traceback__)
            except BaseException as exc:  # contained: the failure is handled all the same
                log.error("on_failure of %s raised", self.name, exc_info=exc)
        with self._lock:
            self.halting = None  # a pending restart request is moot: this failure restarts it
            if self.stopped:
                return
            stopping = self.state == "stopping"
            self.state = "failed"
        sup = self.supervisor
        if sup is None or stopping:
            self.finalize(f"failed: {error!r}")
            return
        if instance is not None:
            self._pre_restart(instance, error)
        try:
            sup.child_failed(self, error)
        except BaseException as exc:  # a supervisor that cannot hear of it: stop for good
            log.error("the supervisor of %s failed to take its failure", self.name, exc_info=exc)
            self.finalize(f"failed: {error!r}; its supervisor raised {exc!r}")
