"""A small MCP server written with the official ``mcp`` SDK (used by ``tool_agent.py``).

Run on its own with ``python examples/mcp_words_server.py`` (stdio) or ``--http PORT`` (streamable
HTTP at ``http://127.0.0.1:PORT/mcp``). Tools: ``word_count`` and ``shout``.
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer

server = MCPServer("llmos-example-words", log_level="WARNING")


@server.tool()
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@server.tool()
def shout(text: str) -> str:
    """Say a text in capital letters."""
    return text.upper() + "!"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0, help="serve over HTTP on this port")
    args = parser.parse_args()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")
