"""Constrained decoding on the real default model: structured answers and tool calls that always
parse and validate, batched together with free requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pydantic
import pytest

from llmos.actors import ActorRef, message
from llmos.agents import (
    ChatAgent,
    GetToolCalls,
    Prompt,
    StructuredOutputError,
    ToolBox,
    ToolLoop,
    ask_typed,
    generate_typed,
    schema_of,
    tool,
)
from llmos.models import Completion, Generate, ModelError
from llmos.models._actor import ModelActor, shared_model

pytestmark = pytest.mark.model


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    country: str = pydantic.Field(max_length=24)
    population_millions: float


@message("tests.structured.Verdict")
class Verdict:
    label: Literal["positive", "negative"]
    confidence: int


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


@pytest.fixture(scope="session")
def weights() -> Any:
    return shared_model()


@pytest.fixture
def model(weights: Any) -> Iterator[ActorRef]:
    yield ModelActor.start(name="model", batch_window=0.05)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_constrained_and_free_requests_share_a_batch_and_the_free_one_is_unchanged(
    model: ActorRef,
) -> None:
    free = Generate(messages=ask("Name a fruit."), max_new_tokens=12)
    alone = model.ask(free, timeout=120).get()
    schema = json.dumps(schema_of(City))
    constrained = Generate(messages=ask("Describe Paris."), max_new_tokens=48, json_schema=schema)
    replies = [model.ask(constrained, timeout=120), model.ask(free, timeout=120)]
    typed, together = (r.get() for r in replies)
    assert isinstance(typed, Completion) and isinstance(together, Completion)
    assert typed.batch_size == 2 and together.batch_size == 2 and typed.batch == together.batch
    assert together.text == alone.text  # greedy: the constrained neighbour changed nothing
    assert typed.finish_reason == "stop"
    city = City.model_validate_json(typed.text)
    assert city.name  # parses and validates


def test_typed_answers_from_a_model_and_from_an_agent(model: ActorRef) -> None:
    for prompt in ("Tell me about Tokyo.",):
        city = generate_typed(model, prompt, City, max_new_tokens=48, timeout=120)
        assert isinstance(city, City) and len(city.name) <= 24
    critic = ChatAgent.start(model, "You judge reviews.", name="critic")
    verdict = ask_typed(critic, "Review: I loved this film.", Verdict, timeout=120)
    assert isinstance(verdict, Verdict) and verdict.label in ("positive", "negative")
    with pytest.raises(StructuredOutputError, match="ran out of tokens"):
        generate_typed(model, "Describe Rome at length.", City, max_new_tokens=3, timeout=120)


def test_a_bad_schema_is_refused_with_a_typed_error(model: ActorRef) -> None:
    with pytest.raises(ModelError, match="not valid JSON"):
        model.ask(Generate(messages=ask("hi"), json_schema="{oops"), timeout=60).get()


def test_every_tool_call_of_the_small_model_parses_and_validates(model: ActorRef) -> None:
    loop = ToolLoop(ToolBox([multiply, capital]), max_calls=1, tool_choice="required")
    prompts = ["What is 6 times 7?", "What is the capital of Japan?"]
    made = 0
    for prompt in prompts:
        done = loop.run(model, ask(prompt))
        assert done.stopped_by == "max_calls" and len(done.calls) == 1
        for call in done.calls:
            decision = json.loads(call.text)  # parses
            assert decision["tool"] in ("multiply", "capital")
            assert call.result is not None and call.result.ok, call  # validated and ran
            made += 1
    assert made == 2


def test_a_chat_agent_calls_a_tool_and_answers_with_its_result(model: ActorRef) -> None:
    agent = ChatAgent.start(
        model,
        "You are a helpful assistant.",
        tools=[capital],
        tool_choice="required",
        max_new_tokens=16,
        name="ada",
    )
    reply = agent.ask(Prompt("What is the capital of France?"), timeout=240).get()
    calls = agent.ask(GetToolCalls(), timeout=10).get()
    assert calls["calls"] and calls["calls"][0]["tool"] == "capital"
    assert calls["calls"][0]["content"] == "Paris"
    assert calls["stopped_by"] in ("none", "repeat", "max_calls")  # bounded either way
    assert "Paris" in reply.text
