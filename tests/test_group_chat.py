"""Group chats: speaker order, failing speakers, transcripts, streaming, stopping, run_chat."""

from __future__ import annotations

import io
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from test_agent_support import Blocking, Flaky, Scripted, start_supervised

from llmos.actors import ActorRef, handler
from llmos.agents import AgentError, ChatTimeout
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Turn
from llmos.agents._chat_agent import ChatAgent
from llmos.agents._chat_agent_messages import GetMemory
from llmos.agents._chat_control import GetResult, GetStatus, StartChat, StopChat
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._group_chat import GroupChat
from llmos.agents._human import HumanAgent
from llmos.agents._selection import ModelSelector, SelectionContext
from llmos.agents._termination import MaxTurns, TextMention
from llmos.agents._transcript import ChatResult, ConsolePrinter, read_jsonl
from llmos.kernel import Supervisor, kernel
from llmos.models._fake import FakeModel

T = 10.0


def trio() -> list[ActorRef]:
    return [Scripted.start([f"{n} here"], name=n) for n in ("ann", "bob", "cy")]


# -- speaker order ------------------------------------------------------------------------------


def test_round_robin_order() -> None:
    result = run_chat(trio(), "t", termination=MaxTurns(7), printer=None, timeout=T)
    assert result.speakers == ["ann", "bob", "cy", "ann", "bob", "cy", "ann"]
    assert result.stopped_by == "MaxTurns" and result.ended_normally


def test_model_selector_order_follows_the_model() -> None:
    picks = ["cy", "Bob.", "I think ann should", "cy", "bob"]
    model = FakeModel.start(picks, name="selector-model")
    result = run_chat(
        trio(), "t", selector=ModelSelector(model), termination=MaxTurns(5), printer=None
    )
    assert result.speakers == ["cy", "bob", "ann", "cy", "bob"]
    assert not [n for n in result.notes if "selector" in n.text]


def test_model_selector_sees_descriptions_and_the_chat() -> None:
    prompts: list[str] = []

    def pick(messages: list[dict[str, Any]]) -> str:
        prompts.append(messages[-1]["content"])
        return "bob"

    model = FakeModel.start(pick, name="m")
    result = run_chat(trio(), "plan a trip", selector=model, termination=MaxTurns(2), printer=None)
    assert result.speakers[0] == "bob"
    assert "plan a trip" in prompts[0] and "- Ann: says scripted lines" in prompts[0]
    assert "Bob: bob here" in prompts[1]
    assert "one name: Ann or Cy." in prompts[1]  # the last speaker is left out


def test_function_selector_and_a_bad_pick_falls_back_to_round_robin() -> None:
    def pick(ctx: SelectionContext) -> str:
        return "nobody" if ctx.turn == 2 else "cy"

    result = run_chat(trio(), selector=pick, termination=MaxTurns(3), printer=None)
    assert result.speakers == ["cy", "ann", "cy"]
    assert "the selector picked 'nobody'" in result.notes[0].text
    assert "round robin picks ann" in result.notes[0].text


def test_a_selector_that_raises_does_not_stop_the_chat() -> None:
    def broken(ctx: SelectionContext) -> str:
        raise KeyError("oops")

    result = run_chat(trio(), selector=broken, termination=MaxTurns(2), printer=None)
    assert result.speakers == ["ann", "bob"]
    assert "selector failed (KeyError" in result.notes[0].text


def test_model_selector_always_picks_an_allowed_speaker() -> None:
    # The fake scores names by where its scripted reply mentions them; these replies name
    # nobody, the last speaker, or someone outside the chat: the pick is valid every time.
    replies = ["pancakes", "", "ann ann ann", "zed should", "cy", "Nobody.", "bob"]
    picker = CountingScores(ModelSelector(FakeModel.start(replies, name="picker")))
    result = run_chat(trio(), "t", selector=picker, termination=MaxTurns(7), printer=None)
    assert picker.calls == 7 and picker.invalid == 0
    assert not [n for n in result.notes if "selector" in n.text]
    speakers = result.speakers
    assert all(a != b for a, b in itertools.pairwise(speakers))  # no repeats


