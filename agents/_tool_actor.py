"""Tool actors: tools served under the kernel, with a timeout, a concurrency limit and typed
errors that come back as observations.

A :class:`ToolActor` answers :class:`ListTools` with its tools' :class:`ToolSpec` and
:class:`CallTool` with a :class:`ToolResult`, always: a call that fails, times out, is refused
or meets a crash is answered with ``ok=False`` and the error's type and text, which an agent
hands the model as what it observed. Being a plain actor, it is reached the same way locally,
in a pool or on another node (its messages are registered message classes); a node serves its
own tool actors to its peers, which ask them like any actor and cannot start new ones unless
the node's spawn allowlist says so.

Calls run in the actor's own worker threads (``llmos:tool-NAME``), at most ``concurrency`` at a
time per tool; a bounded number more wait their turn, and past that a call is refused at once
(:class:`ToolBusy`). A call still running at its timeout is answered :class:`ToolTimeout` then;
Python cannot stop a thread, so its function keeps its worker until it returns.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmos.actors import Actor, ActorError, ActorRef, Reply, handler, message
from llmos.agents._tool import Tool, ToolArgumentsError, ToolError, result_text
from llmos.kernel import Restart, default_timer, kernel

__all__ = [
    "CallTool",
    "EffectLog",
    "ListTools",
    "ToolActor",
    "ToolBusy",
    "ToolCrashed",
    "ToolResult",
    "ToolSpec",
    "ToolTimeout",
    "ToolUnavailable",
    "start_tools",
]

log = logging.getLogger("llmos.agents")


class ToolTimeout(ToolError, TimeoutError):
    """The tool did not answer within its timeout (its function may still be running)."""


class ToolBusy(ToolError):
    """The tool had ``concurrency`` calls running and its waiting line was full: try later."""


class ToolCrashed(ToolError):
    """The tool's code raised something other than a ToolError: a crash. The caller gets this
    as an observation and the kernel restarts the tool actor."""


class ToolUnavailable(ToolError):
    """The tool actor could not be reached (stopped, restarting past its limit, its node
    gone) or no tool of that name is offered."""


@message("llmos.agents.ListTools")
class ListTools:
    """Ask a tool actor which tools it serves: the answer is a list of :class:`ToolSpec`."""


@message("llmos.agents.ToolSpec")
class ToolSpec:
    """A tool as a model sees it.

    Attributes:
        name: the tool's name.
        description: what it does.
        parameters: the JSON schema of its arguments (an object schema).
        side_effects: calling it changes the world.
        timeout: seconds a call may take.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    side_effects: bool = False
    timeout: float = 30.0


@message("llmos.agents.CallTool")
class CallTool:
    """Call a tool: the answer is a :class:`ToolResult` (never an exception).

    Attributes:
        tool: the tool's name.
        arguments: its arguments (checked against its schema before it runs).
        call_id: an id echoed in the result.
        effect_key: for a side-effecting tool inside a recorded run, the key its effect is
            recorded under (run, agent, turn, call); "" when the run is not recorded.
    """

    tool: str
    arguments: dict[str, Any]
    call_id: str = ""
    effect_key: str = ""


@message("llmos.agents.ToolResult")
class ToolResult:
    """The outcome of a :class:`CallTool`.

    Attributes:
        tool: the tool's name.
        ok: True when the tool returned; False when it failed, timed out or was refused.
        content: what the model reads: the result as text (JSON for non-str values), or the
            error's text.
        data: the result as plain data (None on failure).
        error_type: the error's class name ("ToolTimeout", "ToolArgumentsError", ...), or "".
        call_id: the call's id.
        seconds: how long the call took.
    """

    tool: str
    ok: bool
    content: str
    data: Any = None
    error_type: str = ""
    call_id: str = ""
    seconds: float = 0.0

    def observation(self) -> str:
        """The line a model is shown: ``tool -> result`` or ``tool failed (Type): text``."""
        if self.ok:
            return f"{self.tool} -> {self.content}"
        return f"{self.tool} failed ({self.error_type}): {self.content}"

    def raise_for_error(self) -> Any:
        """Return ``data``, or raise the typed error the result reports."""
        if self.ok:
            return self.data
        kinds: dict[str, type[ToolError]] = {
            c.__name__: c
            for c in (ToolTimeout, ToolBusy, ToolCrashed, ToolUnavailable, ToolArgumentsError)
        }
        raise kinds.get(self.error_type, ToolError)(f"{self.tool}: {self.content}")


