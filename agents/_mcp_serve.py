"""MCP server: llmos agents offered to other MCP hosts (``llmos mcp serve``).

Each agent becomes one MCP tool, ``ask_NAME(question: str) -> str``, that asks the agent a
:class:`~llmos.agents.Prompt` and returns its answer's text. The agents may run anywhere their
refs reach (this process, a pool, another node). Built on the official ``mcp`` SDK's
``MCPServer``; served over stdio (the host starts this process) or streamable HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from llmos.actors import ActorRef
from llmos.agents._agent_messages import Describe, Prompt, Utterance
from llmos.agents._mcp import McpError, _mcp

__all__ = ["mcp_server", "serve_mcp"]


def mcp_server(agents: Mapping[str, ActorRef], timeout: float = 300.0, name: str = "llmos") -> Any:
    """An ``mcp`` SDK ``MCPServer`` with one ``ask_NAME`` tool per agent.

    Args:
        agents: the agents by the name their tool takes (letters, digits, ``_`` and ``-``).
        timeout: how long a question may wait for its agent.
        name: the server's name, as hosts show it.

    Raises:
        McpError: the SDK is missing, or a name is not usable as a tool name.
    """
    _mcp()
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name, log_level="WARNING")
    for agent_name, ref in agents.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,48}", agent_name):
            raise McpError(f"agent name {agent_name!r} cannot name an MCP tool; use [A-Za-z0-9_-]")
        try:
            description = ref.ask(Describe(), timeout=10).get().description
        except Exception:
            description = ""
        server.add_tool(
            _asker(ref, timeout),
            name=f"ask_{agent_name}",
            description=f"Ask the llmos agent {agent_name!r} a question and get its answer."
            + (f" It is: {description}." if description else ""),
        )
    return server


def _asker(ref: ActorRef, timeout: float) -> Any:
    async def ask(question: str) -> str:
        """Ask the agent; its answer's text."""
        answer = await ref.ask_async(Prompt(question, sender="mcp"), timeout=timeout)
        return answer.text if isinstance(answer, Utterance) else str(answer)

    return ask


def serve_mcp(
    agents: Mapping[str, ActorRef],
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    timeout: float = 300.0,
) -> None:
    """Serve the agents over MCP until the host disconnects (stdio) or the process ends.

    Over stdio, stdout carries the protocol: nothing else may print to it.
    """
    server = mcp_server(agents, timeout)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
