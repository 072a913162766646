"""Recording a run: the log actor that batches writes, and the per-run handle the chat and its
agents record through.

A chat made with ``record=`` holds a :class:`Recording`. The chat records the messages it
exchanges with the participants (each Turn and its answer) and every transcript entry; an agent
answering a Turn of a recorded chat records every request it makes through
:meth:`~llmos.agents.Agent.ask_agent` (its model calls) with the reply. Rows are gathered into
batches (256 rows, or what came within 50 ms of a batch's first row, whichever is first) and
each batch is told to a :class:`RunLogger` actor, which commits it in one transaction, off the
chat's and the agents' threads. A crash loses at most the rows of the batches not yet
committed, never a row of a committed one; a resumed run takes again the turns those rows
would have recorded.

The same handle serves recorded replies back: on resume every call already in the log is
answered from it (so the agents rebuild their memory without asking the model again) and the
run goes on live after the last one; a replay answers every call from the log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgpack

from llmos.actors import Actor, ActorError, ActorRef, AskTimeout, handler, message, wire_name
from llmos.agents._divergence import Divergence, find_divergence
from llmos.agents._effects import EffectJournal
from llmos.agents._runstore import RunLogError, RunStore, pack, unpack_message
from llmos.agents._transcript import Entry
from llmos.kernel import TimerHandle, default_timer

__all__ = ["Mode", "Recording", "RunLogger", "RunTurn", "recording_for"]

log = logging.getLogger("llmos.agents.runs")

Mode = Literal["record", "resume", "replay", "live"]
"""How a :class:`Recording` treats calls: ``record`` asks and records; ``resume`` answers a
call the log holds from the log, asks (and records) the others; ``replay`` answers every call
from the log and writes nothing; ``live`` asks again, compares with the log and writes nothing."""


@message("llmos.agents._LogRows", local_only=True)
class _LogRows:
    rows: bytes  # msgpack of [[table, row], ...]: one bytes value is checked at once on send


@message("llmos.agents._LogFlush", local_only=True)
class _LogFlush:
    pass


class RunLogger(Actor):
    """The actor that writes a run's rows to its store: each batch it is told, in one
    transaction, in the order the batches were told.

    After a failed write (a full disk, a damaged file) it writes nothing more and answers
    every flush with that failure.

    Args:
        store: the open store (this actor writes; other threads may read).
    """

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.failure: RunLogError | None = None
        self.written = 0

    @handler(_LogRows)
    def write(self, msg: _LogRows) -> None:
        """Commit one batch of rows."""
        if self.failure is not None:
            return
        rows = msgpack.unpackb(msg.rows, raw=False)
        try:
            self.store.write_rows(rows)
            self.written += len(rows)
        except RunLogError as exc:
            log.error("%s", exc)
            self.failure = exc

    @handler(_LogFlush)
    def flush(self, _msg: _LogFlush) -> int:
        """Answer how many rows were written so far (every batch told before is written), or
        raise the write failure."""
        if self.failure is not None:
            raise self.failure
        return self.written


class Recording:
    """A run being recorded, resumed or replayed, as the chat and its agents use it.

    Args:
        store: the run's store.
        run_id: the run's id.
        mode: see :data:`Mode`.
        logger: the log actor (None in the modes that write nothing).
    """

    def __init__(
        self, store: RunStore, run_id: str, mode: Mode, logger: ActorRef | None = None
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.mode = mode
        self.logger = logger
        self.writes = mode in ("record", "resume")
        self.logged: dict[tuple[str, int, int], tuple[Any, ...]] = {}
        self.logged_entries: dict[int, dict[str, Any]] = {}
        self.logged_selections: dict[int, str] = {}
        if mode != "record":
            for call in store.calls(run_id):
                self.logged[(call["agent"], call["turn"], call["seq"])] = (
                    call["reply_type"],
                    call["reply"],
                )
            self.logged_entries = {e["index"]: e for e in store.entries(run_id)}
            self.logged_selections = store.selections(run_id)
        self.served = 0
        self.divergence: Divergence | None = None
        self._effects: EffectJournal | None = None
        self._effects_lock = threading.Lock()
        self.batch = 256
        self.flush_after = 0.05
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._pending_lock = threading.Lock()
        self._timer: TimerHandle | None = None
        self.lost = ""  # why rows could not even be handed to the log actor ("" if never)

    @classmethod
    def open(cls, path: Any, run_id: str, mode: Mode = "record") -> Recording:
        """Open the store at ``path`` and start a log actor when the mode writes."""
        store = RunStore(path)
        logger = RunLogger.start(store) if mode in ("record", "resume") else None
        return cls(store, run_id, mode, logger)

    # -- writing ---------------------------------------------------------------------------

    def _row(self, table: str, row: tuple[Any, ...]) -> None:
        if not self.writes:
            return
        with self._pending_lock:
            self._pending.append((table, row))
            if len(self._pending) >= self.batch:
                self._send_locked()
            elif self._timer is None:
                self._timer = default_timer().call_later(self.flush_after, self._send)

    def _send(self) -> None:
        with self._pending_lock:
            self._send_locked()

    def _send_locked(self) -> None:
        # Told under the lock, so batches reach the log actor in the order they were made.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._pending = self._pending, []
        if not rows or self.logger is None:
            return
        try:
            self.logger.tell(_LogRows(msgpack.packb(rows, use_bin_type=True)))
        except ActorError as exc:
            log.error(
                "run %s: the log actor is gone, %d rows lost: %s", self.run_id, len(rows), exc
            )
            if not self.lost:
                self.lost = (
                    f"run log {str(self.store.path)!r}: its log actor is gone ({exc}); rows "
                    "were not written from then on"
                )

    def message(
        self, key: str, cause: str, sender: str, receiver: str, msg: Any, kind: str | None = None
    ) -> None:
        """Record one message between the run's actors (``kind``: its wire type, by default
        the message's wire name or class name)."""
        if kind is None:
            kind = wire_name(type(msg)) or type(msg).__name__
        self._row(
            "messages", (self.run_id, key, cause, time.time(), sender, receiver, kind, pack(msg))
        )

    def selected(self, turn: int, candidates: tuple[str, ...]) -> str | None:
        """The speaker the log says was picked for ``turn`` (resume and replay; a live replay
        asks its selector again), if still a candidate."""
        if self.mode not in ("resume", "replay"):
            return None
        name = self.logged_selections.get(turn)
        return name if name in candidates else None

    def select(self, chat: str, turn: int, cause: str, speaker: str) -> None:
        """Record the selector's pick for ``turn`` (a message from the chat to itself)."""
        self.message(f"select/{turn}", cause, chat, chat, speaker)

    def entry(self, entry: Entry) -> Entry:
        """Record a transcript entry; one the log holds already comes back with its recorded
        time and timing (a resumed or replayed run repeats the transcript exactly)."""
        old = self.logged_entries.get(entry.index)
        same = old is not None and (old["kind"], old["speaker"], old["text"], old["turn"]) == (
            entry.kind,
            entry.speaker,
            entry.text,
            entry.turn,
        )
        if old is not None and not same:  # another path from here on: the log's is replaced
            self._row("trim_entries", (self.run_id, entry.index))
            self.logged_entries = {}
        if old is not None and same:
            entry = dataclasses.replace(
                entry, at=old["at"], tokens=old["tokens"], seconds=old["seconds"]
            )
        e = entry
        self._row(
            "entries",
            (self.run_id, e.index, e.kind, e.speaker, e.text, e.turn, e.at, e.tokens, e.seconds),
        )
        return entry

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every row sent so far is committed.

        Raises:
            RunLogError: rows could not be written (the first failure), or the log actor did
                not answer within ``timeout``.
        """
        if self.logger is None:
            return
        self._send()
        try:
            self.logger.ask(_LogFlush(), timeout=timeout).get()
        except AskTimeout as exc:
            raise RunLogError(
                f"run log {str(self.store.path)!r}: the log actor did not commit within "
                f"{timeout:g} s"
            ) from exc
        except ActorError as exc:  # stopped or crashed for good: what it had not written is lost
            raise RunLogError(
                f"run log {str(self.store.path)!r}: its log actor is gone ({exc}); rows sent "
                "to it may not be written"
            ) from exc

    def end_run(
        self, *, reason: str, stopped_by: str, turns: int, participants: Sequence[str] | None = None
    ) -> None:
        """Commit every row sent so far, then record how the run ended (see
        :meth:`RunStore.end_run`): a reader that sees the run ended sees all of its rows. A
        recording that only reads writes nothing.

        Raises:
            RunLogError: the rows or the end could not be written.
        """
        if self.writes:
            self.flush()
            self.store.end_run(
                self.run_id,
                reason=reason,
                stopped_by=stopped_by,
                turns=turns,
                participants=participants,
            )

    def effects(self) -> EffectJournal:
        """The run's effect journal (opened on first use; it never performs an effect in a
        replay)."""
        with self._effects_lock:
            if self._effects is None:
                replay = self.mode in ("replay", "live")
                self._effects = EffectJournal(self.store.path, self.run_id, replay=replay)
            return self._effects

    def close(self) -> None:
        """Stop the log actor (it commits what it holds) and close the store."""
        if self.logger is not None:
            self._send()
            try:
                self.logger.stop(timeout=30)
            except ActorError:
                pass
        with self._effects_lock:
            if self._effects is not None:
                self._effects.close()
        self.store.close()

    # -- calls -----------------------------------------------------------------------------

    def call(
        self,
        agent: str,
        turn: int,
        seq: int,
        cause: str,
        target: ActorRef,
        msg: Any,
        ask: Callable[[], Any],
    ) -> Any:
        """Answer one request an agent makes during a turn: from the log or by ``ask``."""
        logged = self.logged.get((agent, turn, seq))
        if logged is not None and self.mode in ("resume", "replay"):
            self.served += 1
            return unpack_message(logged[1])
        if logged is None and self.mode == "replay":
            raise RunLogError(
                f"run log {str(self.store.path)!r}, run {self.run_id!r}: {agent} made a call "
                f"at turn {turn} (#{seq}) that the log does not hold; the run took another "
                "path than the recorded one (replay --live runs the model instead)"
            )
        started = time.perf_counter()
        reply = ask()
        seconds = time.perf_counter() - started
        if self.mode == "live":
            if logged is not None and self.divergence is None:
                logged_reply = unpack_message(logged[1])
                self.divergence = find_divergence(turn, agent, logged_reply, reply, target)
            return reply
        self._row(
            "calls",
            (
                self.run_id,
                agent,
                turn,
                seq,
                cause,
                target.name,
                time.time(),
                seconds,
                wire_name(type(msg)) or type(msg).__name__,
                pack(msg),
                wire_name(type(reply)) or type(reply).__name__,
                pack(reply),
            ),
        )
        return reply


class RunTurn:
    """An agent's view of the recorded turn it is answering: the run, the turn, and how many
    calls it has made in it so far."""

    def __init__(self, recording: Recording, turn: int, cause: str) -> None:
        self.recording = recording
        self.turn = turn
        self.cause = cause
        self.calls = 0
        self.tells = 0
        self.effects = 0

    def call(self, agent: str, target: ActorRef, msg: Any, ask: Callable[[], Any]) -> Any:
        """Answer a request of ``agent`` (see :meth:`Recording.call`)."""
        self.calls += 1
        return self.recording.call(agent, self.turn, self.calls, self.cause, target, msg, ask)

    def told(self, agent: str, target: ActorRef, msg: Any) -> None:
        """Record a message ``agent`` tells ``target`` during the turn."""
        self.tells += 1
        key = f"{self.cause}/tell/{self.tells}"
        self.recording.message(key, self.cause, agent, target.name, msg)


_active: dict[str, Recording] = {}
_active_lock = threading.Lock()


def register(chat: str, recording: Recording | None) -> None:
    """Make ``recording`` the one of the chat named ``chat`` (None: remove it)."""
    with _active_lock:
        if recording is None:
            _active.pop(chat, None)
        else:
            _active[chat] = recording


def recording_for(chat: str) -> Recording | None:
    """The recording of the running chat named ``chat`` in this process, if it records."""
    return _active.get(chat)
