"""Structured output: ask a model, or an agent, for an answer of a given type.

::

    class City(pydantic.BaseModel):
        name: str
        country: str

    city = generate_typed(model, "Name a city in Spain.", City)      # a model actor
    city = ask_typed(agent, "Which city did we talk about?", City)   # a ChatAgent

The type (a pydantic model, an ``@message`` class, a dataclass, or any type pydantic can
describe) gives the JSON schema; the answer is generated under constrained decoding against it
(``Generate.json_schema``), in the same batch as other requests, and validated by pydantic
into an instance. Only the schema and the JSON text travel, so this works with a model or an
agent on another node.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

import pydantic

from llmos.actors import ActorRef, message
from llmos.agents._errors import AgentError
from llmos.models import Completion, Generate

__all__ = [
    "AskTyped",
    "StructuredOutputError",
    "ask_typed",
    "generate_typed",
    "parse_as",
    "schema_of",
]

T = TypeVar("T")


class StructuredOutputError(AgentError):
    """The answer could not be made an instance of the type asked for: the model ran out of
    tokens before the JSON was complete (raise ``max_new_tokens``), or a check the schema does
    not express (a validator) refused it."""


@message("llmos.agents.AskTyped")
class AskTyped:
    """Ask a ChatAgent for an answer that fits a JSON schema; the answer is its JSON data.

    Attributes:
        text: the question.
        json_schema: the JSON text of the schema (see :func:`schema_of`).
        sender: who asks (shown to the agent as ``sender: text``).
        max_new_tokens: the longest answer.
    """

    text: str
    json_schema: str
    sender: str = ""
    max_new_tokens: int = 256


@functools.lru_cache(maxsize=256)
def _adapter(answer_type: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(answer_type)


def schema_of(answer_type: Any) -> dict[str, Any]:
    """The JSON schema of a type (pydantic model, ``@message`` class, dataclass, ...).

    Raises:
        AgentError: pydantic cannot describe the type.
    """
    try:
        return _adapter(answer_type).json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise AgentError(f"no JSON schema for {answer_type!r}: {exc}") from exc


def parse_as(answer_type: type[T], text: str) -> T:
    """Validate JSON text into an instance of ``answer_type``.

    Raises:
        StructuredOutputError: the text does not fit the type (the message says where).
    """
    try:
        value: T = _adapter(answer_type).validate_json(text)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        raise StructuredOutputError(
            f"the answer does not fit {getattr(answer_type, '__name__', answer_type)}: "
            f"{exc.errors()[0]['msg']} (text: {text[:200]!r})"
        ) from exc
    return value


def generate_typed(
    model: ActorRef,
    prompt: str | list[dict[str, str]],
    answer_type: type[T],
    *,
    max_new_tokens: int = 256,
    timeout: float = 120.0,
    requester: str = "",
) -> T:
    """Ask a model actor for an answer of ``answer_type`` (constrained decoding, greedy).

    Args:
        model: the model actor.
        prompt: the question (a user message) or whole chat messages.
        answer_type: the type of the answer.
        max_new_tokens: the longest answer.
        timeout: how long to wait for the model.
        requester: who asks (the model's fairness and budgets).

    Raises:
        StructuredOutputError: the answer was cut short or did not validate.
        ModelError, AskTimeout: as for any Generate.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    request = Generate(
        messages=messages,
        max_new_tokens=max_new_tokens,
        json_schema=json.dumps(schema_of(answer_type)),
        requester=requester,
        truncate=True,
    )
    done = model.ask(request, timeout=timeout).get()
    if not isinstance(done, Completion):
        raise AgentError(f"the model answered {type(done).__name__}, not a Completion")
    if done.finish_reason == "length":
        raise StructuredOutputError(
            f"the answer ran out of tokens ({max_new_tokens}) before its JSON was complete; "
            "raise max_new_tokens or bound the strings (max_length)"
        )
    return parse_as(answer_type, done.text)


def ask_typed(
    agent: ActorRef, text: str, answer_type: type[T], *, timeout: float = 120.0, sender: str = ""
) -> T:
    """Ask a ChatAgent (local or remote) for an answer of ``answer_type``.

    Raises:
        StructuredOutputError: the answer was cut short or did not validate.
        AgentError, AskTimeout: as for any ask of the agent.
    """
    schema = json.dumps(schema_of(answer_type))
    data = agent.ask(AskTyped(text, schema, sender), timeout=timeout).get()
    return parse_as(answer_type, json.dumps(data))