def test_model_selector_gives_every_agent_the_word_within_max_wait_turns() -> None:
    # A model that always prefers ann (as a model prefers names already in the chat) would
    # leave cy out for good: ann, bob, ann, bob, ...
    favours_ann = FakeModel.start(lambda _messages: "ann", name="favours-ann")
    result = run_chat(
        trio(), "t", selector=ModelSelector(favours_ann), termination=MaxTurns(9), printer=None
    )
    assert result.speakers == ["ann", "bob", "ann", "cy", "ann", "bob", "ann", "cy", "ann"]
    for name in ("ann", "bob", "cy"):  # nobody waits more than max_wait (3) turns
        turns = [0] + [i + 1 for i, s in enumerate(result.speakers) if s == name]
        assert all(b - a <= 4 for a, b in itertools.pairwise(turns)), (name, turns)
    four = [Scripted.start([f"{n} here"], name=n) for n in ("p", "q", "r", "s")]
    result = run_chat(
        four,
        "t",
        selector=ModelSelector(favours_ann, max_wait=2),
        termination=MaxTurns(6),
        printer=None,
    )
    assert result.speakers == ["p", "q", "r", "s", "p", "q"]  # a fake naming nobody: the first
    with pytest.raises(AgentError, match="max_wait"):
        ModelSelector(favours_ann, max_wait=0)


class CountingScores:
    """Wraps a selector; counts its picks that were not among the allowed candidates."""

    def __init__(self, inner: ModelSelector) -> None:
        self.inner, self.calls, self.invalid = inner, 0, 0

    def __call__(self, ctx: SelectionContext) -> str:
        self.calls += 1
        name = self.inner(ctx)
        allowed = self.inner.candidates(ctx)
        self.invalid += name not in allowed
        return name


def test_model_selector_fails_with_a_note_when_the_model_cannot_score() -> None:
    mute = Scripted.start(["not a model"], name="mute")  # answers Score with nothing useful
    result = run_chat(
        trio(),
        "t",
        selector=ModelSelector(mute, timeout=2),
        termination=MaxTurns(2),
        printer=None,
    )
    assert result.speakers == ["ann", "bob"]  # round robin stood in
    assert all("the selector failed" in n.text for n in result.notes[:2])


# -- failing speakers ---------------------------------------------------------------------------


def test_a_speaker_that_raises_is_restarted_and_the_chat_completes() -> None:
    fail_on = {"turn": 2, "left": 1}
    ann = Scripted.start(["ann here"], name="ann")
    flaky = start_supervised(Flaky, fail_on, name="flaky")  # under the kernel
    result = run_chat(
        [ann, flaky], chat_class=Dialogue, termination=MaxTurns(4), printer=None, note_repeats=0
    )
    assert result.stopped_by == "MaxTurns"
    assert result.speakers == ["ann", "flaky", "ann", "flaky"]
    assert [e.text for e in result.utterances][1] == "flaky speaks in turn 2"
    assert len(result.notes) == 1
    assert "turn 2: flaky failed (RuntimeError: flaky failed on turn 2); retrying" in (
        result.notes[0].text
    )
    assert flaky.statistics().restarts == 1


def test_a_speaker_failing_twice_is_skipped_with_a_note() -> None:
    team = kernel().spawn(Supervisor, max_restarts=10, within=5, escalate=False, name="team")
    fail_on = {"turn": 2, "left": 2}
    ann = Scripted.start(["ann here"], name="ann")
    flaky = start_supervised(Flaky, fail_on, name="flaky", supervisor=team)
    result = run_chat(
        [ann, flaky], chat_class=Dialogue, termination=MaxTurns(4), printer=None, note_repeats=0
    )
    assert result.turns == 4 and result.speakers == ["ann", "ann", "flaky"]
    assert "turn 2 skipped: flaky failed 2 times" in result.notes[-1].text
    assert flaky.statistics().restarts == 2


def test_a_speaker_the_kernel_gives_up_on_leaves_and_the_chat_goes_on() -> None:
    fail_on = {"turn": 2, "left": 99}  # crashes on every try of turn 2
    ann = Scripted.start(["ann here"], name="ann")
    flaky = start_supervised(Flaky, fail_on, name="flaky")  # the kernel: 1 restart in 5 s
    result = run_chat(
        [ann, flaky], chat_class=Dialogue, termination=MaxTurns(5), printer=None, note_repeats=0
    )
    assert result.stopped_by == "MaxTurns" and result.turns == 5
    assert result.speakers == ["ann", "ann", "ann"]
    notes = [n.text for n in result.notes]
    assert "retrying" in notes[0] and "turn 2 skipped" in notes[1]
    assert "flaky has stopped" in notes[2] and "leaves the chat" in notes[2]
    assert not flaky.is_alive()