def failed(tool: str, error: BaseException, call_id: str = "", seconds: float = 0.0) -> ToolResult:
    """A ToolResult reporting ``error``."""
    kind = type(error).__name__ if isinstance(error, ToolError) else "ToolError"
    return ToolResult(tool, False, str(error)[:2000], None, kind, call_id, seconds)


class EffectLog(Protocol):
    """Where side-effecting calls are recorded, so a replayed run never repeats one.

    The seam for durable runs: ``once(key, call)`` returns the result recorded under ``key``
    if there is one, else records the intent, runs ``call``, records its result and returns
    it. A ToolActor given one routes each call of a ``side_effects`` tool that carries an
    ``effect_key`` through it.
    """

    def once(self, key: str, call: Callable[[], Any]) -> Any:
        """Run ``call`` at most once for ``key``; return its (recorded) result."""
        ...


@message("llmos.agents._ToolDone", local_only=True)
class _ToolDone:
    """Told by a worker to its tool actor: a call of ``tool`` ended (``crash``: it raised)."""

    tool: str
    crash: str = ""


@dataclass
class _Calls:
    """The running and waiting calls of a tool actor (carried across its restarts)."""

    executor: ThreadPoolExecutor
    running: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, deque[tuple[CallTool, Reply[Any], float]]] = field(default_factory=dict)


class ToolActor(Actor):
    """Serves tools to agents: ``ListTools`` and ``CallTool``, each answered, never raised.

    Args:
        tools: the tools (made with :func:`~llmos.agents.tool`).
        max_waiting: calls allowed to wait per tool when ``concurrency`` are running.
        effects: the durable run's effect log (see :class:`EffectLog`); None: side-effecting
            calls run directly.

    Failure contract: a tool that raises :class:`ToolError` failed as it meant to (the caller
    sees its text); any other exception is a crash: the caller gets a :class:`ToolCrashed`
    observation and the actor fails, so its supervisor (the kernel) restarts it with the calls
    still running or waiting carried over.
    """

    def __init__(
        self, tools: Sequence[Tool], max_waiting: int = 16, effects: EffectLog | None = None
    ) -> None:
        super().__init__()
        if not tools or not all(isinstance(t, Tool) for t in tools):
            raise ToolError("ToolActor needs a non-empty list of @tool functions")
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise ToolError("two tools of a ToolActor share a name; rename one")
        self.max_waiting = max_waiting
        self.effects = effects
        self.calls: _Calls | None = None

    def on_start(self) -> None:
        if self.calls is None:
            workers = sum(t.concurrency for t in self.tools.values())
            prefix = f"llmos:tool-{self.actor_name}"
            self.calls = _Calls(ThreadPoolExecutor(workers, thread_name_prefix=prefix))

    def pre_restart(self, error: BaseException) -> Any:
        return self.calls  # running calls answer through the stable ref; keep their slots

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        if isinstance(state, _Calls):
            self.calls = state
        self.on_start()

    def on_stop(self) -> None:
        if self.calls is not None:
            for line in self.calls.waiting.values():
                for call, reply, _ in line:
                    reply.set_result(failed(call.tool, ToolUnavailable("the tool stopped")))
            self.calls.executor.shutdown(wait=False, cancel_futures=True)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if not self.actor_supervised:
            self.on_stop()

    @handler(ListTools)
    def list_tools(self, _msg: ListTools) -> list[ToolSpec]:
        """The tools served here."""
        return [
            ToolSpec(t.name, t.description, t.parameters, t.side_effects, t.timeout)
            for t in self.tools.values()
        ]

    @handler(CallTool)
    def call_tool(self, msg: CallTool) -> Any:
        """Start a call (or queue it); its ToolResult comes when it ends or times out."""
        try:
            reply = self.actor_defer_reply()
        except ActorError:  # told: nobody waits for the answer
            log.warning("CallTool %s was told, not asked: not run", msg.tool)
            return None
        tool = self.tools.get(msg.tool)
        if tool is None:
            offered = ", ".join(sorted(self.tools))
            error = ToolUnavailable(f"no tool named {msg.tool!r} here; offered: {offered}")
            reply.set_result(failed(msg.tool, error, msg.call_id))
            return None
        try:
            tool.validate(msg.arguments)
        except ToolArgumentsError as exc:
            reply.set_result(failed(msg.tool, exc, msg.call_id))
            return None
        calls = self.calls
        assert calls is not None
        started = time.monotonic()
        deadline = min(tool.timeout, max(reply.deadline - time.monotonic(), 0.0))

        def time_out() -> None:
            error = ToolTimeout(f"no answer within {deadline:.3g} s (the tool's timeout)")
            reply.set_result(failed(msg.tool, error, msg.call_id, time.monotonic() - started))

        timer = default_timer().call_later(deadline, time_out)
        reply.add_done_callback(lambda _r: timer.cancel())
        if calls.running.get(tool.name, 0) < tool.concurrency:
            self._run(tool, msg, reply, started)
            return None
        line = calls.waiting[tool.name] = deque(
            w for w in calls.waiting.get(tool.name, ()) if not w[1].done()
        )
        if len(line) >= self.max_waiting:
            busy = ToolBusy(
                f"{tool.concurrency} calls running and {len(line)} waiting; try again later"
            )
            reply.set_result(failed(msg.tool, busy, msg.call_id))
            return None
        line.append((msg, reply, started))
        return None

    @handler(_ToolDone)
    def tool_done(self, msg: _ToolDone) -> None:
        """A call ended: start the next waiting one; a crash fails this actor (restart)."""
        calls = self.calls
        assert calls is not None
        calls.running[msg.tool] = max(calls.running.get(msg.tool, 1) - 1, 0)
        line = calls.waiting.get(msg.tool)
        tool = self.tools.get(msg.tool)
        while line and tool is not None and calls.running.get(msg.tool, 0) < tool.concurrency:
            call, reply, started = line.popleft()
            if not reply.done():
                self._run(tool, call, reply, started)
        if msg.crash:
            raise ToolCrashed(f"tool {msg.tool} crashed: {msg.crash}")

    def _run(self, tool: Tool, msg: CallTool, reply: Reply[Any], started: float) -> None:
        calls = self.calls
        assert calls is not None
        calls.running[tool.name] = calls.running.get(tool.name, 0) + 1
        me, effects = self.actor_ref, self.effects
        calls.executor.submit(_work, tool, msg, reply, started, me, effects)


