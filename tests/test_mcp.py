"""MCP: the client against real MCP server processes (stdio and streamable HTTP, the server
killed and restarted by the kernel), and an MCP client of the SDK asking ``llmos mcp serve``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.agents import McpTools, ToolBox, ToolResult, ToolUnavailable
from llmos.kernel import kernel

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def until_ok(box: ToolBox, tool: str, arguments: dict[str, object], within: float) -> ToolResult:
    """Call until the call succeeds (each call bounded), at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = box.call(tool, arguments)
        if result.ok or time.monotonic() > deadline:
            return result


def test_an_mcp_servers_tools_over_stdio_and_a_killed_server_restarted_by_the_kernel() -> None:
    ref = kernel().spawn(McpTools, command=[sys.executable, SERVER], name="mcp.test", timeout=2)
    box = ToolBox([ref], timeout=60)
    assert sorted(s.name for s in box.specs()) == ["add", "fail", "nap", "pid"]
    add = next(s for s in box.specs() if s.name == "add")
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert box.call("add", {"a": 2, "b": 3}).data == {"result": 5}
    bad = box.call("add", {"a": "two", "b": 3})
    assert not bad.ok and bad.error_type == "ToolArgumentsError" and "a:" in bad.content
    failed = box.call("fail", {"reason": "because"})
    assert not failed.ok and failed.error_type == "ToolError" and "because" in failed.content
    slow = box.call("nap", {"seconds": 10})
    assert not slow.ok and slow.error_type == "ToolTimeout"
    first = box.call("pid", {}).data
    assert isinstance(first, dict)
    restarts = kernel().stats().restarts
    os.kill(first["result"], signal.SIGKILL)
    # The agent's calls meanwhile are observations, never exceptions; then a new server.
    after = until_ok(box, "pid", {}, within=60)
    assert after.ok and isinstance(after.data, dict) and after.data["result"] != first["result"]
    assert kernel().stats().restarts > restarts
    assert box.call("add", {"a": 1, "b": 1}).data == {"result": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # bounded wait for the port to accept connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no HTTP server"
                time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_an_mcp_servers_tools_over_streamable_http() -> None:
    port = free_port()
    with http_server(port) as proc:
        url = f"http://127.0.0.1:{port}/mcp"
        ref = kernel().spawn(McpTools, url=url, name="mcp.http")
        box = ToolBox([ref], timeout=60)
        assert box.call("add", {"a": 20, "b": 22}).data == {"result": 42}
        assert box.call("pid", {}).data == {"result": proc.pid}


def test_an_mcp_client_asks_an_llmos_agent_served_by_llmos_mcp_serve() -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "llmos.cli",
            "mcp",
            "serve",
            "--fake",
            "--agent",
            "echo=You repeat what you hear.",
            "--agent",
            "sage=You are wise.",
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    async def session() -> tuple[list[str], str, bool, bool]:
        async with Client(params) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            answer = await client.call_tool("ask_echo", {"question": "Are tools actors?"})
            text = "".join(getattr(c, "text", "") for c in answer.content)
            bad = await client.call_tool("ask_echo", {})
            return tools, text, answer.is_error, bad.is_error

    tools, text, failed, refused = asyncio.run(asyncio.wait_for(session(), 90))
    assert tools == ["ask_echo", "ask_sage"]
    assert not failed and text and "Error" not in text  # the agent's answer (fake model)
    assert refused  # a call without its question is an MCP error, not a crash


@pytest.mark.parametrize("case", ["missing", "both"])
def test_bad_mcp_targets_are_refused_with_a_typed_error(case: str) -> None:
    from llmos.agents import McpError

    if case == "missing":  # a command that is no MCP server: the actor cannot start
        ref = kernel().spawn(
            McpTools, command=[sys.executable, "-c", "pass"], restart="temporary", name="nope"
        )
        with pytest.raises(ToolUnavailable, match="nope"):
            ToolBox([ref]).specs()
        gone = ToolBox([ref]).call("add", {})
        assert not gone.ok and gone.error_type == "ToolUnavailable"
    else:
        with pytest.raises(McpError, match="exactly one"):
            kernel().spawn(McpTools, command=["x"], url="http://127.0.0.1:1/mcp")


def test_llmos_mcp_serve_over_http_reached_by_the_llmos_mcp_client() -> None:
    port = free_port()
    command = ["mcp", "serve", "--fake", "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmos.cli", *command, "--agent", "echo=You repeat what you hear."],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # bounded wait for the port to accept connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no llmos server"
                time.sleep(0.05)
        ref = kernel().spawn(McpTools, url=f"http://127.0.0.1:{port}/mcp", name="mcp.llmos")
        box = ToolBox([ref], timeout=60)
        assert [s.name for s in box.specs()] == ["ask_echo"]
        answer = box.call("ask_echo", {"question": "Do actors call tools?"})
        assert answer.ok and answer.content
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
