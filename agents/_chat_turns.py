"""How a chat takes turns: ask one participant, wait for the answer through a done callback,
retry once, or skip with a note.

:class:`TurnTaking` is the part of :class:`~llmos.agents.GroupChat` that runs turns; it keeps no
state of its own (the chat holds it) and ends the chat through the chat's ``_end``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from llmos.actors import ActorDeadError, ActorError, ActorRef, Reply, handler, message, tracing
from llmos.agents._agent_messages import Turn, Utterance
from llmos.agents._effects import EffectInDoubt
from llmos.agents._errors import AgentError
from llmos.agents._runlog import Recording
from llmos.agents._selection import SelectionContext, Selector, round_robin
from llmos.agents._termination import Termination
from llmos.agents._transcript import Entry
from llmos.kernel import TimerHandle, TokenLedger, default_timer
from llmos.models import Completion, TokenChunk

__all__ = ["TurnTaking"]


@message("llmos.agents._NextTurn", local_only=True)
class _NextTurn:
    pass


@message("llmos.agents._TurnReady", local_only=True)
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
    trace_id: str = ""


_HOLD = 365 * 24 * 3600.0  # a timer entry that never runs, cancelled when the chat ends


def _nothing() -> None:
    pass


def _wake(chat: ActorRef, token: int) -> None:
    """Tell the chat its turn's answer is in (run in whichever thread settled the reply)."""
    try:
        chat.tell(_TurnReady(token))
    except ActorError:
        pass  # the chat is gone; nobody wants the answer


class TurnTaking:
    """The turn protocol of a chat (a mixin of GroupChat: it uses the chat's fields)."""

    # The chat's state this part reads and writes (set in GroupChat.__init__).
    refs: dict[str, ActorRef]
    names: tuple[str, ...]
    task: str
    selector: Selector
    termination: Termination
    speaker_timeout: float
    max_tokens: int
    stream_tokens: bool
    retries: int
    descriptions: dict[str, str]
    timeouts: dict[str, float]
    entries: list[Entry]
    cursor: dict[str, int]
    turns: int
    tokens: int
    ledger: TokenLedger
    last_speaker: str | None
    out: dict[str, str]
    skipped_in_row: int
    inflight: _InFlight | None
    _turn_timer_hold: TimerHandle | None
    result: Any
    recording: Recording | None
    cause: str
    agent_max_text_chars: int
    _asks: int
    actor_ref: Any
    actor_name: str
    _add: Callable[..., None]
    _end: Callable[[str, str], None]
    _check_end: Callable[[], bool]
    _print: Callable[..., None]

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
        turn = self.turns + 1
        rec = self.recording
        logged = rec.selected(turn, candidates) if rec is not None else None
        if logged is not None:  # resumed or replayed: the selector's recorded pick
            speaker = logged
        else:
            speaker = self._select(candidates)
            if rec is not None and self.selector is not round_robin:  # (that one replays itself)
                rec.select(self.actor_name, turn, self.cause, speaker)
        self._ask(speaker, turn, attempt=1)

    def _select(self, candidates: tuple[str, ...]) -> str:
        ctx = SelectionContext(
            turn=self.turns + 1,
            participants=self.names,
            candidates=candidates,
            descriptions=dict(self.descriptions),
            transcript=tuple(e for e in self.entries if e.kind == "utterance"),
            last_speaker=self.last_speaker,
            task=self.task,
            dialogue=self.actor_name,
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
        if self.recording is not None:
            self.recording.message(
                f"turn/{turn}/{attempt}", self.cause, self.actor_name, speaker, msg
            )
        timeout = self.timeouts.get(speaker, self.speaker_timeout)
        left = self.termination.remaining()
        if left is not None:
            timeout = max(0.01, min(timeout, left))
        self._asks += 1
        token = self._asks
        # With tracing on, each attempt at a turn is one trace, rooted here; its id goes into
        # the transcript entry.
        span = tracing.start_span(
            f"turn {turn} {speaker}",
            {"gen_ai.conversation.id": self.actor_name, "gen_ai.agent.name": speaker},
        )
        try:
            with tracing.use_span(span):
                reply = self.refs[speaker].ask(msg, timeout=timeout)
        except ActorError as exc:  # dead, or a full mailbox: a failed attempt at once
            reply = Reply(time.monotonic(), speaker, 0.0)
            reply.set_exception(exc)
        if span is not None:
            reply.add_done_callback(lambda done: tracing.end_span(span, done.exception()))
        now = time.monotonic()
        self.inflight = _InFlight(
            token, speaker, turn, attempt, now, reply, request_id, tracing.trace_id(span)
        )
        chat = self.actor_ref
        if not reply.done():
            # Nobody blocks on the reply, so nothing else expires it if the speaker hangs: the
            # shared timer does, at the ask's deadline (cancelled once the reply settles).
            timer = default_timer()
            if self._turn_timer_hold is None:
                # Held until the chat ends, so the timer's thread serves every turn instead of
                # ending between two of them and starting again.
                self._turn_timer_hold = timer.call_later(_HOLD, _nothing)
            deadline = timer.call_later(timeout, reply.expire)
            reply.add_done_callback(lambda _reply: deadline.cancel())
        reply.add_done_callback(lambda _reply: _wake(chat, token))

    def _release_turn_timer(self) -> None:
        """The chat ended: let the timer's thread end once no other deadline is pending."""
        hold, self._turn_timer_hold = self._turn_timer_hold, None
        if hold is not None:
            hold.cancel()

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
        if self.recording is not None:
            key = f"reply/{flight.turn}/{flight.attempt}"
            cause = f"turn/{flight.turn}/{flight.attempt}"
            self.recording.message(key, cause, flight.speaker, self.actor_name, utterance)
            self.cause = key
        if utterance.finish_reason == "end_chat":
            text = utterance.text or "no reason given"
            self._add("note", "", f"{flight.speaker} ended the chat: {text}", flight.turn)
            self._end(f"{flight.speaker} ended the chat: {text}", "speaker")
            return
        tokens = utterance.tokens if utterance.tokens > 0 else len(utterance.text.split())
        self.turns = flight.turn
        self.tokens += tokens
        if utterance.model and isinstance(utterance.model, str):
            self.ledger.charge(
                flight.speaker,
                self.actor_name,
                utterance.model,
                max(int(utterance.input_tokens), 0),
                max(int(utterance.output_tokens or utterance.tokens), 0),
            )
        self.last_speaker = flight.speaker
        self._add(
            "utterance",
            flight.speaker,
            utterance.text,
            flight.turn,
            tokens,
            seconds,
            flight.trace_id,
        )
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
        if isinstance(exc, EffectInDoubt) or isinstance(exc.__cause__, EffectInDoubt):
            # The documented rule: an effect cut off mid-way stops the run for a decision.
            self._add("note", "", f"turn {flight.turn}: {flight.speaker}: {exc}", flight.turn)
            self._end(f"an effect is in doubt, the run stops for a decision: {exc}", "effect")
            return
        if isinstance(exc, ActorDeadError) and not self.refs[flight.speaker].is_alive():
            self.out[flight.speaker] = what
            self._add("note", "", f"{flight.speaker} has stopped ({what}) and leaves the chat")
            self._skip(flight)
            return
        if self._check_end():  # e.g. the TimeLimit cut the turn short
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