def test_a_speaker_that_times_out_is_retried_then_skipped() -> None:
    release, entered = threading.Event(), threading.Event()
    ann = Scripted.start(["ann here"], name="ann")
    slow = Blocking.start(release, entered, limit=5, name="slow")
    try:
        result = run_chat(
            [ann, slow],
            chat_class=Dialogue,
            termination=MaxTurns(3),
            speaker_timeout=0.2,
            printer=None,
        )
    finally:
        release.set()
    assert result.speakers == ["ann", "ann"]
    assert "AskTimeout" in result.notes[0].text and "retrying" in result.notes[0].text
    assert "turn 2 skipped: slow failed 2 times" in result.notes[1].text


def test_a_stopped_speaker_leaves_and_the_chat_goes_on() -> None:
    ann, bob, cy = trio()
    bob.stop(timeout=T)
    result = run_chat([ann, bob, cy], termination=MaxTurns(4), printer=None)
    assert result.speakers == ["ann", "cy", "ann"]
    assert "bob has stopped" in result.notes[0].text


def test_when_nobody_can_answer_the_chat_ends_saying_so() -> None:
    ann, bob = Scripted.start(["x"], name="ann"), Scripted.start(["y"], name="bob")
    ann.stop(timeout=T)
    bob.stop(timeout=T)
    result = run_chat([ann, bob], termination=MaxTurns(10), printer=None)
    assert result.stopped_by == "no_speakers" and not result.ended_normally
    assert result.reason.startswith("no participant can speak any more")


class Garbage(Agent):
    @handler(Turn)
    def on_turn(self, turn: Turn) -> int:
        return 42


def test_every_turn_skipped_ends_the_chat() -> None:
    refs = [Garbage.start(name=n) for n in ("g1", "g2")]
    result = run_chat(refs, termination=MaxTurns(50), printer=None)
    assert result.stopped_by == "no_speakers" and result.turns == 4
    assert "answered int, not an Utterance" in result.notes[0].text


# -- a human participant ------------------------------------------------------------------------


def test_a_human_typing_quit_ends_the_dialogue() -> None:
    lines = iter(["Hi bot", "/quit"])
    you = HumanAgent.start(lambda prompt: next(lines), name="you")
    bot = Scripted.start(["Hello human"], name="bot")
    result = run_chat([you, bot], chat_class=Dialogue, printer=None)
    assert result.speakers == ["you", "bot"]
    assert result.stopped_by == "speaker" and result.reason == "you ended the chat: typed /quit"


# -- transcripts, streaming, control ------------------------------------------------------------


def test_transcripts_are_written_as_jsonl_and_markdown(tmp_path: Path) -> None:
    fail_on = {"turn": 2, "left": 2}
    ann = Scripted.start(["ann here"], name="ann")
    flaky = Flaky.start(fail_on, name="flaky")
    result = run_chat(
        [ann, flaky],
        "a topic",
        chat_class=Dialogue,
        termination=MaxTurns(3),
        save_to=tmp_path / "out" / "chat",
        printer=None,
    )
    assert result.jsonl_path == str(tmp_path / "out" / "chat.jsonl")
    records = read_jsonl(result.jsonl_path)
    kinds = [r["kind"] for r in records]
    assert kinds == ["utterance", "note", "note", "utterance", "note", "end"]
    assert records[4]["text"] == "turn 3: ann nearly repeats turn 1 (ann), 100% alike"
    first = records[0]
    assert {k: first[k] for k in ("index", "speaker", "text", "turn", "tokens")} == {
        "index": 0,
        "speaker": "ann",
        "text": "ann here",
        "turn": 1,
        "tokens": 2,
    }
    assert first["at"] > 0 and first["seconds"] >= 0
    assert records[-1]["stopped_by"] == "MaxTurns" and records[-1]["turns"] == 3
    md = Path(result.markdown_path).read_text()
    assert md.startswith("# ") and "**Task:** a topic" in md
    assert "**ann** (turn 1):\n\nann here" in md and "> _turn 2 skipped" in md
    assert "**Ended:** MaxTurns(3): 3 turns taken" in md


