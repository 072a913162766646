"""A small MCP server written with the official SDK, for the MCP client tests.

``python tests/mcp_server.py`` serves over stdio; ``python tests/mcp_server.py --http PORT``
over streamable HTTP at ``http://127.0.0.1:PORT/mcp``. Tools: ``add``, ``pid`` (which process
answers), ``fail`` (a tool error), ``nap`` (sleeps).
"""

from __future__ import annotations

import argparse
import os
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("llmos-test-server", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def pid() -> int:
    """The id of the server's process."""
    return os.getpid()


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
def nap(seconds: float) -> str:
    """Sleep a while, then answer."""
    time.sleep(seconds)
    return "rested"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0)
    args = parser.parse_args()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")
