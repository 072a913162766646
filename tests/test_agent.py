"""Agent subclassing, input validation, operation logs, ChatAgent memory, HumanAgent, FakeModel."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from test_agent_support import start_supervised

import llmos.actors as actors
from llmos.actors import ActorRef, DeadlockError, handler, message
from llmos.agents import AgentError
from llmos.agents._agent import Agent, spawn
from llmos.agents._agent_messages import (
    AgentInfo,
    Describe,
    GetOpLog,
    Prompt,
    Turn,
    Utterance,
)
from llmos.agents._chat_agent import ChatAgent
from llmos.agents._chat_agent_messages import ClearMemory, GetMemory
from llmos.agents._human import HumanAgent
from llmos.agents._oplog import OpLog, OpRecord
from llmos.agents._validation import check_input
from llmos.kernel import kernel
from llmos.models._fake import FakeModel
from llmos.models._messages import Completion, Generate, GetModelStats, TokenChunk

T = 5.0  # ask timeout for everything local and fast


@message("test.agents.Add")
class Add:
    a: float
    b: float


@message("test.agents.Boom")
class Boom:
    pass


@message("test.agents.Relay")
class Relay:
    to: str
    a: float
    b: float


class Calculator(Agent):
    """Adds numbers."""

    agent_max_text_chars = 50

    @handler(Add)
    def add(self, msg: Add) -> float:
        return msg.a + msg.b

    @handler(Boom)
    def boom(self, _msg: Boom) -> None:
        raise ValueError("boom on purpose")

    @handler(Relay)
    def relay(self, msg: Relay) -> float:
        answer: float = self.ask_agent(msg.to, Add(msg.a, msg.b), timeout=T)
        return answer * 10

    @handler(Prompt)
    def prompt(self, msg: Prompt) -> str:
        return msg.text.upper()


def ask(ref: ActorRef, msg: Any, timeout: float = T) -> Any:
    return ref.ask(msg, timeout=timeout).get()


# -- Agent --------------------------------------------------------------------------------------


def test_subclassed_agent_handles_its_messages() -> None:
    calc = Calculator.start(name="calc")
    assert ask(calc, Add(2, 3.5)) == 5.5
    assert ask(calc, Prompt("hi")) == "HI"
    info = ask(calc, Describe())
    assert isinstance(info, AgentInfo)
    assert info.name == "calc" and info.kind == "Calculator"
    assert info.description == "Adds numbers."  # the docstring's first line by default
    assert "test.agents.Add" in info.accepts


def test_agents_consult_each_other_by_name() -> None:
    Calculator.start(name="calc")
    front = Calculator.start(name="front")
    assert ask(front, Relay("calc", 1, 2)) == 30
    with pytest.raises(DeadlockError):
        ask(front, Relay("front", 1, 2))


def test_wrong_field_type_is_refused_and_the_agent_goes_on() -> None:
    calc = Calculator.start(name="calc")
    with pytest.raises(AgentError, match=r"field 'a' must be float, got str"):
        ask(calc, Add("two", 3))  # type: ignore[arg-type]
    assert ask(calc, Add(1, 1)) == 2
    assert calc.statistics().failed == 0


def test_over_size_text_is_refused_with_the_limit_named() -> None:
    calc = Calculator.start(name="calc")
    with pytest.raises(AgentError, match=r"60 characters, over its limit of 50.*agent_max_text"):
        ask(calc, Prompt("x" * 60))


def test_too_many_items_are_refused() -> None:
    with pytest.raises(AgentError, match="items, over its limit of 3"):
        check_input(Turn("d", 1, [{"index": i} for i in range(4)]), 100, 3)
    check_input(Turn("d", 1, [{"index": i} for i in range(3)]), 100, 3)


def test_a_refused_tell_goes_to_dead_letters_without_failing_the_agent() -> None:
    calc = Calculator.start(name="calc")
    before = len(actors.dead_letters("calc"))
    calc.tell(Prompt("y" * 100))
    assert ask(calc, Add(1, 2)) == 3  # still alive, handled in order after the tell
    letters = actors.dead_letters("calc")[before:]
    assert len(letters) == 1 and letters[0].reason.startswith("refused")


def test_a_message_without_handler_is_refused_listing_what_it_accepts() -> None:
    calc = Calculator.start(name="calc")
    with pytest.raises(AgentError, match=r"does not accept llmos.agents.Turn; it accepts: .*Add"):
        ask(calc, Turn("d", 1, []))


def test_operation_log_records_every_outcome(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "calc.jsonl"
    calc = Calculator.start(oplog=path, name="calc")
    ask(calc, Add(1, 2))
    with pytest.raises(ValueError, match="boom"):
        ask(calc, Boom())
    with pytest.raises(AgentError):
        ask(calc, Prompt("z" * 99))
    records = ask(calc, GetOpLog())
    assert [(r["op"], r["outcome"]) for r in records] == [
        ("add", "ok"),
        ("boom", "error"),
        ("refused", "refused"),
    ]
    assert records[1]["error_type"] == "ValueError" and "boom" in records[1]["error"]
    assert all(r["agent"] == "calc" and r["seconds"] >= 0 for r in records)
    assert records[0]["message_type"] == "test.agents.Add"
    assert [r["op"] for r in ask(calc, GetOpLog(last=1))] == ["get_oplog"]
    calc.stop(timeout=T)
    on_file = OpLog.read(path)
    assert [r.op for r in on_file] == ["add", "boom", "refused", "get_oplog", "get_oplog"]


def test_operation_log_is_bounded() -> None:
    log = OpLog(capacity=2)
    for i in range(3):
        log.add(OpRecord("a", f"op{i}", "t", 0.0, 0.0, "ok"))
    assert [r.op for r in log.records()] == ["op1", "op2"]
    assert len(log) == 2 and log.count == 3


def test_spawn_and_lookup_go_through_the_kernel() -> None:
    calc = spawn(Calculator, name="spawned", restart_on_ask_error=True)
    assert ask(calc, Add(2, 2)) == 4
    assert any(a.name == "spawned" for a in kernel().stats().actors)
    with pytest.raises(ValueError, match="boom"):
        ask(calc, Boom())  # raised in an ask: back to the asker, and the kernel restarts it
    assert ask(calc, Add(1, 1)) == 2 and calc.statistics().restarts == 1
    front = Calculator.start(name="front")
    assert ask(front, Relay("spawned", 2, 3)) == 50  # the helper looks the name up


# -- FakeModel ----------------------------------------------------------------------------------


def test_fake_model_scripts_cuts_and_counts() -> None:
    fake = FakeModel.start(["one two three four", "alpha STOP beta"], name="fake")
    done = ask(fake, Generate(prompt="hi there", max_new_tokens=2))
    assert isinstance(done, Completion)
    assert (done.text, done.finish_reason, done.completion_tokens) == ("one two", "length", 2)
    assert done.prompt_tokens == 2
    done = ask(fake, Generate(prompt="x", stop=("STOP",)))
    assert (done.text.strip(), done.finish_reason) == ("alpha", "stop")
    done = ask(
        fake, Generate(messages=[{"role": "user", "content": "bob: tell me more"}], requester="amy")
    )
    assert done.text == "amy #1: tell me more"  # out of script: an echo without the prefix
    stats = ask(fake, GetModelStats())
    assert stats.completed == 3 and stats.tokens_by_requester["amy"] == 5


def test_fake_model_streams_chunks_then_the_completion() -> None:
    got: list[Any] = []
    done = threading.Event()

    class Sink(Agent):
        @handler(TokenChunk)
        def chunk(self, msg: TokenChunk) -> None:
            got.append(msg)

        @handler(Completion)
        def end(self, msg: Completion) -> None:
            got.append(msg)
            done.set()

    sink = Sink.start(name="sink")
    fake = FakeModel.start(["a b c"], name="fake")
    ask(fake, Generate(prompt="x", stream_to=sink, request_id="r1"))
    assert done.wait(T)
    assert "".join(c.text for c in got[:-1]) == "a b c"
    assert [c.index for c in got[:-1]] == [0, 1, 2]
    assert isinstance(got[-1], Completion) and got[-1].request_id == "r1"


# -- ChatAgent ----------------------------------------------------------------------------------


def test_chat_agent_answers_a_prompt_through_the_model() -> None:
    fake = FakeModel.start(["Hello, I am Ann."], name="fake")
    ann = ChatAgent.start(fake, "You are Ann. You are kind.", name="ann")
    reply = ask(ann, Prompt("Who are you?", sender="bob"))
    assert reply == Utterance("ann", "Hello, I am Ann.", 4, "stop", reply.input_tokens, 4, "fake")
    assert reply.input_tokens > 4  # the system prompt and the question
    memory = ask(ann, GetMemory())
    assert memory["turns"] == [
        {"role": "user", "content": "bob: Who are you?"},
        {"role": "assistant", "content": "Hello, I am Ann."},
    ]
    assert ask(ann, Describe()).description == "You are Ann"
    assert ask(ann, ClearMemory()) is True
    assert ask(ann, GetMemory())["turns"] == []


def test_chat_agent_sends_persona_and_memory_to_the_model() -> None:
    seen: list[list[dict[str, Any]]] = []

    def reply(messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return "ok"

    fake = FakeModel.start(reply, name="fake")
    ann = ChatAgent.start(fake, "You are Ann.", name="ann")
    ask(ann, Prompt("first"))
    ask(ann, Prompt("second"))
    assert seen[-1] == [
        {"role": "system", "content": "You are Ann."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]


def test_chat_agent_memory_drops_the_oldest_turns_over_budget() -> None:
    fake = FakeModel.start(["reply " * 10], cycle=True, name="fake")
    ann = ChatAgent.start(fake, memory_tokens=40, name="ann")
    for i in range(6):
        ask(ann, Prompt(f"message number {i} " + "pad " * 6))
    memory = ask(ann, GetMemory())
    assert memory["tokens"] <= 40 + 20  # within budget before the latest answer was added
    assert "message number 5" in memory["turns"][-2]["content"]
    assert not any("message number 0" in t["content"] for t in memory["turns"])


def test_chat_agent_memory_can_be_summarised() -> None:
    fake = FakeModel.start(["fine"], cycle=True, name="fake")

    def summarize(dropped: list[dict[str, str]], previous: str) -> str:
        return (previous + " " + " ".join(t["content"].split()[0] for t in dropped)).strip()

    ann = ChatAgent.start(fake, memory_tokens=24, summarize=summarize, name="ann")
    for word in ["apples", "pears", "plums", "figs", "dates"]:
        ask(ann, Prompt(f"{word} " + "x " * 12))
    memory = ask(ann, GetMemory())
    assert memory["summary"].startswith("apples")
    assert "fine" in memory["summary"]  # assistant turns are summarised too


def test_chat_agent_memory_survives_a_restart() -> None:
    fake = FakeModel.start(["I remember."], cycle=True, name="fake")

    class CrashyChat(ChatAgent):
        @handler(Boom)
        def boom(self, _msg: Boom) -> None:
            raise RuntimeError("crash on purpose")

    ann = start_supervised(CrashyChat, fake, "You are Ann.", name="ann")
    ask(ann, Prompt("my name is Zed"))
    before = ask(ann, GetMemory())
    ann.tell(Boom())  # fails the actor; the kernel restarts it behind the same ref
    after = ask(ann, GetMemory())  # queued behind Boom: answered by the new instance
    assert ann.statistics().restarts == 1
    assert after == before and "Zed" in after["turns"][0]["content"]
    ops = [r["op"] for r in ask(ann, GetOpLog())]
    assert ops[:3] == ["on_prompt", "get_memory", "boom"]  # the log was carried over too


def test_chat_agent_refuses_bad_arguments() -> None:
    with pytest.raises(AgentError, match="model must be"):
        ChatAgent.start(42, name="bad")
    with pytest.raises(AgentError, match="summarize must be"):
        ChatAgent.start("m", summarize="compress", name="bad")


# -- HumanAgent ---------------------------------------------------------------------------------


def test_human_agent_reads_lines_and_quits() -> None:
    lines = iter(["", "  hello there ", "/quit"])
    out = io.StringIO()
    human = HumanAgent.start(lambda prompt: next(lines), output=out, echo=True, name="you")
    first = ask(human, Turn("d", 2, [{"index": 0, "speaker": "bot", "text": "Hi!"}]))
    assert first == Utterance("you", "hello there")
    assert "bot: Hi!" in out.getvalue()
    second = ask(human, Turn("d", 4, []))
    assert second.finish_reason == "end_chat" and "/quit" in second.text


def test_human_agent_end_of_input_ends_the_chat() -> None:
    def eof(prompt: str) -> str:
        raise EOFError

    human = HumanAgent.start(eof, name="you")
    said = ask(human, Prompt("anyone?"), timeout=T)
    assert said.finish_reason == "end_chat" and said.text == "end of input"
    assert ask(human, Describe()).turn_timeout == 600.0


def test_chat_agent_talks_to_a_pool_of_models_by_name() -> None:
    models = kernel().spawn_pool(FakeModel, size=2, name="models")
    ann = ChatAgent.start("models", name="ann")  # a name: looked up through the kernel
    first = ask(ann, Prompt("one"))
    second = ask(ann, Prompt("two"))
    assert (first.text, second.text) == ("ann #1: one", "ann #1: two")  # two members served
    assert models.name == "models"


def test_chat_agent_memory_summarised_by_the_model() -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"].startswith("Summarise"):
            return "They talked about fruit."
        return "noted"

    fake = FakeModel.start(reply, name="fake")
    ann = ChatAgent.start(fake, memory_tokens=24, summarize="model", name="ann")
    for word in ["apples", "pears", "plums", "figs"]:
        ask(ann, Prompt(f"{word} " + "x " * 12))
    memory = ask(ann, GetMemory())
    assert memory["summary"] == "They talked about fruit."
    stats = ask(fake, GetModelStats())
    assert stats.completed > 4  # the answers, and the summaries