def test_the_console_printer_streams_tokens_and_utterances() -> None:
    fake = FakeModel.start(name="fake")
    # The fake echoes (near-repeats), so the agents keep their first answers.
    ann = ChatAgent.start(fake, "You are Ann.", stream=True, avoid_repeats=1.0, name="ann")
    bob = ChatAgent.start(fake, "You are Bob.", stream=True, avoid_repeats=1.0, name="bob")
    out = io.StringIO()
    result = run_chat(
        [ann, bob],
        "Tea or coffee?",
        chat_class=Dialogue,
        termination=MaxTurns(3),
        printer=ConsolePrinter(out),
        note_repeats=0,
    )
    text = out.getvalue()
    assert text.splitlines()[:3] == [
        "ann: ann #1: Tea or coffee?",
        "bob: bob #1: Tea or coffee?",
        "ann: ann #2: Tea or coffee?",
    ]
    assert text.splitlines()[-1].startswith("-- ended: MaxTurns(3)")
    assert [e.tokens for e in result.utterances] == [5, 5, 5]
    memory = bob.ask(GetMemory(), timeout=T).get()
    assert memory["turns"][0] == {"role": "user", "content": "ann: ann #1: Tea or coffee?"}


def test_the_chat_stays_responsive_while_a_speaker_thinks() -> None:
    release, entered = threading.Event(), threading.Event()
    ann = Scripted.start(["ann here"], name="ann")
    slow = Blocking.start(release, entered, name="slow")
    chat = GroupChat.start([ann, slow], "t", printer=None, name="chat")
    try:
        assert chat.ask(StartChat(), timeout=T).get() is True
        assert entered.wait(T)
        status: ChatResult = chat.ask(GetStatus(), timeout=T).get()  # answered while blocked
        assert status.stopped_by == "" and status.speakers == ["ann"]
        result: ChatResult = chat.ask(StopChat("enough"), timeout=T).get()
        assert result.stopped_by == "stopped" and result.reason == "enough"
        assert chat.ask(GetResult(), timeout=T).get() == result
        # The waiter thread of the unanswered turn ends with the chat, not at its ask timeout.
        for thread in threading.enumerate():
            if thread.name.startswith("llmos:chat:turn"):
                thread.join(T)
                assert not thread.is_alive()
    finally:
        release.set()


def test_stopping_the_chat_actor_still_gives_a_result() -> None:
    release, entered = threading.Event(), threading.Event()
    ann = Scripted.start(["ann here"], name="ann")
    slow = Blocking.start(release, entered, name="slow")
    chat = GroupChat.start([ann, slow], printer=None, name="chat")
    try:
        chat.ask(StartChat(), timeout=T).get()
        waiting = chat.ask(GetResult(), timeout=T)
        assert entered.wait(T)
        chat.stop(timeout=T)
        result = waiting.get()
        assert result.stopped_by == "stopped" and "stopped before the chat ended" in result.reason
    finally:
        release.set()


def test_run_chat_raises_chat_timeout_with_the_partial_result() -> None:
    release, entered = threading.Event(), threading.Event()
    ann = Scripted.start(["ann here"], name="ann")
    slow = Blocking.start(release, entered, name="slow")
    try:
        with pytest.raises(ChatTimeout, match=r"did not end within 0\.5 s") as info:
            run_chat([ann, slow], chat_class=Dialogue, printer=None, timeout=0.5)
    finally:
        release.set()
    partial = info.value.result
    assert partial is not None and partial.stopped_by == "stopped"
    assert partial.speakers == ["ann"] and "0.5 s" in partial.reason


def test_start_chat_twice_and_bad_arguments() -> None:
    ann, bob, _ = trio()
    chat = GroupChat.start([ann, bob], printer=None, termination=MaxTurns(1), name="chat")
    assert chat.ask(StartChat(), timeout=T).get() is True
    assert chat.ask(StartChat(), timeout=T).get() is False
    with pytest.raises(AgentError, match="at least two"):
        GroupChat.start([ann], name="solo")
    with pytest.raises(AgentError, match="must differ"):
        GroupChat.start([ann, ann], name="twins")
    with pytest.raises(AgentError, match="unknown selector"):
        GroupChat.start([ann, bob], selector="random", name="rnd")
    with pytest.raises(AgentError, match="alternates"):
        Dialogue.start(ann, bob, selector="round_robin", name="d")


def test_text_mention_ends_a_chat_of_chat_agents() -> None:
    fake = FakeModel.start(["Let us think.", "I agree. TERMINATE", "never said"], name="fake")
    ann = ChatAgent.start(fake, name="ann")
    bob = ChatAgent.start(fake, name="bob")
    result = run_chat(
        [ann, bob], chat_class=Dialogue, termination=TextMention("TERMINATE"), printer=None
    )
    assert result.reason == "TextMention('TERMINATE'): bob said it in turn 2"
    assert json.dumps([e.as_dict() for e in result.transcript])  # plain data throughout
