"""MCP client: an MCP server's tools served to agents as a tool actor.

::

    fs = kernel().spawn(McpTools, command=["python", "my_server.py"], name="mcp.files")
    agent = ChatAgent.start(model, "...", tools=[fs])

:class:`McpTools` connects to one MCP server with the official ``mcp`` SDK, over stdio (it
starts the server's process) or streamable HTTP (a URL), and answers :class:`ListTools` and
:class:`CallTool` like any tool actor: the server's tools with their input schemas, calls
checked against them, and every failure (a tool error, a timeout, a lost server) returned as a
:class:`ToolResult` observation. It asks the server for its tools every ``check_seconds``:
when the server is gone (its stdio process died, its HTTP endpoint stopped answering) the
actor fails, and its supervisor (the kernel) restarts it, which starts a fresh server process
and reconnects.

The SDK is asyncio code: each McpTools runs it in one thread of its own (``llmos:mcp-NAME``)
and hands calls over with ``asyncio.run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from llmos.actors import Actor, ActorError, handler, message
from llmos.agents._tool import ToolArgumentsError, ToolError
from llmos.agents._tool_actor import (
    CallTool,
    ListTools,
    ToolCrashed,
    ToolResult,
    ToolSpec,
    ToolTimeout,
    ToolUnavailable,
    failed,
)

__all__ = ["McpError", "McpTools"]

log = logging.getLogger("llmos.agents")


class McpError(ToolUnavailable):
    """The MCP server could not be started, reached, or stopped answering (its process died,
    its endpoint went away). The tool actor fails with it and its supervisor restarts it."""


@message("llmos.agents._McpLost", local_only=True)
class _McpLost:
    """Told by the connection thread to its actor: the server is gone."""

    reason: str


def _closed_code() -> int:
    from mcp_types import CONNECTION_CLOSED

    return int(CONNECTION_CLOSED)


def _mcp() -> Any:
    try:
        import mcp
    except ImportError as exc:
        raise McpError("the MCP client needs the mcp SDK; pip install 'llmos[tools]'") from exc
    return mcp


class _Connection:
    """One MCP session in its own thread and event loop (protocol glue, no actor logic)."""

    def __init__(self, name: str, target: Any, check_seconds: float, on_lost: Any) -> None:
        self.target = target
        self.check_seconds = check_seconds
        self.on_lost = on_lost
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.client: Any = None
        self.tools: list[Any] = []
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name=f"llmos:mcp-{name}", daemon=True)

    def start(self, timeout: float) -> None:
        self.thread.start()
        if not self.ready.wait(timeout):
            self.close()
            raise McpError(f"the MCP server did not answer within {timeout:g} s")
        if self.error is not None:
            self.close()
            raise McpError(
                f"could not connect to the MCP server: {type(self.error).__name__}: {self.error}"
            ) from self.error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._session())
        finally:
            self.loop.close()

    async def _session(self) -> None:
        self._stop = asyncio.Event()
        lost = ""
        try:
            async with _mcp().Client(self.target) as client:
                self.tools = list((await client.list_tools()).tools)
                self.client = client
                self.ready.set()
                while not self._stop.is_set():
                    try:
                        await asyncio.wait_for(self._stop.wait(), self.check_seconds)
                    except TimeoutError:
                        await self._check(client)
        except BaseException as exc:
            if not self.ready.is_set():
                self.error = exc
            elif not self._stop.is_set():
                while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                    exc = exc.exceptions[0]
                lost = f"{type(exc).__name__}: {exc}"
        finally:
            self.client = None
            self.ready.set()
        if lost or not self._stop.is_set():
            self.on_lost(lost or "the server closed the session")

    async def _check(self, client: Any) -> None:
        """Ask the server something cheap; raise only when the connection is gone.

        A server busy past the bound, or one that refuses the request, is alive: only a
        closed connection (a dead process, a gone endpoint) counts as lost.
        """
        try:
            await asyncio.wait_for(client.list_tools(cache_mode="bypass"), self.check_seconds * 5)
        except TimeoutError:
            return
        except _mcp().MCPError as exc:
            if exc.error.code == _closed_code():
                raise
            return

    def call(self, name: str, arguments: dict[str, Any], timeout: float) -> Future[Any]:
        client = self.client
        if client is None:
            raise McpError("the MCP server is not connected")
        coro = asyncio.wait_for(client.call_tool(name, arguments), timeout)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        stop = self._stop
        if stop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # the loop closed meanwhile
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(10.0)


class McpTools(Actor):
    """A tool actor for the tools of one MCP server (stdio or streamable HTTP).

    Args:
        command: the server's command line (stdio): it is started as a child process.
        url: the server's streamable HTTP endpoint (``http://127.0.0.1:8000/mcp``), instead.
        env: environment variables for a stdio server (default: the SDK's safe defaults).
        timeout: seconds a call may take before its caller gets a ToolTimeout observation.
        connect_timeout: seconds to start and initialize the server.
        check_seconds: how often the server is asked for its tools, to notice that it is gone
            (MCP's ping is gone from the 2026-07-28 protocol).

    Failure contract: a call that fails is answered with an observation; the actor itself
    fails (and its supervisor restarts it, reconnecting) when the server cannot be started or
    is lost. Calls in flight when it is lost are answered ToolUnavailable.
    """

    def __init__(
        self,
        command: Sequence[str] | None = None,
        url: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 30.0,
        check_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        if (command is None) == (url is None):
            raise McpError("give exactly one of command= (stdio) or url= (streamable HTTP)")
        if command is not None and (isinstance(command, str) or not command):
            raise McpError(f"command must be a non-empty list of strings, got {command!r}")
        self.command = list(command) if command is not None else None
        self.url = url
        self.env = env
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.check_seconds = check_seconds
        self.connection: _Connection | None = None
        self.specs: dict[str, ToolSpec] = {}

    def _target(self) -> Any:
        if self.url is not None:
            return self.url
        assert self.command is not None
        params = _mcp().StdioServerParameters
        return params(command=self.command[0], args=self.command[1:], env=self.env)

    def on_start(self) -> None:
        me = self.actor_ref

        def lost(reason: str) -> None:
            try:
                me.tell(_McpLost(reason))
            except ActorError:
                pass  # stopped meanwhile

        connection = _Connection(self.actor_name, self._target(), self.check_seconds, lost)
        connection.start(self.connect_timeout)
        self.connection = connection
        self.specs = {
            t.name: ToolSpec(t.name, t.description or "", dict(t.input_schema), False, self.timeout)
            for t in connection.tools
        }

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def on_stop(self) -> None:
        self._close()

    def pre_restart(self, error: BaseException) -> Any:
        self._close()  # the old server process ends with its session
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if not self.actor_supervised:
            self._close()

    @handler(_McpLost)
    def server_lost(self, msg: _McpLost) -> None:
        """The server is gone: fail, so the supervisor restarts this actor (reconnecting)."""
        raise McpError(f"the MCP server was lost ({msg.reason}); restarting")

    @handler(ListTools)
    def list_tools(self, _msg: ListTools) -> list[ToolSpec]:
        """The server's tools (as listed when it connected)."""
        return list(self.specs.values())

    @handler(CallTool)
    def call_tool(self, msg: CallTool) -> Any:
        """Call the server's tool; the ToolResult comes when it answers or times out."""
        try:
            reply = self.actor_defer_reply()
        except ActorError:
            log.warning("CallTool %s was told, not asked: not run", msg.tool)
            return None
        spec = self.specs.get(msg.tool)
        started = time.monotonic()
        try:
            if spec is None:
                raise ToolUnavailable(f"no tool named {msg.tool!r}; offered: {sorted(self.specs)}")
            _check_arguments(spec, msg.arguments)
            assert self.connection is not None
            future = self.connection.call(msg.tool, dict(msg.arguments), self.timeout)
        except ToolError as exc:
            reply.set_result(failed(msg.tool, exc, msg.call_id))
            return None

        def done(f: Future[Any]) -> None:
            seconds = time.monotonic() - started
            try:
                result = f.result()
            except TimeoutError:
                error: ToolError = ToolTimeout(f"no answer within {self.timeout:g} s")
                reply.set_result(failed(msg.tool, error, msg.call_id, seconds))
                return
            except BaseException as exc:
                error = ToolUnavailable(f"the call failed: {type(exc).__name__}: {exc}")
                reply.set_result(failed(msg.tool, error, msg.call_id, seconds))
                return
            reply.set_result(_result(msg, result, seconds))

        future.add_done_callback(done)
        return None


def _check_arguments(spec: ToolSpec, arguments: Any) -> None:
    import jsonschema

    try:
        jsonschema.validate(arguments, spec.parameters)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(arguments)"
        raise ToolArgumentsError(
            f"tool {spec.name}: bad arguments: {where}: {exc.message}"
        ) from None
    except jsonschema.SchemaError as exc:
        raise ToolCrashed(f"tool {spec.name} has an invalid input schema: {exc.message}") from None


def _result(msg: CallTool, result: Any, seconds: float) -> ToolResult:
    texts = [getattr(c, "text", "") for c in getattr(result, "content", []) or []]
    text = "\n".join(t for t in texts if t)
    data = getattr(result, "structured_content", None)
    if getattr(result, "is_error", False):
        return ToolResult(msg.tool, False, text[:2000], None, "ToolError", msg.call_id, seconds)
    return ToolResult(
        msg.tool, True, text, data if data is not None else text, "", msg.call_id, seconds
    )
