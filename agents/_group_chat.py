"""GroupChat: a multi-agent conversation run as an actor that survives failing participants.

The chat drives itself one turn at a time by telling itself ``_NextTurn``; each turn asks one
participant :class:`~llmos.agents.Turn` with a timeout and waits for the answer in a small waiter
thread, so the chat actor stays responsive (``GetStatus``, ``StopChat``, streamed tokens) while a
participant thinks. Failure handling, turn by turn:

- a participant that raises, times out or answers garbage gets the turn once more (its kernel
  restarts it in between when it crashed); failing again, its turn is skipped with a note;
- a participant that stopped for good leaves the chat with a note;
- when no participant can speak, or every turn in a round was skipped, the chat ends saying so.

The chat always ends with a recorded reason: a termination condition, a participant ending it,
``StopChat``, a stop of the chat actor, or a failure. ``max_turns`` is a hard cap on top of any
condition, so a chat never runs forever.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import llmos.actors as actors
from llmos.actors import ActorDeadError, ActorError, ActorRef, AgentError, Reply, handler, message
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import AgentInfo, Describe, Turn, Utterance
from llmos.agents._model_messages import Completion, TokenChunk
from llmos.agents._selection import SelectionContext, Selector, resolve_selector, round_robin
from llmos.agents._termination import AnyOf, ChatState, MaxTurns, Termination
from llmos.agents._transcript import (
    ChatResult,
    ConsolePrinter,
    Entry,
    Printer,
    TranscriptWriter,
)

__all__ = ["GetResult", "GetStatus", "GroupChat", "StartChat", "StopChat"]

log = logging.getLogger("llmos.agents.chat")


@message("llmos.agents.StartChat")
class StartChat:
    """Start the chat (answers True, or False if it had already started)."""


@message("llmos.agents.StopChat")
class StopChat:
    """End the chat now with ``reason``; answers the :class:`ChatResult`."""

    reason: str = "stopped on request"


@message("llmos.agents.GetResult")
class GetResult:
    """Answered with the :class:`ChatResult` once the chat has ended (ask with a timeout)."""


@message("llmos.agents.GetStatus")
class GetStatus:
    """Answered at once with the chat so far, as a ChatResult (``stopped_by`` "" if running)."""


@message("llmos.agents._NextTurn")
class _NextTurn:
    pass


@message("llmos.agents._TurnReady")
class _TurnReady:
    token: int


@dataclasses.dataclass
class _InFlight:
    token: int
    speaker: str
    turn: int
    attempt: int
    started: float
    reply: Reply
    request_id: str


def _await(reply: Reply, chat: ActorRef, token: int) -> None:
    """Waiter thread: wait for one turn's answer (bounded by its ask), then wake the chat."""
    try:
        reply.get()
    except BaseException:  # the chat reads the outcome from the reply itself
        pass
    try:
        chat.tell(_TurnReady(token))
    except ActorError:
        pass  # the chat is gone; nobody wants the answer


