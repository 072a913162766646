"""Termination conditions: each alone, composed, and each stopping a chat with its reason."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from test_agent_support import Scripted

from llmos.actors import handler
from llmos.agents import AgentError
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Turn, Utterance
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._termination import (
    AllOf,
    AnyOf,
    ChatState,
    MaxTurns,
    Repetition,
    Termination,
    TextMention,
    TimeLimit,
    TokenBudget,
)
from llmos.agents._transcript import Entry


def said(*texts: str) -> ChatState:
    entries = [
        Entry(i, "utterance", "ab"[i % 2], text, i + 1, 0.0, len(text.split()))
        for i, text in enumerate(texts)
    ]
    return ChatState(len(entries), sum(e.tokens for e in entries), entries)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the conditions on their own ----------------------------------------------------------------


def test_max_turns() -> None:
    stop = MaxTurns(3)
    assert stop.check(said("a", "b")) is None
    assert stop.check(said("a", "b", "c")) == "MaxTurns(3): 3 turns taken"


def test_text_mention_any_case_and_only_new_utterances() -> None:
    stop = TextMention("terminate")
    stop.start()
    assert stop.check(said("hello")) is None
    assert stop.check(said("hello", "OK, TERMINATE now")) == (
        "TextMention('terminate'): b said it in turn 2"
    )
    only_a = TextMention("bye", speakers=["a"])
    assert only_a.check(said("hi", "bye")) is None
    strict = TextMention("Bye", case_sensitive=True)
    assert strict.check(said("bye")) is None


def test_token_budget() -> None:
    stop = TokenBudget(5)
    assert stop.check(said("one two", "three four")) is None
    assert stop.check(said("one two", "three four five")) == "TokenBudget(5): 5 tokens used"


def test_timeout_reads_its_clock() -> None:
    clock = FakeClock()
    stop = TimeLimit(10, clock=clock)
    stop.start()
    clock.now += 9.5
    assert stop.check(said()) is None
    assert stop.remaining() == pytest.approx(0.5)
    clock.now += 1
    assert stop.check(said()) == "TimeLimit(10 s): 10.5 s elapsed"
    assert stop.remaining() == 0.0


def test_repetition_catches_a_two_line_livelock() -> None:
    stop = Repetition(window=4, repeats=2)
    assert stop.check(said("yes", "no", "maybe", "yes")) is None  # one repeat only
    reason = stop.check(said("yes", "no", "Yes!", "no"))
    assert reason is not None and reason.startswith("Repetition: 2 of the last 4 utterances")


def test_repetition_with_a_similarity_threshold() -> None:
    near = said("the answer is 42", "hmm", "the answer is 42!", "hmm", "the answer is 43")
    assert Repetition(window=4, repeats=2, similarity=1.0).check(near) is None  # 42 vs 43
    assert Repetition(window=4, repeats=2, similarity=0.9).check(near) is not None


def test_repetition_catches_near_repeats_by_default() -> None:
    stop = Repetition()
    assert stop.similarity == 0.8
    counted = said(*(f"I agree ({i})." if i % 2 else f"I agree ({i})!" for i in range(6)))
    reason = stop.check(counted)
    assert reason is not None and "repeat earlier ones" in reason
    assert stop.check(said("", "", "")) is not None  # saying nothing, again and again
    varied = said(
        "Cars make the centre loud and dangerous.",
        "Shops need deliveries early in the morning.",
        "Buses could take the lanes that cars leave.",
        "Who pays for the new bus lines, though?",
    )
    assert stop.check(varied) is None


def test_repetition_refuses_impossible_settings() -> None:
    with pytest.raises(AgentError, match="must be below window"):
        Repetition(window=2, repeats=2)
    with pytest.raises(AgentError, match="similarity"):
        Repetition(similarity=0)


def test_or_fires_on_the_first_and_names_it() -> None:
    stop = MaxTurns(5) | TextMention("done") | TokenBudget(100)
    assert isinstance(stop, AnyOf) and len(stop.conditions) == 3
    stop.start()
    assert stop.fired(said("we are done")) == (
        "TextMention",
        "TextMention('done'): a said it in turn 1",
    )
    assert stop.fired(said(*["x"] * 5))[0] == "MaxTurns"  # type: ignore[index]


def test_and_fires_once_all_have_fired() -> None:
    stop = MaxTurns(2) & TextMention("done")
    assert isinstance(stop, AllOf)
    stop.start()
    assert stop.check(said("we are done")) is None  # mention seen, turns not yet
    reason = stop.check(said("we are done", "ok"))
    assert reason == (
        "all of: MaxTurns(2): 2 turns taken; TextMention('done'): a said it in turn 1"
    )
    stop.start()  # a reused condition starts afresh
    assert stop.check(said("x", "y")) is None


def test_composition_needs_conditions() -> None:
    with pytest.raises(AgentError):
        MaxTurns(1) | 3  # type: ignore[operator]
    with pytest.raises(AgentError):
        MaxTurns(0)


# -- each condition stops a real chat -----------------------------------------------------------


class Ticker(Agent):
    """Says five words a turn; advances a fake clock by 4 s per turn; says 'DONE' in turn 5."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    @handler(Turn)
    def on_turn(self, turn: Turn) -> Utterance:
        self.clock.now += 4
        word = "DONE" if turn.turn == 5 else f"t{turn.turn}"
        return Utterance(self.agent_name, f"{word} two three four five")


