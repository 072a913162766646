"""Tool calling: the tools an agent may use, and the bounded loop that lets a model call them.

:class:`ToolBox` gathers tools from tool actors (local, pooled or remote refs, or names) and
calls them; whatever goes wrong comes back as a :class:`~llmos.agents.ToolResult` with
``ok=False``, never as an exception.

:class:`ToolLoop` lets a model call tools before it answers. The model is shown the tools
through its chat template's tool support where it has one, otherwise in a documented prompt
format (both in ``llmos.agents._tool_prompt``), and each decision is generated under
constrained decoding against a schema that admits exactly one of: a call of one of the tools
whose arguments fit that tool's schema, or "none" (done). So every call parses and validates,
even from a 135M model. The loop is bounded by a number of calls and a wall-clock budget, and
a call repeated with the same arguments ends it (the model is looping).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmos.actors import (
    ActorDeadError,
    ActorError,
    ActorRef,
    AskTimeout,
    LlmosError,
    message_fields,
)
from llmos.agents._tool import Tool, ToolError
from llmos.agents._tool_actor import (
    CallTool,
    ListTools,
    ToolResult,
    ToolSpec,
    ToolTimeout,
    ToolUnavailable,
    failed,
    start_tools,
)
from llmos.agents._tool_prompt import NONE, ToolFormat, tool_format
from llmos.kernel import kernel
from llmos.models import Completion, Generate, GetModelInfo, ModelInfo

__all__ = ["ToolBox", "ToolCallRecord", "ToolLoop", "ToolLoopResult"]

#: ``effect(name, args, fn)``: performs ``fn(args, key)`` at most once per run (see
#: ``Agent.agent_effect``) and returns its (recorded) result.
EffectRunner = Callable[[str, Mapping[str, Any], Callable[[dict[str, Any], str], Any]], Any]


class ToolBox:
    """The tools an agent may call, wherever their actors live.

    Args:
        sources: tool actors' refs (local, pool, remote), names of running tool actors, or
            :class:`~llmos.agents.Tool` objects (started under the kernel as
            ``tools.NAME`` unless an actor of that name already runs).
        timeout: how long to wait for a tool actor to list its tools.

    Raises:
        ToolError: a source of another kind, or two tools with one name.
    """

    def __init__(self, sources: Sequence[Tool | ActorRef | str], timeout: float = 30.0) -> None:
        self.sources = list(sources)
        for s in self.sources:
            if not isinstance(s, Tool | ActorRef | str):
                raise ToolError(f"a tool source is a Tool, a tool actor's ref or name; got {s!r}")
        self.timeout = timeout
        self._specs: dict[str, tuple[ActorRef, ToolSpec]] | None = None

    def _refs(self) -> list[ActorRef]:
        refs: list[ActorRef] = []
        for s in self.sources:
            if isinstance(s, ActorRef):
                refs.append(s)
            elif isinstance(s, str):
                refs.append(kernel().lookup(s))
            else:
                try:
                    refs.append(kernel().lookup(f"tools.{s.name}"))
                except LlmosError:
                    refs.append(start_tools(s))
        return refs

    def specs(self) -> list[ToolSpec]:
        """The tools offered (asked of their actors once, then kept; see :meth:`refresh`).

        Raises:
            ToolUnavailable: a tool actor did not answer.
        """
        if self._specs is None:
            found: dict[str, tuple[ActorRef, ToolSpec]] = {}
            for ref in self._refs():
                try:
                    listed = ref.ask(ListTools(), timeout=self.timeout).get()
                except LlmosError as exc:
                    raise ToolUnavailable(
                        f"tool actor {ref!r} did not list its tools: {exc}"
                    ) from exc
                for spec in listed:
                    if spec.name in found or spec.name == NONE:
                        raise ToolError(f"two tools are named {spec.name!r}; rename one")
                    found[spec.name] = (ref, spec)
            self._specs = found
        return [spec for _ref, spec in self._specs.values()]

    def refresh(self) -> None:
        """Forget the listed tools; the next call asks the tool actors again."""
        self._specs = None

    def call(
        self, name: str, arguments: dict[str, Any], call_id: str = "", effect_key: str = ""
    ) -> ToolResult:
        """Call a tool and wait for it (at most its timeout plus a little); never raises.

        Returns:
            Its :class:`~llmos.agents.ToolResult`; ``ok=False`` with ``ToolUnavailable`` when
            no such tool is offered or its actor cannot be reached, ``ToolTimeout`` when it
            did not answer in time.
        """
        try:
            self.specs()
            assert self._specs is not None
            found = self._specs.get(name)
            if found is None:
                raise ToolUnavailable(f"no tool named {name!r}; offered: {sorted(self._specs)}")
            ref, spec = found
            msg = CallTool(name, arguments, call_id, effect_key)
            answer = ref.ask(msg, timeout=spec.timeout + 5.0).get()
        except AskTimeout as exc:
            return failed(name, ToolTimeout(f"its actor did not answer: {exc}"), call_id)
        except ToolError as exc:
            return failed(name, exc, call_id)
        except LlmosError as exc:
            return failed(name, ToolUnavailable(f"{type(exc).__name__}: {exc}"), call_id)
        if not isinstance(answer, ToolResult):
            return failed(name, ToolError(f"the tool actor answered {answer!r}"), call_id)
        return answer


@dataclass(frozen=True)
class ToolCallRecord:
    """One decision of the loop and what came of it.

    Attributes:
        tool: the tool called ("none" when the model chose to stop).
        arguments: its arguments.
        result: the tool's result (None for "none" and for a refused repeat).
        text: the model's raw decision (compact JSON).
    """

    tool: str
    arguments: dict[str, Any]
    result: ToolResult | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for a message)."""
        r = self.result
        return {
            "tool": self.tool,
            "arguments": self.arguments,
            "ok": r.ok if r is not None else None,
            "content": r.content if r is not None else "",
            "error_type": r.error_type if r is not None else "",
        }