class GroupChat(Agent):
    """A conversation between agents with speaker selection and termination conditions.

    Args:
        participants: the agents (refs, or names of running actors), each answering
            :class:`~llmos.agents.Turn` with an Utterance or a str.
        task: the topic or question, shown to every participant.
        selector: "round_robin", a model ref or :class:`ModelSelector` (a model picks), or any
            callable ``(SelectionContext) -> name``.
        termination: when to stop (default ``MaxTurns(10)``); combine with ``|`` and ``&``.
        max_turns: a hard cap on turns, whatever the termination says.
        speaker_timeout: how long a turn may take (an agent's ``agent_turn_timeout`` overrides).
        max_tokens: the most tokens per utterance passed to participants (0: their default).
        printer: where to stream the chat: "console" (a ConsolePrinter on stdout), any
            :class:`Printer`, or None for silence.
        save_to: a path stem: the transcript goes to ``<stem>.jsonl`` (as it happens) and
            ``<stem>.md`` (at the end).
        stream_tokens: ask model-backed participants to stream tokens to the printer.
        retries: how often a failed turn is tried again before it is skipped.
        description: what this chat is about (for Describe).
        oplog: a JSONL file for this chat's operation log.

    Raises:
        AgentError: fewer than two participants, duplicate names, or bad arguments.
    """

    agent_oplog_quiet = (TokenChunk, Completion, _TurnReady, _NextTurn)

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
        description: str | None = None,
        oplog: str | os.PathLike[str] | None = None,
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
        self.refs = dict(zip(names, refs, strict=True))
        self.names = names
        self.task = task
        self.selector = resolve_selector(selector)
        cap = MaxTurns(max_turns)
        self.termination: Termination = AnyOf(termination or MaxTurns(10), cap)
        self.speaker_timeout = float(speaker_timeout)
        self.max_tokens = max_tokens
        if printer == "console":
            printer = ConsolePrinter()
        if isinstance(printer, str):
            raise AgentError(f"printer must be 'console', a Printer or None, got {printer!r}")
        self.printer: Printer | None = printer
        self.stream_tokens = stream_tokens and printer is not None
        self.retries = retries
        self.writer = TranscriptWriter(save_to) if save_to is not None else None
        self.descriptions: dict[str, str] = {}
        self.timeouts: dict[str, float] = {}
        self.entries: list[Entry] = []
        self.cursor = dict.fromkeys(names, 0)  # next transcript index each one has not seen
        self.turns = 0
        self.tokens = 0
        self.last_speaker: str | None = None
        self.out: dict[str, str] = {}  # participants that left, and why
        self.skipped_in_row = 0
        self.started_at: float | None = None
        self.inflight: _InFlight | None = None
        self.result: ChatResult | None = None
        self.waiters: list[Reply] = []
        self._asks = 0

    # -- control -----------------------------------------------------------------------------

    @handler(StartChat)
    def start_chat(self, _msg: StartChat) -> bool:
        """Describe the participants, start the clock, take the first turn."""
        if self.started_at is not None:
            return False
        for name, ref in self.refs.items():
            try:
                info = ref.ask(Describe(), timeout=min(5.0, self.speaker_timeout)).get()
            except Exception:  # a plain actor, or one that is slow to start: no description
                info = None
            if isinstance(info, AgentInfo):
                self.descriptions[name] = info.description
                if info.turn_timeout > 0:
                    self.timeouts[name] = info.turn_timeout
        self.started_at = time.monotonic()
        self.termination.start()
        self.actor_ref.tell(_NextTurn())
        return True

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

    # -- turns -------------------------------------------------------------------------------

    @handler(_NextTurn)
    def next_turn(self, _msg: _NextTurn) -> None:
        if self.result is not None or self.inflight is not None:
            return
        if self._check_end():
            return
        candidates = tuple(n for n in self.names if n not in self.out)
        if not candidates:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.out.items())
            self._end(f"no participant can speak any more ({reasons})", "no_speakers")
            return
        speaker = self._select(candidates)
        self._ask(speaker, self.turns + 1, attempt=1)

    def _select(self, candidates: tuple[str, ...]) -> str:
        ctx = SelectionContext(
            turn=self.turns + 1,
            participants=self.names,
            candidates=candidates,
            descriptions=dict(self.descriptions),
            transcript=tuple(e for e in self.entries if e.kind == "utterance"),
            last_speaker=self.last_speaker,
            task=self.task,
        )
        try:
            name = self.selector(ctx)
            if name in candidates:
                return name
            problem = f"picked {name!r}, who is not among {list(candidates)}"
        except Exception as exc:
            problem = f"failed ({type(exc).__name__}: {exc})"
        fallback = round_robin(ctx)
        self._add("note", "", f"the selector {problem}; round robin picks {fallback}", ctx.turn)
        return fallback

    def _ask(self, speaker: str, turn: int, attempt: int) -> None:
        start = self.cursor[speaker]
        new = [
            {"index": e.index, "speaker": e.speaker, "text": e.text}
            for e in self.entries[start:]
            if e.kind == "utterance"
        ]
        request_id = f"{self.actor_name}:{turn}:{attempt}"
        msg = Turn(
            dialogue=self.actor_name,
            turn=turn,
            new=new,
            task=self.task,
            participants=self.names,
            max_tokens=self.max_tokens,
            stream_to=self.actor_ref if self.stream_tokens else None,
            request_id=request_id,
        )
        timeout = self.timeouts.get(speaker, self.speaker_timeout)
        left = self.termination.remaining()
        if left is not None:
            timeout = max(0.01, min(timeout, left))
        self._asks += 1
        token = self._asks
        try:
            reply = self.refs[speaker].ask(msg, timeout=timeout)
        except ActorError as exc:  # dead, or a full mailbox: a failed attempt at once
            reply = Reply(time.monotonic(), speaker, 0.0)
            reply.set_exception(exc)
        now = time.monotonic()
        self.inflight = _InFlight(token, speaker, turn, attempt, now, reply, request_id)
        if reply.done():
            self.actor_ref.tell(_TurnReady(token))
            return
        threading.Thread(
            target=_await,
            args=(reply, self.actor_ref, token),
            name=f"llmos:{self.actor_name}:turn-{turn}.{attempt}",
            daemon=True,
        ).start()

    @handler(_TurnReady)
    def turn_ready(self, msg: _TurnReady) -> None:
        flight = self.inflight
        if self.result is not None or flight is None or flight.token != msg.token:
            return  # a late answer to a turn already given up on
        self.inflight = None
        seconds = time.monotonic() - flight.started
        try:
            answer = flight.reply.get()
            utterance = self._as_utterance(flight.speaker, answer)
        except Exception as exc:
            self._failed(flight, exc)
            return
        self.skipped_in_row = 0
        if utterance.finish_reason == "end_chat":
            text = utterance.text or "no reason given"
            self._add("note", "", f"{flight.speaker} ended the chat: {text}", flight.turn)
            self._end(f"{flight.speaker} ended the chat: {text}", "speaker")
            return
        tokens = utterance.tokens if utterance.tokens > 0 else len(utterance.text.split())
        self.turns = flight.turn
        self.tokens += tokens
        self.last_speaker = flight.speaker
        self._add("utterance", flight.speaker, utterance.text, flight.turn, tokens, seconds)
        self.cursor[flight.speaker] = len(self.entries)
        self._continue()

    def _as_utterance(self, speaker: str, answer: Any) -> Utterance:
        if isinstance(answer, str):
            answer = Utterance(speaker, answer)
        if not isinstance(answer, Utterance) or not isinstance(answer.text, str):
            raise AgentError(f"answered {type(answer).__name__}, not an Utterance or a str")
        if len(answer.text) > self.agent_max_text_chars:
            raise AgentError(
                f"answered {len(answer.text)} characters, over the chat's limit of "
                f"{self.agent_max_text_chars}"
            )
        return answer

    def _failed(self, flight: _InFlight, exc: Exception) -> None:
        what = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ActorDeadError) and not self.refs[flight.speaker].is_alive():
            self.out[flight.speaker] = what
            self._add("note", "", f"{flight.speaker} has stopped ({what}) and leaves the chat")
            self._skip(flight)
            return
        if self._check_end():  # e.g. the Timeout cut the turn short
            return
        if flight.attempt <= self.retries:
            self._add(
                "note",
                "",
                f"turn {flight.turn}: {flight.speaker} failed ({what}); retrying",
                flight.turn,
            )
            self._ask(flight.speaker, flight.turn, flight.attempt + 1)
            return
        self._add(
            "note",
            "",
            f"turn {flight.turn} skipped: {flight.speaker} failed {flight.attempt} times "
            f"(last: {what})",
            flight.turn,
        )
        self._skip(flight)

    def _skip(self, flight: _InFlight) -> None:
        self.turns = flight.turn
        self.last_speaker = flight.speaker
        self.skipped_in_row += 1
        if self.skipped_in_row >= len(self.names) * 2:
            self._end(
                f"the last {self.skipped_in_row} turns were all skipped: no participant is "
                "answering (see the notes)",
                "no_speakers",
            )
            return
        self._continue()

    def _continue(self) -> None:
        if not self._check_end():
            self.actor_ref.tell(_NextTurn())

    # -- streaming ---------------------------------------------------------------------------

    @handler(TokenChunk)
    def on_chunk(self, chunk: TokenChunk) -> None:
        flight = self.inflight
        if flight is not None and chunk.request_id == flight.request_id:
            self._print("chunk", flight.speaker, chunk.text)

    @handler(Completion)
    def on_completion(self, _msg: Completion) -> None:
        """Streamed requests end with their Completion; the Utterance carries what counts."""

    # -- ending ------------------------------------------------------------------------------

    def _state(self) -> ChatState:
        return ChatState(
            turns=self.turns,
            tokens=self.tokens,
            utterances=[e for e in self.entries if e.kind == "utterance"],
        )

    def _check_end(self) -> bool:
        hit = self.termination.fired(self._state())
        if hit is None:
            return False
        self._end(hit[1], hit[0])
        return True

    def _end(self, reason: str, stopped_by: str) -> None:
        if self.result is not None:
            return
        self.inflight = None
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
            turns=self.turns,
            tokens=self.tokens,
            seconds=elapsed,
            participants=list(self.names),
        )

    def _add(
        self,
        kind: str,
        speaker: str,
        text: str,
        turn: int = 0,
        tokens: int = 0,
        seconds: float = 0.0,
    ) -> None:
        entry = Entry(len(self.entries), kind, speaker, text, turn, time.time(), tokens, seconds)
        self.entries.append(entry)
        if self.writer is not None:
            try:
                self.writer.write(entry)
            except OSError as exc:
                log.error("%s: could not save a transcript entry: %s", self.actor_name, exc)
        self._print("entry", entry)

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