def chat_until(make: Callable[[FakeClock], Termination]) -> tuple[str, str, int]:
    clock = FakeClock()
    a = Ticker.start(clock, name="a")
    b = Ticker.start(clock, name="b")
    result = run_chat(
        [a, b], "count", chat_class=Dialogue, termination=make(clock), printer=None, timeout=10
    )
    assert result.turns == len(result.utterances)
    return result.stopped_by, result.reason, result.turns


@pytest.mark.parametrize(
    ("make", "stopped_by", "turns", "reason"),
    [
        (lambda c: MaxTurns(3), "MaxTurns", 3, "MaxTurns(3): 3 turns taken"),
        (lambda c: TextMention("done"), "TextMention", 5, "TextMention('done'): a said it"),
        (lambda c: TokenBudget(12), "TokenBudget", 3, "TokenBudget(12): 15 tokens used"),
        (lambda c: TimeLimit(10, clock=c), "TimeLimit", 3, "TimeLimit(10 s): 12.0 s elapsed"),
        (lambda c: MaxTurns(4) | TokenBudget(100), "MaxTurns", 4, "MaxTurns(4)"),
        (lambda c: MaxTurns(2) & TextMention("DONE"), "AllOf", 5, "all of: MaxTurns(2)"),
    ],
)
def test_each_condition_stops_a_chat_with_its_reason(
    make: Callable[[FakeClock], Termination], stopped_by: str, turns: int, reason: str
) -> None:
    got = chat_until(make)
    assert got[0] == stopped_by and got[2] == turns
    assert got[1].startswith(reason)


def test_repetition_stops_a_looping_chat() -> None:
    a = Scripted.start(["Shall we start?", "After you.", "After you."], name="a")
    b = Scripted.start(["No, after you."], name="b")
    result = run_chat(
        [a, b],
        "who goes first",
        chat_class=Dialogue,
        termination=Repetition(window=4, repeats=2) | MaxTurns(40),
        printer=None,
        timeout=10,
    )
    assert result.stopped_by == "Repetition"
    # a: start, b: "No, after you.", a: "After you." (0.86 alike: repeat 1), b: repeat 2
    assert result.turns == 4
    assert "repeat earlier ones" in result.reason


def test_wall_clock_timeout_cuts_a_slow_speaker_short() -> None:
    import threading

    from test_agent_support import Blocking

    release, entered = threading.Event(), threading.Event()
    a = Scripted.start(["hello"], name="a")
    slow = Blocking.start(release, entered, name="slow")
    started = time.monotonic()
    try:
        result = run_chat(
            [a, slow], chat_class=Dialogue, termination=TimeLimit(0.5), printer=None, timeout=10
        )
    finally:
        release.set()
    assert result.stopped_by == "TimeLimit" and result.reason.startswith("TimeLimit(0.5 s)")
    assert time.monotonic() - started < 5  # not the 60 s speaker timeout
    assert result.speakers == ["a"]
