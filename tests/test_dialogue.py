"""Two-agent dialogues of ChatAgents, retried turns, and the modules' public names."""

from __future__ import annotations

import importlib
import inspect
import io
from typing import Any

import pytest
from test_agent_support import Scripted, start_supervised

from llmos.actors import ActorRef
from llmos.agents._agent_messages import Describe, Utterance
from llmos.agents._chat_agent import ChatAgent
from llmos.agents._chat_agent_messages import GetMemory
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._termination import MaxTurns
from llmos.agents._transcript import ChatResult, ConsolePrinter, Entry
from llmos.models._fake import FakeModel
from llmos.transport import Node, RemoteRef

T = 10.0


def test_two_chat_agents_take_turns_and_remember_each_other() -> None:
    prompts: list[list[dict[str, Any]]] = []

    def reply(messages: list[dict[str, Any]]) -> str:
        prompts.append(messages)
        return f"point {len(prompts)}"

    fake = FakeModel.start(reply, name="fake")
    # "point 3" is 86% like "point 1": the agents would ask again; here they keep it.
    ann = ChatAgent.start(fake, "You are Ann.", avoid_repeats=1.0, name="ann")
    bob = ChatAgent.start(fake, "You are Bob.", avoid_repeats=1.0, name="bob")
    result = run_chat(
        [ann, bob], "Tea or coffee?", chat_class=Dialogue, termination=MaxTurns(3), printer=None
    )
    assert [(e.speaker, e.text) for e in result.utterances] == [
        ("ann", "point 1"),
        ("bob", "point 2"),
        ("ann", "point 3"),
    ]
    system, *turns = prompts[2]
    assert system["role"] == "system" and system["content"].startswith("You are Ann.")
    assert "You are Ann, talking with Bob.\nThe question: Tea or coffee?" in system["content"]
    assert turns == [  # in a dialogue of two, the other's words go unlabelled
        {"role": "user", "content": "Tea or coffee?"},
        {"role": "assistant", "content": "point 1"},
        {"role": "user", "content": "point 2"},
    ]


class CrashAfterRemembering(ChatAgent):
    """Fails once in the middle of a turn: after taking in what was said, before answering."""

    def __init__(self, model: ActorRef, fail: dict[str, int]) -> None:
        super().__init__(model, "You are Cy.")
        self.fail = fail

    def answer(self, *args: Any, **kwargs: Any) -> Utterance:
        if self.fail["left"] > 0:
            self.fail["left"] -= 1
            raise RuntimeError("crashed mid-turn")
        return super().answer(*args, **kwargs)


def test_a_retried_turn_does_not_remember_twice() -> None:
    fake = FakeModel.start(["one", "two"], name="fake")
    ann = Scripted.start(["hello", "again"], name="ann")
    cy = start_supervised(CrashAfterRemembering, fake, {"left": 1}, name="cy")
    result = run_chat([ann, cy], chat_class=Dialogue, termination=MaxTurns(4), printer=None)
    assert result.speakers == ["ann", "cy", "ann", "cy"] and len(result.notes) == 1
    assert cy.statistics().restarts == 1
    memory = cy.ask(GetMemory(), timeout=T).get()
    assert memory["turns"] == [
        {"role": "user", "content": "ann: hello"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "ann: again"},
        {"role": "assistant", "content": "two"},
    ]


def test_the_first_speaker_may_be_a_rule_based_agent_answering_a_str() -> None:
    ann = Scripted.start(["hi"], name="ann")
    bob = Scripted.start(["hey"], name="bob")
    result = run_chat(["bob", "ann"], chat_class=Dialogue, termination=MaxTurns(2), printer=None)
    assert result.speakers == ["bob", "ann"] and result.participants == ["bob", "ann"]
    assert ann.is_alive() and bob.is_alive()  # run_chat leaves the participants running


MODULES = [
    "_agent",
    "_agent_messages",
    "_chat_agent",
    "_chat_prompt",
    "_chat_turns",
    "_dialogue",
    "_group_chat",
    "_human",
    "_memory",
    "_oplog",
    "_replies",
    "_selection",
    "_termination",
    "_transcript",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_every_public_name(name: str) -> None:
    module = importlib.import_module(f"llmos.agents.{name}")
    public = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    assert set(module.__all__) >= public
    assert all(hasattr(module, n) for n in module.__all__)


class Recorder:
    """A printer that keeps what it is shown."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, str]] = []
        self.entries: list[Entry] = []
        self.ended: list[ChatResult] = []

    def chunk(self, speaker: str, text: str) -> None:
        self.chunks.append((speaker, text))

    def entry(self, entry: Entry) -> None:
        self.entries.append(entry)

    def end(self, result: ChatResult) -> None:
        self.ended.append(result)


def test_a_participant_on_another_node_takes_part_the_same_way() -> None:
    here, there = Node(name="here"), Node(name="there")
    try:
        fake = FakeModel.start(name="fake")
        # The fake echoes; keep its first answers, and stream them.
        ann = ChatAgent.start(fake, "You are Ann.", stream=True, avoid_repeats=1, name="ann")
        ChatAgent.start(fake, "You are Bob.", stream=True, avoid_repeats=1, name="bob")
        bob = here.ref(f"bob@{there.address}")  # reached over ZeroMQ, through node "there"
        assert isinstance(bob, RemoteRef)
        shown = Recorder()
        result = run_chat(
            [ann, bob],
            "Tea?",
            chat_class=Dialogue,
            termination=MaxTurns(4),
            printer=shown,
            note_repeats=0,
        )
        assert result.speakers == ["ann", "bob", "ann", "bob"] and not result.notes
        assert result.utterances[1].text == "bob #1: Tea?"
        # Tokens stream back over the wire too, but on their own path: they may trail the
        # answer, and those that come after their turn ended are not shown (the utterance is).
        said_by_bob = " ".join(e.text for e in result.utterances if e.speaker == "bob").split()
        assert all(text.strip() in said_by_bob for who, text in shown.chunks if who == "bob")
        assert [e.text for e in shown.entries] == [e.text for e in result.transcript]
        assert shown.ended == [result]
    finally:
        there.close()
        here.close()


def test_the_console_printer_completes_a_line_whose_chunks_trail() -> None:
    out = io.StringIO()
    printer = ConsolePrinter(out)
    printer.chunk("bob", "Hello")
    printer.entry(Entry(0, "utterance", "bob", "Hello world", 1, 0.0))
    printer.chunk("ann", "something else")
    printer.entry(Entry(1, "utterance", "ann", "Hi", 2, 0.0))
    printer.entry(Entry(2, "note", "", "a note", 2, 0.0))
    assert out.getvalue() == "bob: Hello world\nann: something else\nann: Hi\n  [a note]\n"


def test_a_dialogue_waits_for_a_chat_agents_turn_as_long_as_its_model_may_take() -> None:
    """The chat's per-turn wait covers the agent's own model timeout (twice: a near-repeat is
    generated once more), so a slow model never makes the chat give up on a turn the agent is
    still allowed to finish."""
    fake = FakeModel.start(lambda messages: "Fine.", name="fake")
    slow = ChatAgent.start(fake, "You are Ann.", model_timeout=100.0, name="ann")
    info = slow.ask(Describe(), timeout=10).get()
    assert info.turn_timeout >= 2 * 100.0
