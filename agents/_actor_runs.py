"""Recording any set of actors as one run: every message delivered to a marked actor.

``record_actors("runs.db")`` opens an :class:`ActorRun`; :meth:`ActorRun.mark` adds actors to
it (by ref or name, local to this process). From then on every message delivered to a marked
actor, ask or tell, from any sender (another marked actor, any other actor, code outside
actors, another node), is recorded in the run's ``messages`` table with its sender,
receiver, wire type, payload, time and causal link, and so is the answer to every ask of a
marked actor. Rows go through the same batching log actor as a recorded chat.

How: while the run is open it holds the actor core's trace hook
(:func:`llmos.actors.lowlevel.install_trace_hook`), the seam every tell and ask already
passes through to carry a trace context. Each message sent gets a context naming a fresh
message id and the id of the message its sender was handling (its cause); the receiving
actor handles it through the hook, which records it when the receiver is marked. A message
from another node that carries no context gets one on arrival (sender ``(another node)``,
no cause). Nothing changes for a process that records no actors: with no hook in place a
tell makes no check at all.

Keys and causes: a message's key is ``ask/<id>`` or ``tell/<id>`` (16 hex digits) and an
ask's answer ``reply/<id>`` (its cause: the ask). A message's cause is the key of the message
its sender was handling when it sent it ("" when sent outside any handler), whether or not
that one was recorded (it was, when its receiver is marked). The time is when the receiver
began handling the message (for an answer: when it settled).

Limits: one run at a time per process, and not while OpenTelemetry tracing is on (they take
the same slot: a clear error). A sender on another node is named ``(another node)``, and
the answer to an ask from another node is not recorded (the asker's node holds it); messages
a process keeps to itself (``local_only``) are not recorded.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

from llmos.actors import ActorRef, LlmosError
from llmos.actors.lowlevel import (
    current_actor_name,
    install_trace_hook,
    parse_traceparent,
)
from llmos.agents._errors import AgentError
from llmos.agents._runlog import Recording

__all__ = ["ActorRun", "record_actors"]

_ORIGIN = 0x6C6C6D6F7372756E  # the high half of a trace id this recorder made ("llmosrun")
_LOW = (1 << 64) - 1
_ASK_CAUSE = 0x02  # a flag bit of the context: the cause was an ask
_SENDERS_KEPT = 65_536  # contexts made and not delivered yet (dropped messages age out)
_random_id = functools.partial(random.Random().getrandbits, 64)  # unique across nodes too


class _Tap:
    """The trace hook of an open :class:`ActorRun` (see the module docstring)."""

    def __init__(self, run: ActorRun) -> None:
        self.run = run
        self.local = threading.local()
        self.senders: dict[int, str] = {}  # message id -> sender, until it is delivered
        self.lock = threading.Lock()

    def _stamp(self, message: Any, sender: str) -> tuple[str | None, int]:
        if getattr(type(message), "__llmos_local_only__", False):
            return None, 0
        mid = _random_id() or 1
        cause: tuple[int, bool] | None = getattr(self.local, "cause", None)
        cause_id, cause_ask = cause if cause is not None else (0, False)
        with self.lock:
            senders = self.senders
            senders[mid] = sender
            if len(senders) > _SENDERS_KEPT:
                del senders[next(iter(senders))]
        flags = 0x01 | (_ASK_CAUSE if cause_ask else 0)
        return f"00-{_ORIGIN:016x}{cause_id:016x}-{mid:016x}-{flags:02x}", mid

    @staticmethod
    def _sender() -> str:
        name = current_actor_name()
        return name if name is not None else f"outside:{threading.current_thread().name}"

    def outgoing(self, message: Any) -> str | None:
        return self._stamp(message, self._sender())[0]

    def incoming(self, message: Any) -> str | None:
        return self._stamp(message, "(another node)")[0]

    def ask(self, message: Any, target: str, reply: Any) -> str | None:
        asker = self._sender()
        trace, mid = self._stamp(message, asker)
        receiver = target.partition("@")[0]
        if trace is not None and receiver in self.run.marked_names:
            key = f"ask/{mid:016x}"
            reply.add_done_callback(lambda settled: self._answered(settled, key, receiver, asker))
        return trace

    def _answered(self, reply: Any, cause: str, answerer: str, asker: str) -> None:
        error = reply.exception()
        answer: Any = f"{type(error).__name__}: {error}" if error is not None else reply.get()
        kind = f"error:{type(error).__name__}" if error is not None else None
        key = "reply/" + cause.partition("/")[2]
        with self.lock:
            self.run.count += 1
        self.run.recording.message(key, cause, answerer, asker, answer, kind=kind)

    def handle(
        self, dispatch: Callable[[Any], Any], message: Any, trace: str, actor: str, asked: bool
    ) -> Any:
        parsed = parse_traceparent(trace)
        if parsed is None or parsed[0] >> 64 != _ORIGIN:  # a peer's own trace context
            parsed = (_ORIGIN << 64, _random_id() or 1, 0x01)
        trace_id, mid, flags = parsed
        marked = actor in self.run.marked_names
        with self.lock:
            sender = self.senders.pop(mid, "(another node)")
            self.run.count += marked
        if marked:
            cause_id = trace_id & _LOW
            cause = f"{'ask' if flags & _ASK_CAUSE else 'tell'}/{cause_id:016x}" if cause_id else ""
            key = f"{'ask' if asked else 'tell'}/{mid:016x}"
            self.run.recording.message(key, cause, sender, actor, message)
        local = self.local
        before = getattr(local, "cause", None)
        local.cause = (mid, asked)
        try:
            return dispatch(message)
        finally:
            local.cause = before


class ActorRun:
    """A run made of the actors marked in it: every message delivered to them is recorded.

    Open one with :func:`record_actors` (a context manager: leaving it closes the run). See
    the module docstring for what is recorded and how; read it back with
    :meth:`~llmos.agents.RunStore.messages` or ``llmos show FILE RUN_ID``.

    Args:
        path: the run log (a SQLite file, created when missing).
        run_id: the run's id (default: a fresh one).
        task: what the run is for (shown by ``llmos runs``).

    Raises:
        RunLogError: the file cannot be opened or written.
        AgentError: another run of actors is open in this process, or tracing is on.
    """

    def __init__(
        self, path: str | os.PathLike[str], run_id: str | None = None, *, task: str = ""
    ) -> None:
        self.run_id = run_id or f"actors-{uuid.uuid4().hex[:12]}"
        self.marked_names: frozenset[str] = frozenset()
        self.count = 0
        self._lock = threading.Lock()
        self.recording = Recording.open(path, self.run_id)
        tap = _Tap(self)
        try:
            install_trace_hook(tap)
        except LlmosError as exc:
            self.recording.close()
            raise AgentError(f"cannot record a run of actors now: {exc}") from exc
        try:
            self.recording.store.begin_run(
                self.run_id, chat="", kind="actors", task=task, participants=(), recipe=None
            )
        except BaseException:
            install_trace_hook(None, replace=tap)
            self.recording.close()
            raise
        self._tap: _Tap | None = tap

    def mark(self, *actors: ActorRef | str) -> None:
        """Record every message delivered to these actors from now on (refs or names of
        actors in this process; an actor keeps its mark across restarts)."""
        names = {a if isinstance(a, str) else a.name.partition("@")[0] for a in actors}
        with self._lock:
            self.marked_names = self.marked_names | names

    def unmark(self, *actors: ActorRef | str) -> None:
        """Stop recording the messages delivered to these actors."""
        names = {a if isinstance(a, str) else a.name.partition("@")[0] for a in actors}
        with self._lock:
            self.marked_names = self.marked_names - names

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every message recorded so far is committed.

        Raises:
            RunLogError: rows could not be written, or not within ``timeout``.
        """
        self.recording.flush(timeout)

    def close(self) -> None:
        """Stop recording, commit what was recorded and end the run (safe to call twice).

        Raises:
            RunLogError: rows could not be written.
        """
        tap, self._tap = self._tap, None
        if tap is None:
            return
        install_trace_hook(None, replace=tap)
        try:
            self.recording.end_run(
                reason=f"{self.count} messages recorded",
                stopped_by="closed",
                turns=self.count,
                participants=sorted(self.marked_names),
            )
        finally:
            self.recording.close()

    def __enter__(self) -> ActorRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ActorRun {self.run_id} marked={sorted(self.marked_names)}>"


def record_actors(
    path: str | os.PathLike[str], run_id: str | None = None, *, task: str = ""
) -> ActorRun:
    """Open a run that records every message delivered to the actors marked in it.

    Example::

        with record_actors("runs.db", "bank-1") as run:
            run.mark(teller, ledger)
            teller.ask(Deposit(10), timeout=5).get()
        # llmos show runs.db bank-1

    See :class:`ActorRun` for the arguments and errors.
    """
    return ActorRun(path, run_id, task=task)
