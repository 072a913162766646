"""Termination conditions for dialogues, composable with ``|`` (either) and ``&`` (both).

Example::

    stop = MaxTurns(12) | TextMention("TERMINATE") | Repetition(window=6) | TimeLimit(120)

The dialogue calls ``start()`` when it begins and ``check(state)`` after every turn; the first
check that returns a reason ends the dialogue with that reason recorded. Every reason names the
condition that fired and says why.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from llmos.agents._errors import AgentError
from llmos.agents._replies import normalize, similarity
from llmos.agents._transcript import Entry

__all__ = [
    "AllOf",
    "AnyOf",
    "ChatState",
    "MaxTurns",
    "Repetition",
    "Termination",
    "TextMention",
    "TimeLimit",
    "TokenBudget",
    "normalize",
]


@dataclasses.dataclass(frozen=True)
class ChatState:
    """What a condition sees: the dialogue so far.

    Attributes:
        turns: turns taken (skipped turns included).
        tokens: tokens of all utterances.
        utterances: the utterances so far, oldest first.
    """

    turns: int
    tokens: int
    utterances: Sequence[Entry]


class Termination:
    """Base class of termination conditions: override ``check`` (and ``start`` if stateful)."""

    @property
    def name(self) -> str:
        """The name recorded as ``ChatResult.stopped_by`` when this condition fires."""
        return type(self).__name__

    def start(self) -> None:
        """Reset before a dialogue begins (a condition object may be reused)."""

    def check(self, state: ChatState) -> str | None:
        """A reason to stop now, or None to go on."""
        raise NotImplementedError

    def remaining(self) -> float | None:
        """Seconds until this condition fires on its own (wall clock), or None if never."""
        return None

    def fired(self, state: ChatState) -> tuple[str, str] | None:
        """``(name, reason)`` of the condition that fires now, or None."""
        reason = self.check(state)
        return (self.name, reason) if reason is not None else None

    def __or__(self, other: Termination) -> AnyOf:
        return AnyOf(self, other)

    def __and__(self, other: Termination) -> AllOf:
        return AllOf(self, other)


class AnyOf(Termination):
    """Fires as soon as any of its conditions fires (``a | b``)."""

    def __init__(self, *conditions: Termination) -> None:
        flat: list[Termination] = []
        for c in conditions:
            if not isinstance(c, Termination):
                raise AgentError(f"'|' combines termination conditions, got {c!r}")
            flat.extend(c.conditions if isinstance(c, AnyOf) else [c])
        self.conditions: list[Termination] = flat

    def start(self) -> None:
        for c in self.conditions:
            c.start()

    def fired(self, state: ChatState) -> tuple[str, str] | None:
        for c in self.conditions:
            hit = c.fired(state)
            if hit is not None:
                return hit
        return None

    def check(self, state: ChatState) -> str | None:
        hit = self.fired(state)
        return hit[1] if hit is not None else None

    def remaining(self) -> float | None:
        times = [t for c in self.conditions if (t := c.remaining()) is not None]
        return min(times) if times else None

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.conditions))


class AllOf(Termination):
    """Fires once every one of its conditions has fired, not necessarily at once (``a & b``)."""

    def __init__(self, *conditions: Termination) -> None:
        flat: list[Termination] = []
        for c in conditions:
            if not isinstance(c, Termination):
                raise AgentError(f"'&' combines termination conditions, got {c!r}")
            flat.extend(c.conditions if isinstance(c, AllOf) else [c])
        self.conditions: list[Termination] = flat
        self._reasons: dict[int, str] = {}

    def start(self) -> None:
        self._reasons = {}
        for c in self.conditions:
            c.start()

    def check(self, state: ChatState) -> str | None:
        for i, c in enumerate(self.conditions):
            if i not in self._reasons:
                reason = c.check(state)
                if reason is not None:
                    self._reasons[i] = reason
        if len(self._reasons) < len(self.conditions):
            return None
        return "all of: " + "; ".join(self._reasons[i] for i in range(len(self.conditions)))

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.conditions))


def _positive(value: float, what: str, cls: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise AgentError(f"{cls}: {what} must be a positive number, got {value!r}")


class MaxTurns(Termination):
    """Fires when ``turns`` turns have been taken.

    Args:
        turns: the number of turns (skipped turns count).
    """

    def __init__(self, turns: int) -> None:
        _positive(turns, "turns", "MaxTurns")
        self.turns = int(turns)

    def check(self, state: ChatState) -> str | None:
        if state.turns >= self.turns:
            return f"MaxTurns({self.turns}): {state.turns} turns taken"
        return None

    def __repr__(self) -> str:
        return f"MaxTurns({self.turns})"


class TextMention(Termination):
    """Fires when an utterance contains a given text.

    Args:
        text: the text to look for, e.g. "TERMINATE".
        speakers: only utterances of these participants count (default: anyone's).
        case_sensitive: match case exactly (default: ignore case).
    """

    def __init__(
        self, text: str, speakers: Sequence[str] | None = None, case_sensitive: bool = False
    ) -> None:
        if not isinstance(text, str) or not text:
            raise AgentError(f"TextMention needs a non-empty str, got {text!r}")
        self.text = text
        self.speakers = set(speakers) if speakers is not None else None
        self.case_sensitive = case_sensitive
        self._seen = 0

    def start(self) -> None:
        self._seen = 0

    def check(self, state: ChatState) -> str | None:
        needle = self.text if self.case_sensitive else self.text.lower()
        fresh = state.utterances[self._seen :]
        self._seen = len(state.utterances)
        for e in fresh:
            if self.speakers is not None and e.speaker not in self.speakers:
                continue
            hay = e.text if self.case_sensitive else e.text.lower()
            if needle in hay:
                return f"TextMention({self.text!r}): {e.speaker} said it in turn {e.turn}"
        return None

    def __repr__(self) -> str:
        return f"TextMention({self.text!r})"


class TokenBudget(Termination):
    """Fires when the utterances together reach ``tokens`` tokens.

    Args:
        tokens: the budget.
    """

    def __init__(self, tokens: int) -> None:
        _positive(tokens, "tokens", "TokenBudget")
        self.tokens = int(tokens)

    def check(self, state: ChatState) -> str | None:
        if state.tokens >= self.tokens:
            return f"TokenBudget({self.tokens}): {state.tokens} tokens used"
        return None

    def __repr__(self) -> str:
        return f"TokenBudget({self.tokens})"


class TimeLimit(Termination):
    """Fires when ``seconds`` of wall-clock time have passed since the dialogue started.

    The dialogue also bounds each speaker's ask by the time left, so a slow speaker cannot hold
    the dialogue past its timeout.

    Args:
        seconds: the time allowed.
        clock: the clock to read (default ``time.monotonic``; inject a fake one in tests).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        _positive(seconds, "seconds", "TimeLimit")
        self.seconds = float(seconds)
        self.clock = clock
        self._started: float | None = None

    def start(self) -> None:
        self._started = self.clock()

    def _elapsed(self) -> float:
        if self._started is None:
            self._started = self.clock()
        return self.clock() - self._started

    def check(self, state: ChatState) -> str | None:
        elapsed = self._elapsed()
        if elapsed >= self.seconds:
            return f"TimeLimit({self.seconds:g} s): {elapsed:.1f} s elapsed"
        return None

    def remaining(self) -> float | None:
        return max(0.0, self.seconds - self._elapsed())

    def __repr__(self) -> str:
        return f"TimeLimit({self.seconds:g})"


class Repetition(Termination):
    """Fires on a livelock: recent utterances repeating earlier ones, exactly or nearly.

    Among the last ``window`` utterances, an utterance *repeats* when it is at least
    ``similarity`` alike (see :func:`~llmos.agents.similarity`: the ``difflib`` ratio of the
    texts after :func:`normalize`) to an earlier one in the window; two empty utterances are
    alike. The condition fires when ``repeats`` utterances repeat: e.g. two agents trading the
    same two lines ("I agree (0)." / "I agree (1)!"), or one agent saying nearly the same thing
    again and again. A chat's default termination includes ``Repetition()``.

    Args:
        window: how many of the latest utterances to look at.
        repeats: how many repeating utterances end the dialogue.
        similarity: how alike two utterances must be to count as a repeat, in (0, 1]:
            1.0 for equal normalized texts only; the default 0.8 also catches near-repeats.
    """

    def __init__(self, window: int = 6, repeats: int = 2, similarity: float = 0.8) -> None:
        _positive(window, "window", "Repetition")
        _positive(repeats, "repeats", "Repetition")
        if isinstance(similarity, bool) or not isinstance(similarity, int | float):
            raise AgentError(f"Repetition: similarity must be a number, got {similarity!r}")
        if not 0 < similarity <= 1:
            raise AgentError(f"Repetition: similarity must be in (0, 1], got {similarity!r}")
        if repeats >= window:
            raise AgentError(
                f"Repetition: repeats ({repeats}) must be below window ({window}); a window "
                "of n utterances holds at most n - 1 repeats"
            )
        self.window = int(window)
        self.repeats = int(repeats)
        self.similarity = float(similarity)

    def _same(self, a: str, b: str) -> bool:
        if self.similarity >= 1.0:
            return normalize(a) == normalize(b)
        return similarity(a, b) >= self.similarity

    def check(self, state: ChatState) -> str | None:
        recent = list(state.utterances[-self.window :])
        repeating: list[Entry] = []
        for i in range(1, len(recent)):
            if any(self._same(recent[i].text, recent[j].text) for j in range(i)):
                repeating.append(recent[i])
        if len(repeating) >= self.repeats:
            last = repeating[-1]
            return (
                f"Repetition: {len(repeating)} of the last {len(recent)} utterances repeat "
                f"earlier ones (e.g. {last.speaker} in turn {last.turn}: {last.text!r:.80})"
            )
        return None

    def __repr__(self) -> str:
        return (
            f"Repetition(window={self.window}, repeats={self.repeats}, "
            f"similarity={self.similarity:g})"
        )
