"""Tools in chat templates: what a model's template can render, and the checks of tool fields.

A chat template with tool support (Hermes, Qwen2.5, Llama 3.1, ...) renders a list of tool
definitions (``apply_chat_template(messages, tools=[...])``), an assistant turn that calls
tools (``{"role": "assistant", "content": "", "tool_calls": [...]}``) and a tool's result
(``{"role": "tool", "content": ...}``), each in its own form. Which of these a template
handles is found by rendering small probes with it (:func:`chat_features`), not by reading
its source: a template may mention ``tools`` and ignore them.

The fields a request may carry:

- ``tools``: ``[{"type": "function", "function": {"name", "description", "parameters"}}]``
  (``parameters`` a JSON schema), the form transformers and the templates expect;
- an assistant message's ``tool_calls``: ``[{"type": "function", "function": {"name": str,
  "arguments": {...}}}]`` (arguments as an object, as the templates render them);
- a ``tool`` message: ``content`` (the result as text) and optionally ``name`` (the tool's).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from ._errors import ModelError

__all__ = ["ChatFeatures", "chat_features", "check_tool_fields", "check_tools"]

#: The most characters the tools of one request may take as JSON.
MAX_TOOLS_CHARS = 64_000

_PROBE = "llmos_probe_tool"
_PROBE_RESULT = "llmos_probe_result_4711"
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": _PROBE,
        "description": "A probe.",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
    },
}
_PROBE_CALL = {"type": "function", "function": {"name": _PROBE, "arguments": {"x": 1}}}


@dataclass(frozen=True)
class ChatFeatures:
    """What a chat template renders.

    Attributes:
        template: there is a chat template at all.
        tools: it renders the tool definitions given as ``tools=``.
        tool_calls: it renders an assistant message's ``tool_calls``.
        tool_role: it renders ``tool`` messages (only looked for when ``tools`` holds).
    """

    template: bool = False
    tools: bool = False
    tool_calls: bool = False
    tool_role: bool = False


def chat_features(tokenizer: Any, template: str | None = None) -> ChatFeatures:
    """Find what ``template`` (default: the tokenizer's own) renders, by rendering probes.

    A template that raises on a probe does not support what the probe holds.
    """
    if not (template or getattr(tokenizer, "chat_template", None)):
        return ChatFeatures()
    user = {"role": "user", "content": "hi"}

    def renders(messages: list[dict[str, Any]], needle: str, **kwargs: Any) -> bool:
        try:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, chat_template=template, **kwargs
            )
        except Exception:  # the template refuses the probe: no support for it
            return False
        return isinstance(text, str) and needle in text

    tools = renders([user], _PROBE, tools=[_PROBE_TOOL], add_generation_prompt=True)
    if not tools:
        return ChatFeatures(template=True)
    called = {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL]}
    tool_calls = renders([user, called], _PROBE, tools=[_PROBE_TOOL])
    result = {"role": "tool", "name": _PROBE, "content": _PROBE_RESULT}
    tool_role = renders([user, called, result], _PROBE_RESULT, tools=[_PROBE_TOOL])
    return ChatFeatures(True, True, tool_calls, tool_role)


def check_tools(tools: Any) -> list[dict[str, Any]]:
    """A copy of a request's ``tools`` once they passed the checks (see the module docstring).

    Raises:
        ModelError: they are not a non-empty list of function definitions with names.
    """
    if not isinstance(tools, list | tuple) or not tools:
        raise ModelError(
            f"tools must be a non-empty list of tool definitions, got {type(tools).__name__}; "
            'pass [{"type": "function", "function": {"name": ..., "parameters": {...}}}]'
        )
    for i, t in enumerate(tools):
        function = t.get("function") if isinstance(t, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ModelError(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': str, ...}}}}, "
                f"got {t!r:.200}"
            )
    try:
        size = len(json.dumps(tools))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"tools must be plain JSON data ({exc})") from exc
    if size > MAX_TOOLS_CHARS:
        raise ModelError(f"tools take {size} characters as JSON, over {MAX_TOOLS_CHARS}")
    return copy.deepcopy(list(tools))


def check_tool_fields(i: int, message: dict[str, Any], copied: dict[str, Any]) -> None:
    """Check a message's tool fields and copy them into ``copied``.

    Raises:
        ModelError: ``tool_calls`` outside an assistant message or malformed, or ``name``
            outside a tool message.
    """
    role = message.get("role")
    if "tool_calls" in message:
        calls = message["tool_calls"]
        if role != "assistant" or not isinstance(calls, list | tuple) or not calls:
            raise ModelError(
                f"messages[{i}]: tool_calls belong to an assistant message, as a non-empty list"
            )
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ModelError(
                    f"messages[{i}]: each tool call is {{'type': 'function', 'function': "
                    f"{{'name': str, 'arguments': {{...}}}}}}, got {call!r:.200}"
                )
        copied["tool_calls"] = copy.deepcopy(list(calls))
    if "name" in message:
        if role != "tool" or not isinstance(message["name"], str):
            raise ModelError(f"messages[{i}]: name (a str) belongs to a tool message")
        copied["name"] = message["name"]
