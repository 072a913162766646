"""How a model is shown its tools, asked for a call, and shown what came of it.

Two formats, chosen per model by what its chat template renders (the model actor answers
:class:`~llmos.models.GetModelInfo`; the agent never reads a tokenizer):

**The chat template's own** (``ModelInfo.tools``: Hermes, Qwen2.5, Llama 3.1, ...). The tools
go to the model as ``Generate.tools`` (``[{"type": "function", "function": {"name",
"description", "parameters"}}]``), and the template renders them as the model was trained to
read them. A decision is ``{"name": NAME, "arguments": {...}}`` (the object such templates put
inside their call wrapper, e.g. Hermes' ``<tool_call>...</tool_call>``), or ``{"name":
"none"}`` to stop, which one line appended to the system message explains::

    When no tool is needed, or you have the result, answer {"name": "none"}.

The wrapper itself is not generated: the decision is the bare JSON object, under constrained
decoding. Each call then goes back into the chat as an assistant turn with ``tool_calls`` (so
the template shows it in its own wrapper) when the template renders those, else as its JSON
text; and its result as a ``{"role": "tool", "name": NAME, "content": TEXT}`` message when
the template renders tool messages, else as a user turn ``Result of NAME -> TEXT``.

**The documented prompt format** (any other model, e.g. the default SmolLM2, whose template
has no tool support), appended to the system message::

    You can use tools. Answer with one JSON object: {"tool": NAME, "arguments": {...}} to
    call a tool, or {"tool": "none"} when no tool is needed or you have the result.
    Tools:
    - NAME: DESCRIPTION Arguments: {"field": type, ...}

Each call goes back as an assistant turn of its JSON text, and each result as a user turn
``Result of NAME -> TEXT``.

In both, each decision is generated under constrained decoding against a schema that admits
exactly one call of an offered tool with arguments valid for it, or the "none" object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmos.agents._tool_actor import ToolResult, ToolSpec
from llmos.models import ModelInfo

__all__ = ["NONE", "ToolFormat", "call_schema", "tool_format", "tools_prompt"]

NONE = "none"
NONE_HINT = 'When no tool is needed, or you have the result, answer {"name": "none"}.'


def _type_text(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "anyOf" in schema:
        return "|".join(_type_text(s) for s in schema["anyOf"])
    return str(schema.get("type", "value"))


def tools_prompt(specs: Sequence[ToolSpec]) -> str:
    """The tools in the documented prompt format (see the module docstring)."""
    lines = [
        'You can use tools. Answer with one JSON object: {"tool": NAME, "arguments": {...}} '
        'to call a tool, or {"tool": "none"} when no tool is needed or you have the result.',
        "Tools:",
    ]
    for spec in specs:
        props = spec.parameters.get("properties", {})
        args = ", ".join(f'"{k}": {_type_text(v)}' for k, v in props.items())
        lines.append(f"- {spec.name}: {spec.description} Arguments: {{{args}}}")
    return "\n".join(lines)


def call_schema(
    specs: Sequence[ToolSpec], allow_none: bool = True, key: str = "tool"
) -> dict[str, Any]:
    """The JSON schema of one decision: a call of one of the tools, or (optionally) none.

    Args:
        specs: the tools.
        allow_none: admit ``{KEY: "none"}`` (stop calling tools).
        key: the field naming the tool: "tool" (the documented prompt format) or "name"
            (the form of chat templates with tool support).
    """
    options: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for spec in specs:
        params = dict(spec.parameters)
        defs.update(params.pop("$defs", {}))
        options.append(
            {
                "type": "object",
                "properties": {key: {"const": spec.name}, "arguments": params},
                "required": [key, "arguments"],
                "additionalProperties": False,
            }
        )
    if allow_none:
        options.append(
            {
                "type": "object",
                "properties": {key: {"const": NONE}},
                "required": [key],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": options} if len(options) > 1 else options[0]
    if defs:
        schema["$defs"] = defs
    return schema


@dataclass(frozen=True)
class ToolFormat:
    """One of the two formats of the module docstring.

    Attributes:
        template: the tools are rendered by the model's chat template (else the documented
            prompt format).
        tool_calls: calls go back as assistant turns with ``tool_calls``.
        tool_role: results go back as ``tool`` messages.
    """

    template: bool = False
    tool_calls: bool = False
    tool_role: bool = False

    @property
    def key(self) -> str:
        """The field of a decision that names the tool."""
        return "name" if self.template else "tool"

    def definitions(self, specs: Sequence[ToolSpec]) -> list[dict[str, Any]] | None:
        """The tools for ``Generate.tools`` (None in the documented prompt format)."""
        if not self.template:
            return None
        return [
            {
                "type": "function",
                "function": {
                    "name": s.name,
                    "description": s.description,
                    "parameters": s.parameters,
                },
            }
            for s in specs
        ]

    def schema(self, specs: Sequence[ToolSpec], allow_none: bool) -> str:
        """The JSON text of the decision's schema."""
        return json.dumps(call_schema(specs, allow_none, self.key))

    def prompt(
        self, messages: list[dict[str, Any]], specs: Sequence[ToolSpec]
    ) -> list[dict[str, Any]]:
        """The chat with what the system message must add (the tools, or the "none" hint)."""
        added = NONE_HINT if self.template else tools_prompt(specs)
        if messages and messages[0]["role"] == "system":
            system = f"{messages[0]['content']}\n\n{added}".strip()
            return [{"role": "system", "content": system}, *messages[1:]]
        return [{"role": "system", "content": added}, *messages]

    def after_call(
        self,
        chat: list[dict[str, Any]],
        text: str,
        name: str,
        arguments: dict[str, Any],
        result: ToolResult,
    ) -> list[dict[str, Any]]:
        """The chat with the call (``text``: the model's decision) and its result added."""
        call: dict[str, Any] = {"role": "assistant", "content": text}
        if self.tool_calls:
            function = {"name": name, "arguments": arguments}
            call = {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": function}],
            }
        if self.tool_role:
            content = (
                result.content if result.ok else f"failed ({result.error_type}): {result.content}"
            )
            answer = {"role": "tool", "name": name, "content": content}
        else:
            answer = {"role": "user", "content": f"Result of {result.observation()}"}
        return [*chat, call, answer]


def tool_format(info: ModelInfo | None) -> ToolFormat:
    """The format for a model that answered ``info`` (None: it did not say)."""
    if info is None or not info.tools:
        return ToolFormat()
    return ToolFormat(True, bool(info.tool_calls), bool(info.tool_role))
