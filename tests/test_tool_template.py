"""Tools through a chat template with tool support: the model says what its template renders,
the tool loop gives it the tools, calls and results in that template's form, and the calls it
writes under constrained decoding still parse and validate, on the real default model given a
Hermes-style template (tests/chat_templates/hermes_tools.jinja)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmos.actors import Actor, ActorRef, handler
from llmos.agents import ChatAgent, Prompt, ToolBox, ToolLoop, spawn, tool
from llmos.models import Completion, FakeModel, Generate, GetModelInfo, ModelError, ModelInfo

HERMES = (Path(__file__).parent / "chat_templates" / "hermes_tools.jinja").read_text()


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a * b


@tool
def capital(country: str) -> str:
    """Look up the capital city of a country."""
    return {"france": "Paris", "japan": "Tokyo"}.get(country.strip().lower(), "unknown")


class TemplateModel(Actor):
    """Answers each Generate with the next of its texts, and GetModelInfo with ``info``."""

    def __init__(self, texts: list[str], seen: list[Generate], info: ModelInfo) -> None:
        super().__init__()
        self.texts = texts
        self.seen = seen
        self.model_info = info

    @handler(GetModelInfo)
    def info(self, _msg: GetModelInfo) -> ModelInfo:
        return self.model_info

    @handler(Generate)
    def generate(self, msg: Generate) -> Completion:
        self.seen.append(msg)
        return Completion(self.texts.pop(0), "stop", 1, 1, 0.0, 0.0)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def test_a_model_with_tool_support_gets_tools_calls_and_results_in_its_template_form() -> None:
    seen: list[Generate] = []
    call = '{"name": "multiply", "arguments": {"a": 6, "b": 7}}'
    info = ModelInfo("t", 0, True, True, True, True)
    model = TemplateModel.start([call, '{"name": "none"}'], seen, info)
    done = ToolLoop(ToolBox([multiply, capital]), tool_choice="required").run(model, ask("6x7?"))
    assert done.stopped_by == "none" and [c.tool for c in done.calls] == ["multiply"]
    assert done.calls[0].result is not None and done.calls[0].result.data == 42
    first, second = seen
    assert first.tools is not None and [t["function"]["name"] for t in first.tools] == [
        "multiply",
        "capital",
    ]
    assert first.tools[0]["function"]["parameters"] == multiply.parameters
    assert first.messages is not None and "You can use tools" not in first.messages[0]["content"]
    assert first.messages[0]["content"].endswith('answer {"name": "none"}.')
    schema = json.loads(first.json_schema or "")
    assert "none" not in json.dumps(schema)  # required: the first decision is a call
    assert {o["properties"]["name"]["const"] for o in schema["anyOf"]} == {"multiply", "capital"}
    assert second.messages is not None and second.messages[-2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}},
                }
            ],
        },
        {"role": "tool", "name": "multiply", "content": "42.0"},
    ]
    # A template that renders tools but not tool messages: the result goes back as a user turn.
    seen.clear()
    plain = TemplateModel.start([call, '{"name": "none"}'], seen, ModelInfo("t", 0, True, True))
    ToolLoop(ToolBox([multiply])).run(plain, ask("6x7?"))
    assert seen[1].messages is not None
    assert seen[1].messages[-2] == {"role": "assistant", "content": call}
    assert seen[1].messages[-1] == {"role": "user", "content": "Result of multiply -> 42.0"}


def test_an_answer_on_tool_results_may_restate_the_question_but_not_its_own_answers() -> None:
    """Between agents, an answer is kept from copying the turns it heard; an answer built on
    tool results must say "6 times 7 is 42", so it avoids only the agent's own earlier ones."""
    seen: list[Generate] = []
    call = '{"tool": "multiply", "arguments": {"a": 6, "b": 7}}'
    again = '{"tool": "multiply", "arguments": {"a": 7, "b": 7}}'
    texts = [call, '{"tool": "none"}', "6 times 7 is 42.", again, '{"tool": "none"}', "49."]
    model = TemplateModel.start(texts, seen, ModelInfo("t"))
    agent = spawn(ChatAgent, model, "Be brief.", tools=[multiply], name="calc")
    assert agent.ask(Prompt("What is 6 times 7?"), timeout=10).get().text == "6 times 7 is 42."
    answer = seen[2]
    assert answer.json_schema is None and answer.messages is not None
    assert "multiply -> 42.0" in answer.messages[-1]["content"]
    assert answer.avoid == ()  # nothing of its own yet, and the question is not banned
    agent.ask(Prompt("And 7 times 7?"), timeout=10).get()
    assert seen[5].avoid == ("6 times 7 is 42.",)
    # Without tools the same agent steers clear of what it heard.
    plain = spawn(ChatAgent, model, "Be brief.", name="plain")
    seen.clear()
    texts.append("Forty-two.")
    plain.ask(Prompt("What is 6 times 7?"), timeout=10).get()
    assert seen[-1].avoid == ("What is 6 times 7?",)


