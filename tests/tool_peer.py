"""A second llmos node that serves tools (for the remote tool test).

Run as ``python tests/tool_peer.py --bind tcp://127.0.0.1:0``: it starts a Node and a tool
actor ``tools.shout`` under its own kernel, prints the node's address on one line, and serves
until its stdin closes. Peers may ask the tool actor; they may spawn nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from llmos.actors import stop_all
from llmos.agents import start_tools, tool
from llmos.transport import Node


@tool
def shout(text: str, times: int = 1) -> str:
    """Say a text in capitals, on the node that serves this tool.

    Args:
        text: what to say.
        times: how many times.
    """
    return " ".join([text.upper()] * times) + f" (pid {os.getpid()})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="tcp://127.0.0.1:0")
    args = parser.parse_args()
    node = Node(args.bind, name="tool-peer")
    start_tools(shout)
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(node.address, flush=True)
    while not done.wait(1.0):
        pass
    node.close()
    stop_all(timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