def _work(
    tool: Tool,
    msg: CallTool,
    reply: Reply[Any],
    started: float,
    me: ActorRef,
    effects: EffectLog | None,
) -> None:
    """One call, in a worker thread: tell the actor it ended, then answer the reply.

    In that order, so whatever the caller sends once it has the answer queues behind the end
    of this call: its slot is free again, and after a crash the restarted actor takes it.
    """
    crash = ""
    result: ToolResult | None = None
    try:
        if reply.done():  # timed out while waiting: never started (at most once)
            return
        if tool.side_effects and effects is not None and msg.effect_key:
            value = effects.once(msg.effect_key, lambda: tool.invoke(msg.arguments))
        else:
            value = tool.invoke(msg.arguments)
        text, data = result_text(value)
        seconds = time.monotonic() - started
        result = ToolResult(tool.name, True, text, data, "", msg.call_id, seconds)
    except ToolError as exc:
        result = failed(tool.name, exc, msg.call_id, time.monotonic() - started)
    except BaseException as exc:  # a crash: answered, and the actor restarts
        crash = f"{type(exc).__name__}: {exc}"
        result = failed(tool.name, ToolCrashed(crash), msg.call_id, time.monotonic() - started)
    finally:
        try:
            me.tell(_ToolDone(tool.name, crash))
        except ActorError:
            pass  # the actor stopped meanwhile: nothing waits for the slot
        finally:
            if result is not None:
                reply.set_result(result)


def start_tools(
    *tools: Tool,
    name: str | None = None,
    restart: Restart = "permanent",
    effects: EffectLog | None = None,
) -> ActorRef:
    """Start a :class:`ToolActor` for ``tools`` under this node's kernel.

    Args:
        *tools: the tools it serves.
        name: its name (default: ``tools.`` and the first tool's name).
        restart: its restart policy.
        effects: the effect log for side-effecting tools (see :class:`EffectLog`).

    Returns:
        Its stable ref.
    """
    if not tools:
        raise ToolError("start_tools needs at least one tool")
    return kernel().spawn(
        ToolActor,
        list(tools),
        name=name or f"tools.{tools[0].name}",
        restart=restart,
        effects=effects,
    )