def test_a_model_without_tool_support_gets_the_documented_prompt_format() -> None:
    seen: list[Generate] = []
    call = '{"tool": "multiply", "arguments": {"a": 2, "b": 3}}'
    model = TemplateModel.start([call, '{"tool": "none"}'], seen, ModelInfo("t"))
    done = ToolLoop(ToolBox([multiply])).run(model, ask("2x3?"))
    assert done.calls[0].result is not None and done.calls[0].result.data == 6
    assert seen[0].tools is None and seen[0].messages is not None
    assert "You can use tools" in seen[0].messages[0]["content"]
    assert seen[1].messages is not None and seen[1].messages[-1]["role"] == "user"
    # prompt_format="prompt" keeps the documented format even where the template has tools.
    seen.clear()
    info = ModelInfo("t", 0, True, True, True, True)
    forced = TemplateModel.start([call, '{"tool": "none"}'], seen, info)
    ToolLoop(ToolBox([multiply]), prompt_format="prompt").run(forced, ask("2x3?"))
    assert seen[0].tools is None


def test_the_fake_model_says_what_its_template_renders_and_refuses_tools_without_support() -> None:
    plain = FakeModel.start(name_tag="plain")
    tools = [{"type": "function", "function": {"name": "x", "parameters": {}}}]
    assert plain.ask(GetModelInfo(), timeout=10).get() == ModelInfo("plain")
    with pytest.raises(ModelError, match="does not render tools"):
        plain.ask(Generate(messages=ask("hi"), tools=tools), timeout=10).get()
    capable = FakeModel.start(["ok"], name_tag="capable", tool_template=True)
    assert capable.ask(GetModelInfo(), timeout=10).get().tools
    assert capable.ask(Generate(messages=ask("hi"), tools=tools), timeout=10).get().text == "ok"


# -- on the real default model -----------------------------------------------------------------


@pytest.fixture(scope="module")
def weights() -> Any:
    from llmos.models import shared_model

    return shared_model()


@pytest.mark.model
def test_the_engine_renders_tools_through_a_template_that_supports_them(weights: Any) -> None:
    from llmos.models import ModelEngine

    default, hermes = ModelEngine(weights), ModelEngine(weights, HERMES)
    assert default.info().tools is False and not default.info().tool_role
    assert hermes.info() == ModelInfo(weights.name, weights.context_window, True, True, True, True)
    tools = ToolLoop(ToolBox([multiply, capital])).box.specs()
    definitions = [
        {
            "type": "function",
            "function": {"name": s.name, "description": s.description, "parameters": s.parameters},
        }
        for s in tools
    ]
    calls = [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}}}]
    chat = [
        *ask("6x7?"),
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "name": "multiply", "content": "42.0"},
    ]
    text = hermes.prompt_text(chat, definitions)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    listed = text.split("<tools>\n")[1].split("\n</tools>")[0]
    assert listed.split("\n") == [json.dumps(d) for d in definitions]  # in the template's form
    assert '<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\n42.0\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ModelError, match="does not render tools or tool_calls or tool messages"):
        default.prompt_text(chat, definitions)
    # The tokenizer, shared by every engine on these weights, keeps its own template.
    assert "<tools>" not in default.prompt_text(ask("hi"))


@pytest.fixture
def hermes_model(weights: Any) -> Iterator[ActorRef]:
    from llmos.models import ModelActor

    yield ModelActor.start(name="hermes-model", chat_template=HERMES)


@pytest.mark.model
def test_calls_through_the_template_parse_and_validate_on_the_real_model(
    hermes_model: ActorRef,
) -> None:
    assert hermes_model.ask(GetModelInfo(), timeout=60).get().tools
    # Two decisions at most (the model is slow on a loaded CPU): the first is a call, the
    # second is made after the call and its result went back in the template's form.
    loop = ToolLoop(ToolBox([multiply, capital]), max_calls=2, tool_choice="required")
    done = loop.run(hermes_model, ask("What is 6 times 7?"))
    assert done.calls and done.stopped_by in ("none", "max_calls", "repeat")
    assert done.calls[0].result is not None
    for call in done.calls:
        decision = json.loads(call.text)  # parses, in the template's call form
        assert decision["name"] in ("multiply", "capital") and "tool" not in decision
        assert call.result is None or call.result.ok, call  # validated and ran (or a repeat)
