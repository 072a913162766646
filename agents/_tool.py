"""Tools: a typed Python function (or method) that a model may call, with its JSON schema.

::

    @tool
    def convert(value: float, unit_from: Literal["km", "mi"], unit_to: Literal["km", "mi"]):
        \"\"\"Convert a distance between kilometres and miles.

        Args:
            value: the distance to convert.
            unit_from: the unit it is in.
            unit_to: the unit wanted.
        \"\"\"

The schema comes from the type hints, through pydantic (a model built from the signature), and
the descriptions from the docstring's first paragraph and its ``Args:`` section. The same
pydantic model validates the arguments of every call, so a function only ever sees arguments
that fit its hints. A tool runs as an actor under the kernel (:mod:`llmos.agents._tool_actor`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, overload

import pydantic
import pydantic_core

from llmos.agents._errors import AgentError

__all__ = ["Tool", "ToolArgumentsError", "ToolError", "tool"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class ToolError(AgentError):
    """Raised (or returned to a model as an observation) when a tool call did not succeed.

    The subclasses say why; a plain ToolError means the tool's own code raised (its message
    holds the exception's type and text).
    """


class ToolArgumentsError(ToolError):
    """The arguments of a call do not fit the tool's schema (unknown tool, wrong type,
    missing field). Unlike the other tool errors, the tool did not run at all."""


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph and the ``Args:`` descriptions of a Google-style docstring."""
    text = inspect.cleandoc(doc or "")
    summary = text.split("\n\n")[0].replace("\n", " ").strip()
    args: dict[str, str] = {}
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?)+)", text, re.MULTILINE)
    if match:
        current = ""
        for line in match.group(1).splitlines():
            item = re.match(r"^\s{2,8}(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if item:
                current = item.group(1).lstrip("*")
                args[current] = item.group(2).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}"
    return summary, args


class Tool:
    """A function a model may call: its name, description, JSON schema and validator.

    Made by :func:`tool`. Calling the Tool calls the function as usual; :meth:`invoke` calls it
    with a dict of arguments validated against the schema, as a model's call arrives.

    Attributes:
        name: the tool's name (the function's, unless given).
        description: what it does (the docstring's first paragraph, unless given).
        parameters: the JSON schema of its arguments (an object schema).
        side_effects: the tool changes the world (sends, writes, pays): such a call is the kind
            a durable run must record and never repeat on replay (see ``side_effects`` in
            :func:`tool`).
        timeout: seconds a call may run before its caller gets a timeout observation.
        concurrency: how many calls may run at once in its tool actor.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = False,
        timeout: float = 30.0,
        concurrency: int = 4,
    ) -> None:
        if not callable(fn):
            raise ToolError(f"@tool needs a function, got {fn!r}")
        self.fn = fn
        chosen = name or getattr(fn, "__name__", "")
        if not isinstance(chosen, str) or not _NAME.match(chosen):
            raise ToolError(
                f"tool name {chosen!r} is not allowed; use letters, digits, _ . - (<= 64)"
            )
        self.name: str = chosen
        summary, arg_docs = _docstring_parts(getattr(fn, "__doc__", "") or "")
        self.description = description if description is not None else summary
        if not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise ToolError(f"timeout must be 0 < seconds <= 3600, got {timeout!r}")
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            raise ToolError(f"concurrency must be an int 1..256, got {concurrency!r}")
        self.side_effects = bool(side_effects)
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.arguments_model = _arguments_model(fn, self.name, arg_docs)
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        self.parameters: dict[str, Any] = schema

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """A ``@tool`` method read from an instance is a Tool bound to that instance."""
        if instance is None:
            return self
        bound = Tool.__new__(Tool)
        bound.__dict__.update(self.__dict__)
        bound.fn = self.fn.__get__(instance, owner)  # the schema (built without self) stays
        return bound

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The arguments checked and converted against the schema.

        Raises:
            ToolArgumentsError: naming each field that does not fit.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                f"tool {self.name}: arguments must be an object, got {type(arguments).__name__}"
            )
        try:
            checked = self.arguments_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolArgumentsError(f"tool {self.name}: bad arguments: {problems}") from exc
        return {k: getattr(checked, k) for k in type(checked).model_fields}

    def invoke(self, arguments: Any) -> Any:
        """Validate ``arguments`` and call the function (an async one is run to its end).

        Raises:
            ToolArgumentsError: the arguments do not fit the schema.
            Exception: whatever the function raised.
        """
        values = self.validate(arguments)
        result = self.fn(**values)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result

    def spec(self) -> dict[str, Any]:
        """The tool as a model sees it: ``{"name", "description", "parameters"}``."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _arguments_model(
    fn: Callable[..., Any], name: str, arg_docs: dict[str, str]
) -> type[pydantic.BaseModel]:
    try:
        signature = inspect.signature(fn)
        hints = _hints(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolError(f"tool {name}: cannot read its signature ({exc})") from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(f"tool {name}: *args/**kwargs cannot be described; name each one")
        if param.name in ("self", "cls"):
            continue
        if param.name not in hints:
            raise ToolError(f"tool {name}: parameter {param.name!r} has no type hint; add one")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            hints[param.name],
            pydantic.Field(default, description=arg_docs.get(param.name) or None),
        )
    config = pydantic.ConfigDict(extra="forbid")
    model: type[pydantic.BaseModel] = pydantic.create_model(
        f"{name}_arguments", __config__=config, **fields
    )
    return model


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    target = getattr(fn, "__func__", fn)
    return typing.get_type_hints(target, include_extras=True)


def result_text(value: Any) -> tuple[str, Any]:
    """A tool's return value as the text a model reads and as plain data (msgpack-able)."""
    try:
        data = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        data = str(value)
    text = value if isinstance(value, str) else json.dumps(data, ensure_ascii=False)
    return text, data


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: bool = False,
    timeout: float = 30.0,
    concurrency: int = 4,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: bool = False,
    timeout: float = 30.0,
    concurrency: int = 4,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a typed function (or method) a tool: ``@tool`` or ``@tool(timeout=5, ...)``.

    Args:
        fn: the function; every parameter needs a type hint (pydantic types it).
        name: the tool's name (default: the function's).
        description: what it does (default: the docstring's first paragraph).
        side_effects: it changes the world. A ChatAgent's call of it goes through the run's
            effect journal (``Agent.agent_effect``): in a recorded run it is performed once,
            and a resumed run gets the recorded result instead of calling it again.
        timeout: seconds a call may run before the caller gets a timeout observation.
        concurrency: how many calls may run at once in its tool actor.

    Returns:
        A :class:`Tool` (still callable like the function).

    Raises:
        ToolError: a parameter without a type hint, ``*args``, a bad name or option.
    """

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(f, name, description, side_effects, timeout, concurrency)

    return make(fn) if fn is not None else make