@dataclass
class ToolLoopResult:
    """What a :class:`ToolLoop` run did: its calls, and why it stopped."""

    calls: list[ToolCallRecord] = field(default_factory=list)
    stopped_by: str = ""  # "none", "max_calls", "time", "repeat", "model"

    def context(self) -> str:
        """The tool results as text for the answer (empty when no tool ran)."""
        lines = [c.result.observation() for c in self.calls if c.result is not None]
        return "Tool results:\n" + "\n".join(lines) if lines else ""


class ToolLoop:
    """Lets a model call tools, under constrained decoding, within bounds.

    Args:
        box: the tools.
        max_calls: the most tool calls in one run.
        seconds: the wall-clock budget of one run (model time included).
        max_new_tokens: the longest decision.
        model_timeout: how long to wait for each decision.
        tool_choice: "auto" (the model may decide to call nothing) or "required" (the first
            decision must be a call: for a small model that would otherwise not call tools).
        prompt_format: "auto" (the model's chat template shows the tools where it supports
            them, asked of the model with :class:`~llmos.models.GetModelInfo`; a model actor
            that does not answer that gets the documented format) or "prompt" (always the
            documented prompt format).
    """

    def __init__(
        self,
        box: ToolBox,
        max_calls: int = 3,
        seconds: float = 120.0,
        max_new_tokens: int = 96,
        model_timeout: float = 120.0,
        tool_choice: Literal["auto", "required"] = "auto",
        prompt_format: Literal["auto", "prompt"] = "auto",
    ) -> None:
        if prompt_format not in ("auto", "prompt"):
            raise ToolError(f"prompt_format must be 'auto' or 'prompt', got {prompt_format!r}")
        self.prompt_format = prompt_format
        if tool_choice not in ("auto", "required"):
            raise ToolError(f"tool_choice must be 'auto' or 'required', got {tool_choice!r}")
        self.tool_choice = tool_choice
        if not isinstance(max_calls, int) or max_calls < 1:
            raise ToolError(f"max_calls must be an int >= 1, got {max_calls!r}")
        self.box = box
        self.max_calls = max_calls
        self.seconds = seconds
        self.max_new_tokens = max_new_tokens
        self.model_timeout = model_timeout

    def run(
        self,
        model: ActorRef,
        messages: list[dict[str, Any]],
        requester: str = "",
        ask: Callable[[ActorRef, Any, float], Any] | None = None,
        effect: EffectRunner | None = None,
    ) -> ToolLoopResult:
        """Let the model decide and call tools until it says none, or a bound is reached.

        Args:
            model: the model actor.
            messages: the conversation (a system message first, if any); the tools' prompt
                (or, through the chat template, the "none" hint) is added to its system
                message.
            requester: who asks the model (for its fairness and budgets).
            ask: how to ask the model (default: ``ref.ask(msg, timeout).get()``): its
                :class:`~llmos.models.GetModelInfo`, then each decision.
            effect: how a call of a ``side_effects`` tool is performed exactly once (an
                agent passes its ``agent_effect``: in a recorded run the call goes through the
                run's effect journal, keyed by run, agent, turn and arguments, and a resumed
                run gets the recorded result instead of calling again). None: called directly.

        Raises:
            ModelError, AskTimeout: the model failed or did not answer in time.
        """
        specs = self.box.specs()
        out = ToolLoopResult()
        if not specs:
            out.stopped_by = "none"
            return out
        started = time.monotonic()
        asker = ask or (lambda ref, msg, timeout: ref.ask(msg, timeout=timeout).get())
        fmt = self._format(model, asker)
        schema = fmt.schema(specs, allow_none=True)
        first = fmt.schema(specs, allow_none=self.tool_choice == "auto")
        tools = fmt.definitions(specs)
        chat = fmt.prompt(messages, specs)
        seen: set[str] = set()
        while True:
            if len(out.calls) >= self.max_calls:
                out.stopped_by = "max_calls"
                return out
            left = self.seconds - (time.monotonic() - started)
            if left <= 0:
                out.stopped_by = "time"
                return out
            request = Generate(
                messages=chat,
                max_new_tokens=self.max_new_tokens,
                temperature=0.0,
                truncate=True,
                requester=requester,
                json_schema=first if not out.calls else schema,
                tools=tools,
            )
            done = asker(model, request, min(self.model_timeout, left))
            if not isinstance(done, Completion):
                raise ToolError(f"the model answered {type(done).__name__}, not a Completion")
            try:
                decision = json.loads(done.text)
            except ValueError:  # out of tokens mid-object: the only way it cannot parse
                out.stopped_by = "model"
                return out
            name = decision.get(fmt.key, NONE)
            arguments = decision.get("arguments", {})
            if name == NONE:
                out.stopped_by = "none"
                return out
            key = json.dumps([name, arguments], sort_keys=True)
            if key in seen:
                out.calls.append(ToolCallRecord(name, arguments, None, done.text))
                out.stopped_by = "repeat"
                return out
            seen.add(key)
            result = self._call(name, arguments, f"call-{len(out.calls) + 1}", effect)
            out.calls.append(ToolCallRecord(name, arguments, result, done.text))
            chat = fmt.after_call(chat, done.text, name, arguments, result)

    def _format(self, model: ActorRef, asker: Callable[[ActorRef, Any, float], Any]) -> ToolFormat:
        """How this model is shown tools: through its chat template when it supports them."""
        if self.prompt_format == "prompt":
            return ToolFormat()
        try:
            info = asker(model, GetModelInfo(), min(self.model_timeout, 30.0))
        except (AskTimeout, ActorDeadError):
            raise
        except ActorError:  # a model actor that has no handler for GetModelInfo
            return ToolFormat()
        return tool_format(info if isinstance(info, ModelInfo) else None)

    def _call(
        self, name: str, arguments: dict[str, Any], call_id: str, effect: EffectRunner | None
    ) -> ToolResult:
        spec = next((s for s in self.box.specs() if s.name == name), None)
        if effect is None or spec is None or not spec.side_effects:
            return self.box.call(name, arguments, call_id=call_id)

        def perform(args: dict[str, Any], key: str) -> dict[str, Any]:
            return message_fields(self.box.call(name, args, call_id=call_id, effect_key=key))

        return _recorded(name, effect(f"tool:{name}", arguments, perform), call_id)


def _recorded(name: str, value: Any, call_id: str) -> ToolResult:
    """The ToolResult of a journaled call: as recorded, or, for an effect in doubt that was
    decided by hand (``llmos effects ... --done KEY [--result JSON]``), a success whose
    content is the given result (or says that none was given)."""
    if isinstance(value, Mapping):
        try:
            return ToolResult(**value)
        except TypeError:
            pass
    text = (
        "done (recorded by hand, no result given)"
        if value is None
        else json.dumps(value, default=str)
    )
    return ToolResult(name, True, text, value, "", call_id)
