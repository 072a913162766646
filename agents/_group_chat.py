"""GroupChat: a multi-agent conversation run as an actor that survives failing participants.

The chat drives itself one turn at a time by telling itself ``_NextTurn``; each turn asks one
participant :class:`~llmos.agents.Turn` with a timeout and hears of the answer through the
reply's done callback, so the chat actor stays responsive (``GetStatus``, ``StopChat``, streamed
tokens) while a participant thinks. Failure handling, turn by turn:

- a participant that raises, times out or answers garbage gets the turn once more (its kernel
  restarts it in between when it crashed); failing again, its turn is skipped with a note;
- a participant that stopped for good leaves the chat with a note;
- when no participant can speak, or every turn in a round was skipped, the chat ends saying so.

The chat always ends with a recorded reason: a termination condition, a participant ending it,
``StopChat``, a stop of the chat actor, or a failure. ``max_turns`` is a hard cap on top of any
condition, so a chat never runs forever.

The turns themselves (who speaks, retries, skips, what each participant has seen) are run by a
:class:`~llmos.agents._chat_turns.TurnTaking` the chat owns and calls from its handlers; the chat
keeps the transcript, the result and the run log's ends.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import llmos.actors as actors
from llmos.actors import ActorError, ActorRef, AskTimeout, Reply, handler
from llmos.agents._agent import Agent
from llmos.agents._chat_control import GetResult, GetStatus, StartChat, StopChat
from llmos.agents._chat_recording import begin_recording, finish_recording, open_recording
from llmos.agents._chat_turns import Ending, TurnTaking, _Described, _NextTurn, _TurnReady
from llmos.agents._errors import AgentError
from llmos.agents._replies import most_similar, normalize
from llmos.agents._runlog import Recording
from llmos.agents._selection import Selector, resolve_selector
from llmos.agents._termination import AnyOf, MaxTurns, Repetition, Termination
from llmos.agents._transcript import (
    ChatResult,
    ChatTimeout,
    ConsolePrinter,
    Entry,
    Printer,
    TranscriptWriter,
)
from llmos.models import Completion, TokenChunk

__all__ = ["GroupChat"]

log = logging.getLogger("llmos.agents.chat")

_REPEAT_WINDOW = 6  # how many earlier utterances a new one is compared with, for the notes


class GroupChat(Agent):
    """A conversation between agents with speaker selection and termination conditions.

    Args:
        participants: the agents (refs, or names of running actors), each answering
            :class:`~llmos.agents.Turn` with an Utterance or a str.
        task: the topic or question, shown to every participant.
        selector: "round_robin", a model ref or :class:`ModelSelector` (a model picks), or any
            callable ``(SelectionContext) -> name``.
        termination: when to stop (default ``MaxTurns(10) | Repetition()``: ten turns, or
            sooner when the chat goes round in circles); combine with ``|`` and ``&``.
        max_turns: a hard cap on turns, whatever the termination says.
        speaker_timeout: how long a turn may take (an agent's ``agent_turn_timeout`` overrides).
        max_tokens: the most tokens per utterance passed to participants (0: their default).
        printer: where to stream the chat: "console" (a ConsolePrinter on stdout), any
            :class:`Printer`, or None for silence.
        save_to: a path stem: the transcript goes to ``<stem>.jsonl`` (as it happens) and
            ``<stem>.md`` (at the end).
        stream_tokens: ask model-backed participants to stream tokens to the printer.
        retries: how often a failed turn is tried again before it is skipped.
        note_repeats: an utterance at least this alike (see :func:`~llmos.agents.similarity`)
            to one of the six before it, or empty, gets a note in the transcript saying so;
            0 turns the notes off (the termination decides whether the chat ends).
        description: what this chat is about (for Describe).
        oplog: a JSONL file for this chat's operation log.
        record: a run log (SQLite file) to record the run to: every Turn and answer, every
            request the agents make during their turns (model calls) with its reply, every
            transcript entry (see ``llmos.agents.resume_chat`` and ``replay_chat``); or a
            :class:`~llmos.agents.Recording` (how a resume or a replay runs a chat).
        run_id: the recorded run's id (default: a new one, from the time and a random part).
        recipe: how to build this chat again in another process, for ``llmos resume``:
            ``{"function": "module:function", "args": {...}}``, a function that takes the
            args and returns a :class:`~llmos.agents.ChatSetup`.

    Raises:
        AgentError: fewer than two participants, duplicate names, or bad arguments.
        RunLogError: the run log cannot be opened (it names the file).
    """

    agent_oplog_quiet = (TokenChunk, Completion, _TurnReady, _NextTurn, _Described)

    def __init__(
        self,
        participants: Sequence[ActorRef | str],
        task: str = "",
        *,
        selector: str | Selector | ActorRef = "round_robin",
        termination: Termination | None = None,
        max_turns: int = 100,
        speaker_timeout: float = 60.0,
        max_tokens: int = 0,
        printer: Printer | str | None = "console",
        save_to: str | os.PathLike[str] | None = None,
        stream_tokens: bool = True,
        retries: int = 1,
        note_repeats: float = 0.8,
        description: str | None = None,
        oplog: str | os.PathLike[str] | None = None,
        record: str | os.PathLike[str] | Recording | None = None,
        run_id: str | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description=description or f"group chat: {task}", oplog=oplog)
        refs = [actors.get(p) if isinstance(p, str) else p for p in participants]
        if len(refs) < 2 or not all(isinstance(r, ActorRef) for r in refs):
            raise AgentError(
                f"a chat needs at least two participant refs, got {list(participants)!r}"
            )
        names = tuple(r.name for r in refs)
        if len(set(names)) != len(names):
            raise AgentError(f"participant names must differ, got {names}; rename one")
        if not isinstance(task, str):
            raise AgentError(f"the task must be a str, got {task!r}")
        if speaker_timeout <= 0 or retries < 0 or max_turns < 1:
            raise AgentError("speaker_timeout must be > 0, retries >= 0 and max_turns >= 1")
        self.names = names
        self.task = task
        resolved = resolve_selector(selector)
        cap = MaxTurns(max_turns)
        ends: Termination = AnyOf(termination or MaxTurns(10) | Repetition(), cap)
        if isinstance(note_repeats, bool) or not isinstance(note_repeats, int | float):
            raise AgentError(f"note_repeats must be a number in 0..1, got {note_repeats!r}")
        if not 0 <= note_repeats <= 1:
            raise AgentError(f"note_repeats must be in 0..1 (0: no notes), got {note_repeats!r}")
        self.note_repeats = float(note_repeats)
        if printer == "console":
            printer = ConsolePrinter()
        if isinstance(printer, str):
            raise AgentError(f"printer must be 'console', a Printer or None, got {printer!r}")
        self.printer: Printer | None = printer
        self.writer = TranscriptWriter(save_to) if save_to is not None else None
        self.entries: list[Entry] = []
        self.started_at: float | None = None
        self.result: ChatResult | None = None
        self.waiters: list[Reply] = []
        self.recipe = recipe
        self.owns_recording = not isinstance(record, Recording)
        self.recording: Recording | None = open_recording(record, run_id)
        self.turn_taking = TurnTaking(
            self.actor_ref,
            dict(zip(names, refs, strict=True)),
            task,
            selector=resolved,
            termination=ends,
            speaker_timeout=float(speaker_timeout),
            max_tokens=max_tokens,
            stream_to=self.actor_ref if stream_tokens and printer is not None else None,
            retries=retries,
            max_text_chars=self.agent_max_text_chars,
            entries=self.entries,
            add=self._add,
            recording=self.recording,
        )

    @classmethod
    def run(
        cls,
        participants: Sequence[ActorRef | str],
        task: str = "",
        *,
        timeout: float = 300.0,
        name: str | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Start a chat of this class, wait up to ``timeout`` for its result, stop it.

        See :func:`~llmos.agents.run_chat` (the same, with this class).

        Raises:
            ChatTimeout: the chat had not ended in time (it is stopped; the partial result is
                attached).
        """
        chat = cls.open_chat(participants, task, name, **kwargs)
        try:
            chat.ask(StartChat(), timeout=min(60.0, timeout)).get()
            try:
                result: ChatResult = chat.ask(GetResult(), timeout=timeout).get()
                return result
            except AskTimeout:
                note = f"run_chat gave up after its timeout of {timeout:g} s"
                partial: ChatResult | None
                try:
                    partial = chat.ask(StopChat(note), timeout=10).get()
                except ActorError:
                    partial = None
                raise ChatTimeout(
                    f"the chat did not end within {timeout:g} s; it was stopped (raise timeout, or "
                    "add a TimeLimit/MaxTurns condition)",
                    partial,
                ) from None
        finally:
            chat.stop(timeout=10)

    @classmethod
    def open_chat(
        cls, participants: Sequence[ActorRef | str], task: str, name: str | None, **kwargs: Any
    ) -> ActorRef:
        """Start a chat actor of this class (a subclass with other arguments overrides it)."""
        return cls.start(participants, task, name=name, **kwargs)

    # -- control -----------------------------------------------------------------------------

    @handler(StartChat)
    def start_chat(self, _msg: StartChat) -> bool:
        """Describe the participants, start the clock, take the first turn."""
        if self.started_at is not None:
            return False
        if self.recording is not None:
            begin_recording(
                self.recording,
                self.actor_name,
                type(self).__name__,
                self.task,
                self.names,
                self.recipe,
            )
        self.started_at = time.monotonic()
        self.turn_taking.describe_participants()  # told _Described when all answered
        return True

    @handler(_Described)
    def described(self, _msg: _Described) -> None:
        if self.result is None:  # not stopped meanwhile
            self.turn_taking.take_descriptions()
            self.turn_taking.start()

    @handler(StopChat)
    def stop_chat(self, msg: StopChat) -> ChatResult:
        """End now (a no-op if already ended); answer the result."""
        if self.result is None:
            self._end(msg.reason, "stopped")
        assert self.result is not None
        return self.result

    @handler(GetResult)
    def get_result(self, _msg: GetResult) -> ChatResult | None:
        """The result, now or once the chat ends."""
        if self.result is not None:
            return self.result
        self.waiters.append(self.actor_defer_reply())
        return None

    @handler(GetStatus)
    def get_status(self, _msg: GetStatus) -> ChatResult:
        """The chat so far (or its result, once ended)."""
        return self.result or self._snapshot("", "")

    # -- turns (run by TurnTaking) -----------------------------------------------------------

    @handler(_NextTurn)
    def next_turn(self, _msg: _NextTurn) -> None:
        if self.result is None:
            self._end_with(self.turn_taking.next_turn())

    @handler(_TurnReady)
    def turn_ready(self, msg: _TurnReady) -> None:
        if self.result is None:
            self._end_with(self.turn_taking.answered(msg.token))

    @handler(TokenChunk)
    def on_chunk(self, chunk: TokenChunk) -> None:
        speaker = self.turn_taking.streaming(chunk.request_id)
        if speaker is not None:
            self._print("chunk", speaker, chunk.text)

    @handler(Completion)
    def on_completion(self, _msg: Completion) -> None:
        """Streamed requests end with their Completion; the Utterance carries what counts."""

    # -- ending ------------------------------------------------------------------------------

    def _end_with(self, ending: Ending | None) -> None:
        if ending is not None:
            self._end(ending.reason, ending.stopped_by)

    def _end(self, reason: str, stopped_by: str) -> None:
        if self.result is not None:
            return
        self.turn_taking.abandon()
        result = self._snapshot(reason, stopped_by)
        if self.writer is not None:
            try:
                self.writer.finish(result)
                result = dataclasses.replace(
                    result,
                    jsonl_path=str(self.writer.jsonl_path),
                    markdown_path=str(self.writer.markdown_path),
                )
            except OSError as exc:
                log.error("%s: could not save the transcript: %s", self.actor_name, exc)
        log_error = (
            finish_recording(self.recording, self.actor_name, result, self.owns_recording)
            if self.recording is not None
            else ""
        )
        if log_error:
            result = dataclasses.replace(result, run_log_error=log_error)
        self.result = result
        self._print("end", result)
        waiters, self.waiters = self.waiters, []
        for reply in waiters:
            reply.set_result(result)

    def _snapshot(self, reason: str, stopped_by: str) -> ChatResult:
        elapsed = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        return ChatResult(
            dialogue=self.actor_name,
            task=self.task,
            reason=reason,
            stopped_by=stopped_by,
            transcript=list(self.entries),
            turns=self.turn_taking.turns,
            tokens=self.turn_taking.tokens,
            seconds=elapsed,
            participants=list(self.names),
            ledger=self.turn_taking.ledger.snapshot(),
            run_id=self.recording.run_id if self.recording is not None else "",
        )

    def _add(
        self,
        kind: str,
        speaker: str,
        text: str,
        turn: int = 0,
        tokens: int = 0,
        seconds: float = 0.0,
        trace_id: str = "",
    ) -> None:
        entry = Entry(
            len(self.entries), kind, speaker, text, turn, time.time(), tokens, seconds, trace_id
        )
        if self.recording is not None:
            entry = self.recording.entry(entry)
        self.entries.append(entry)
        if self.writer is not None:
            try:
                self.writer.write(entry)
            except OSError as exc:
                log.error("%s: could not save a transcript entry: %s", self.actor_name, exc)
        self._print("entry", entry)
        if kind == "utterance" and self.note_repeats > 0:
            self._note_repeat(entry)

    def _note_repeat(self, entry: Entry) -> None:
        """Note an empty utterance, or one that nearly repeats a recent one."""
        if not normalize(entry.text):
            self._add("note", "", f"turn {entry.turn}: {entry.speaker} said nothing", entry.turn)
            return
        earlier = [e for e in self.entries[:-1] if e.kind == "utterance"][-_REPEAT_WINDOW:]
        at, score = most_similar(entry.text, [e.text for e in earlier])
        if at >= 0 and score >= self.note_repeats:
            said = earlier[at]
            self._add(
                "note",
                "",
                f"turn {entry.turn}: {entry.speaker} nearly repeats turn {said.turn} "
                f"({said.speaker}), {score:.0%} alike",
                entry.turn,
            )

    def _print(self, what: str, *args: Any) -> None:
        if self.printer is None:
            return
        try:
            getattr(self.printer, what)(*args)
        except Exception:  # a broken printer must not break the chat
            log.exception("%s: the printer failed", self.actor_name)

    def on_stop(self) -> None:
        if self.result is None:
            self._end("the chat actor was stopped before the chat ended", "stopped")
        if self.writer is not None:
            self.writer.close()
        super().on_stop()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if self.result is None:
            self._end(f"the chat actor failed: {exception_value!r}", "error")
        super().on_failure(exception_type, exception_value, traceback)
