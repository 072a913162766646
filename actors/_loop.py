"""The actor loop: what a cell's thread does with one instance, and how it fails or halts.

Mixed into :class:`~llmos.actors._cell.Cell` (which keeps the identity, the life cycle and the
registry); everything here runs in the actor's own thread. The failure contract it implements
is described in :mod:`llmos.actors._cell`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmos.actors._errors import ActorError
from llmos.actors._mailbox import HALT, Envelope, Mailbox
from llmos.actors._records import record_dead_letter
from llmos.actors._trace import handle as _traced

if TYPE_CHECKING:
    from llmos.actors._actor import Actor

__all__ = ["UNHANDLED", "ActorLoop"]

log = logging.getLogger("llmos.actors")
_perf = time.perf_counter
_monotonic = time.monotonic


class _Unhandled:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNHANDLED"


UNHANDLED: Any = _Unhandled()
"""What ``on_receive`` (and so ``actor_dispatch``) returns for a message no handler takes: the
actor then refuses it (an ask fails with ActorError, a tell goes to dead letters)."""


class ActorLoop:
    """Serving one instance: start or resume it, handle its mailbox, fail, halt or stop."""

    name: str
    class_name: str
    mailbox: Mailbox
    supervisor: Any
    ask_errors_fail: bool
    state: str
    stopped: bool
    thread: threading.Thread | None
    last_error: BaseException | None
    carried_state: Any
    current_reply: Any
    halting: BaseException | None
    wakes: int
    processed: int
    failed: int
    in_flight: int
    busy: float
    last_latency: float
    total_latency: float
    _lock: threading.Lock
    _parked: bool
    _handoff: queue.SimpleQueue[Actor | None] | None
    finalize: Callable[[str], None]  # Cell's
    restart: Callable[[], None]  # Cell's

    def _serve(self, instance: Actor, restarted: bool) -> None:
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
            self._loop(instance)
        except BaseException as exc:  # the loop itself broke: the actor's thread is dying
            self._fail(instance, exc, None)

    def _park(self) -> Actor | None:
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

    def _loop(self, instance: Actor) -> None:
        get = self.mailbox.get
        dispatch = instance.actor_dispatch
        perf = _perf
        monotonic = _monotonic
        while True:
            item = get()
            msg, reply, sent_at, trace = item
            if msg is HALT:
                # A marker of request_restart always sits before any HALT queued after it.
                if self.wakes:
                    if self._halt(instance):
                        return
                    continue  # stale marker (a failure or a stop came first): its HALT follows
                self._stop_instance(instance)
                return
            if reply is not None and monotonic() > reply.deadline:  # reply.expired(), inline
                reply.expire()
                record_dead_letter(self.name, msg, "expired: the ask timed out while queued")
                continue
            self.in_flight = 1
            self.current_reply = reply
            start = perf()
            try:
                if trace is None:
                    result = dispatch(msg)
                else:  # sent from a traced span: handled in a span of its own
                    result = _traced(dispatch, msg, trace, self.name, reply is not None)
            except BaseException as exc:  # contain, report to the supervisor
                self._account(sent_at, start)
                self.failed += 1
                if reply is not None:
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
                return
            end = perf()
            self.in_flight = 0
            self.processed += 1
            self.busy += end - start
            latency = monotonic() - sent_at
            self.last_latency = latency
            self.total_latency += latency
            if result is UNHANDLED:
                self._unhandled(msg, reply)
            elif reply is not None and self.current_reply is not None:
                reply.set_result(result)  # unless the handler took it over (actor_defer_reply)

    def _account(self, sent_at: float, start: float) -> None:
        end = _perf()
        self.in_flight = 0
        self.processed += 1
        self.busy += end - start
        latency = _monotonic() - sent_at
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

    def _stop_instance(self, instance: Actor) -> None:
        try:
            instance.on_stop()
        except BaseException as exc:  # contained: the actor stops all the same
            self.last_error = exc
            log.error("on_stop of %s raised", self.name, exc_info=exc)
        self.finalize("stopped")

    def _halt(self, instance: Actor) -> bool:
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

    def _pre_restart(self, instance: Actor, error: BaseException) -> None:
        """Keep what ``pre_restart`` returns for the next instance; nothing if it raises."""
        self.carried_state = None
        try:
            self.carried_state = instance.pre_restart(error)
        except BaseException as exc:  # contained: the restart goes on without carried state
            log.error("pre_restart of %s raised; nothing carried over", self.name, exc_info=exc)

    def _fail(self, instance: Actor | None, error: BaseException, item: Envelope | None) -> None:
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
