"""How a chat takes turns: ask one participant, wait for the answer through a done callback,
retry once, or skip with a note.

:class:`TurnTaking` is the part of a :class:`~llmos.agents.GroupChat` that runs turns. The chat
builds it with what it uses (the participants, the termination, the transcript to read, a
function that adds an entry, the recording) and calls it from its handlers; it knows nothing of
the chat. A step that ends the chat does not end it: it returns an :class:`Ending` and the chat
ends itself.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from llmos.actors import ActorDeadError, ActorError, ActorRef, Reply, message, tracing
from llmos.agents._agent_messages import AgentInfo, Describe, Turn, Utterance
from llmos.agents._effects import EffectInDoubt
from llmos.agents._errors import AgentError
from llmos.agents._runlog import Recording
from llmos.agents._selection import SelectionContext, Selector, round_robin
from llmos.agents._termination import ChatState, Termination
from llmos.agents._transcript import Entry
from llmos.kernel import TimerHandle, TokenLedger, default_timer

__all__ = ["AddEntry", "Ending", "TurnTaking"]


@message("llmos.agents._NextTurn", local_only=True)
class _NextTurn:
    pass


@message("llmos.agents._TurnReady", local_only=True)
class _TurnReady:
    token: int


@message("llmos.agents._Described", local_only=True)
class _Described:
    """Every participant's description is in (or its ask timed out): take the first turn."""


@dataclasses.dataclass(frozen=True)
class Ending:
    """Why the chat ends now: its ``reason`` and what stopped it (``stopped_by``)."""

    reason: str
    stopped_by: str


class AddEntry(Protocol):
    """Adds an entry to the chat's transcript (and shows, saves and records it)."""

    def __call__(
        self,
        kind: str,
        speaker: str,
        text: str,
        turn: int = 0,
        tokens: int = 0,
        seconds: float = 0.0,
        trace_id: str = "",
    ) -> None: ...


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


def _wake(chat: ActorRef, msg: _TurnReady | _Described) -> None:
    """Tell the chat an answer it waits for is in (run in whichever thread settled it)."""
    try:
        chat.tell(msg)
    except ActorError:
        pass  # the chat is gone; nobody wants the answer


def _cancels(deadline: TimerHandle) -> Callable[[Reply[Any]], None]:
    """A done callback that cancels an ask's deadline timer once the ask settles."""
    return lambda _reply: deadline.cancel()


class TurnTaking:
    """The turn protocol of one chat, and what it keeps: who speaks, what each has seen.

    Args:
        chat: the chat actor's ref (told ``_NextTurn`` and ``_TurnReady``; its name is the
            dialogue's in every Turn).
        refs: the participants by name, in speaking order.
        task, selector, termination, speaker_timeout, max_tokens, retries: as for GroupChat
            (the termination is started by :meth:`start`).
        stream_to: where speakers stream tokens (None: no streaming).
        max_text_chars: the longest utterance accepted.
        entries: the chat's transcript so far (read, never written here); ``add`` adds to it.
        recording: the run's recording, or None.
    """

    def __init__(
        self,
        chat: ActorRef,
        refs: Mapping[str, ActorRef],
        task: str,
        *,
        selector: Selector,
        termination: Termination,
        speaker_timeout: float,
        max_tokens: int,
        stream_to: ActorRef | None,
        retries: int,
        max_text_chars: int,
        entries: Sequence[Entry],
        add: AddEntry,
        recording: Recording | None,
    ) -> None:
        self.chat = chat
        self.name = chat.name
        self.refs = dict(refs)
        self.names = tuple(refs)
        self.task = task
        self.selector = selector
        self.termination = termination
        self.speaker_timeout = speaker_timeout
        self.max_tokens = max_tokens
        self.stream_to = stream_to
        self.retries = retries
        self.max_text_chars = max_text_chars
        self.entries = entries
        self.add = add
        self.recording = recording
        self.descriptions: dict[str, str] = {}
        self.describing: dict[str, Reply[Any]] = {}  # Describe asks not read yet
        self.timeouts: dict[str, float] = {}
        self.cursor = dict.fromkeys(self.names, 0)  # next transcript index each one has not seen
        self.turns = 0
        self.tokens = 0
        self.ledger = TokenLedger()  # the model tokens this chat's turns spent
        self.last_speaker: str | None = None
        self.out: dict[str, str] = {}  # participants that left, and why
        self.skipped_in_row = 0
        self.inflight: _InFlight | None = None
        self.timer_hold: TimerHandle | None = None
        self.asks = 0
        self.cause = "start"  # the key of the last recorded answer: what the next Turn follows

    # -- start and end -----------------------------------------------------------------------

    def describe_participants(self) -> None:
        """Ask each participant for its description (for the selector) and turn timeout.

        All at once, and without waiting (the chat's thread may be one of a dispatcher's few):
        the chat is told ``_Described`` once every answer is in or its ask timed out, then
        reads them with :meth:`take_descriptions`.
        """
        timeout = min(5.0, self.speaker_timeout)
        asked: dict[str, Reply[Any]] = {}
        for name, ref in self.refs.items():
            try:
                asked[name] = ref.ask(Describe(), timeout=timeout)
            except Exception:  # a plain actor, or one gone already: no description
                pass
        self.describing = asked
        chat = self.chat
        lock = threading.Lock()
        left = [len(asked)]

        def settled(_reply: Reply[Any]) -> None:
            with lock:  # callbacks run in the threads that settle the asks
                left[0] -= 1
                last = left[0] == 0
            if last:
                _wake(chat, _Described())

        if not asked:
            _wake(chat, _Described())
            return
        timer = default_timer()
        for reply in asked.values():
            if not reply.done():  # nobody blocks on it: the timer expires it at its deadline
                reply.add_done_callback(_cancels(timer.call_later(timeout, reply.expire)))
            reply.add_done_callback(settled)

    def take_descriptions(self) -> None:
        """Read the answers :meth:`describe_participants` waited for (all settled by now)."""
        asked, self.describing = self.describing, {}
        for name, reply in asked.items():
            try:
                info = reply.get()
            except Exception:  # a plain actor, or one that is slow to start: no description
                info = None
            if isinstance(info, AgentInfo):
                self.descriptions[name] = info.description
                if info.turn_timeout > 0:
                    self.timeouts[name] = info.turn_timeout

    def start(self) -> None:
        """Start the termination's clock and take the first turn."""
        self.termination.start()
        self.chat.tell(_NextTurn())

    def abandon(self) -> None:
        """The chat ended: settle the turn in flight (a late answer drops), free the timer."""
        flight, self.inflight = self.inflight, None
        if flight is not None:  # settling it stops its deadline timer
            flight.reply.set_exception(
                AgentError(f"the chat ended before {flight.speaker} answered")
            )
        hold, self.timer_hold = self.timer_hold, None
        if hold is not None:  # the timer's thread ends once no other deadline is pending
            hold.cancel()

    def streaming(self, request_id: str) -> str | None:
        """The speaker whose streamed tokens carry ``request_id``, if its turn is in flight."""
        flight = self.inflight
        return flight.speaker if flight is not None and request_id == flight.request_id else None

    def check_end(self) -> Ending | None:
        """The termination's verdict on the chat so far (None: go on)."""
        utterances = [e for e in self.entries if e.kind == "utterance"]
        hit = self.termination.fired(ChatState(self.turns, self.tokens, utterances))
        return Ending(hit[1], hit[0]) if hit is not None else None

    # -- turns -------------------------------------------------------------------------------

    def next_turn(self) -> Ending | None:
        """Pick the next speaker and ask it, unless a turn is in flight or the chat ends."""
        if self.inflight is not None:
            return None
        ending = self.check_end()
        if ending is not None:
            return ending
        candidates = tuple(n for n in self.names if n not in self.out)
        if not candidates:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.out.items())
            return Ending(f"no participant can speak any more ({reasons})", "no_speakers")
        turn = self.turns + 1
        rec = self.recording
        logged = rec.selected(turn, candidates) if rec is not None else None
        if logged is not None:  # resumed or replayed: the selector's recorded pick
            speaker = logged
        else:
            speaker = self._select(candidates)
            if rec is not None and self.selector is not round_robin:  # (that one replays itself)
                rec.select(self.name, turn, self.cause, speaker)
        self._ask(speaker, turn, attempt=1)
        return None

    def _select(self, candidates: tuple[str, ...]) -> str:
        ctx = SelectionContext(
            turn=self.turns + 1,
            participants=self.names,
            candidates=candidates,
            descriptions=dict(self.descriptions),
            transcript=tuple(e for e in self.entries if e.kind == "utterance"),
            last_speaker=self.last_speaker,
            task=self.task,
            dialogue=self.name,
            spent=lambda model, read: self.ledger.charge("selector", self.name, model, read, 0),
        )
        try:
            name = self.selector(ctx)
            if name in candidates:
                return name
            problem = f"picked {name!r}, who is not among {list(candidates)}"
        except Exception as exc:
            problem = f"failed ({type(exc).__name__}: {exc})"
        fallback = round_robin(ctx)
        self.add("note", "", f"the selector {problem}; round robin picks {fallback}", ctx.turn)
        return fallback

    def _ask(self, speaker: str, turn: int, attempt: int) -> None:
        start = self.cursor[speaker]
        new = [
            {"index": e.index, "speaker": e.speaker, "text": e.text}
            for e in self.entries[start:]
            if e.kind == "utterance"
        ]
        request_id = f"{self.name}:{turn}:{attempt}"
        msg = Turn(
            dialogue=self.name,
            turn=turn,
            new=new,
            task=self.task,
            participants=self.names,
            max_tokens=self.max_tokens,
            stream_to=self.stream_to,
            request_id=request_id,
        )
        if self.recording is not None:
            self.recording.message(f"turn/{turn}/{attempt}", self.cause, self.name, speaker, msg)
        timeout = self.timeouts.get(speaker, self.speaker_timeout)
        left = self.termination.remaining()
        if left is not None:
            timeout = max(0.01, min(timeout, left))
        self.asks += 1
        token = self.asks
        # With tracing on, each attempt at a turn is one trace, rooted here; its id goes into
        # the transcript entry.
        span = tracing.start_span(
            f"turn {turn} {speaker}",
            {"gen_ai.conversation.id": self.name, "gen_ai.agent.name": speaker},
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
        chat = self.chat
        if not reply.done():
            # Nobody blocks on the reply, so nothing else expires it if the speaker hangs: the
            # shared timer does, at the ask's deadline (cancelled once the reply settles).
            timer = default_timer()
            if self.timer_hold is None:
                # Held until the chat ends, so the timer's thread serves every turn instead of
                # ending between two of them and starting again.
                self.timer_hold = timer.call_later(_HOLD, _nothing)
            deadline = timer.call_later(timeout, reply.expire)
            reply.add_done_callback(lambda _reply: deadline.cancel())
        reply.add_done_callback(lambda _reply: _wake(chat, _TurnReady(token)))

    def answered(self, token: int) -> Ending | None:
        """Take the answer to ask ``token`` (a stale token is ignored): add the utterance and
        go on, or retry, skip or end."""
        flight = self.inflight
        if flight is None or flight.token != token:
            return None  # a late answer to a turn already given up on
        self.inflight = None
        seconds = time.monotonic() - flight.started
        try:
            answer = flight.reply.get()
            utterance = self._as_utterance(flight.speaker, answer)
        except Exception as exc:
            return self._failed(flight, exc)
        self.skipped_in_row = 0
        if self.recording is not None:
            key = f"reply/{flight.turn}/{flight.attempt}"
            cause = f"turn/{flight.turn}/{flight.attempt}"
            self.recording.message(key, cause, flight.speaker, self.name, utterance)
            self.cause = key
        if utterance.finish_reason == "end_chat":
            text = utterance.text or "no reason given"
            self.add("note", "", f"{flight.speaker} ended the chat: {text}", flight.turn)
            return Ending(f"{flight.speaker} ended the chat: {text}", "speaker")
        tokens = utterance.tokens if utterance.tokens > 0 else len(utterance.text.split())
        self.turns = flight.turn
        self.tokens += tokens
        if utterance.model and isinstance(utterance.model, str):
            self.ledger.charge(
                flight.speaker,
                self.name,
                utterance.model,
                max(int(utterance.input_tokens), 0),
                max(int(utterance.output_tokens or utterance.tokens), 0),
            )
        self.last_speaker = flight.speaker
        self.add(
            "utterance",
            flight.speaker,
            utterance.text,
            flight.turn,
            tokens,
            seconds,
            flight.trace_id,
        )
        self.cursor[flight.speaker] = len(self.entries)
        return self._continue()

    def _as_utterance(self, speaker: str, answer: Any) -> Utterance:
        if isinstance(answer, str):
            answer = Utterance(speaker, answer)
        if not isinstance(answer, Utterance) or not isinstance(answer.text, str):
            raise AgentError(f"answered {type(answer).__name__}, not an Utterance or a str")
        if len(answer.text) > self.max_text_chars:
            raise AgentError(
                f"answered {len(answer.text)} characters, over the chat's limit of "
                f"{self.max_text_chars}"
            )
        return answer

    def _failed(self, flight: _InFlight, exc: Exception) -> Ending | None:
        what = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, EffectInDoubt) or isinstance(exc.__cause__, EffectInDoubt):
            # The documented rule: an effect cut off mid-way stops the run for a decision.
            self.add("note", "", f"turn {flight.turn}: {flight.speaker}: {exc}", flight.turn)
            return Ending(f"an effect is in doubt, the run stops for a decision: {exc}", "effect")
        if isinstance(exc, ActorDeadError) and not self.refs[flight.speaker].is_alive():
            self.out[flight.speaker] = what
            self.add("note", "", f"{flight.speaker} has stopped ({what}) and leaves the chat")
            return self._skip(flight)
        ending = self.check_end()  # e.g. the TimeLimit cut the turn short
        if ending is not None:
            return ending
        if flight.attempt <= self.retries:
            note = f"turn {flight.turn}: {flight.speaker} failed ({what}); retrying"
            self.add("note", "", note, flight.turn)
            self._ask(flight.speaker, flight.turn, flight.attempt + 1)
            return None
        self.add(
            "note",
            "",
            f"turn {flight.turn} skipped: {flight.speaker} failed {flight.attempt} times "
            f"(last: {what})",
            flight.turn,
        )
        return self._skip(flight)

    def _skip(self, flight: _InFlight) -> Ending | None:
        self.turns = flight.turn
        self.last_speaker = flight.speaker
        self.skipped_in_row += 1
        if self.skipped_in_row >= len(self.names) * 2:
            return Ending(
                f"the last {self.skipped_in_row} turns were all skipped: no participant is "
                "answering (see the notes)",
                "no_speakers",
            )
        return self._continue()

    def _continue(self) -> Ending | None:
        ending = self.check_end()
        if ending is None:
            self.chat.tell(_NextTurn())
        return ending
