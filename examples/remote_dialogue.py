"""A dialogue whose model runs on another node: the agents here, the model in a second process.

Run it with ``python examples/remote_dialogue.py [--fake] [--turns N] [--max-tokens N]``.
It starts ``llmos node`` as a second process, has that node's kernel spawn the model actor
(supervised there), and runs two chat agents here that reach the model through a remote ref,
exactly as they would reach a local one. ``--fake`` uses the deterministic fake model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import llmos.actors as actors
from llmos.agents import ChatAgent, Dialogue, MaxTurns, Repetition, run_chat, spawn
from llmos.transport import Node


def start_model_node(model_class: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``llmos node`` allowed to spawn ``model_class``; return it and its address."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmos.cli",
            "node",
            "--name",
            "model-node",
            "--allow-spawn",
            model_class,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()  # the node prints its address once it listens
    if not address:
        proc.kill()
        raise SystemExit("the model node did not start")
    return proc, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fake", action="store_true", help="use the fake model")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)

    model_class = "llmos.models:FakeModel" if args.fake else "llmos.models:ModelActor"
    proc, address = start_model_node(model_class)
    node = Node()  # this process's node: tcp://127.0.0.1:<free port>, loopback only
    try:
        print(f"model node at {address}; this node at {node.address}")
        # The other node's kernel starts the model and supervises it there.
        model = node.spawn_remote(address, model_class, name="model", timeout=300)
        ada = spawn(
            ChatAgent,
            model,
            "You are Ada, an optimist. Answer in one sentence.",
            name="ada",
            max_new_tokens=args.max_tokens,
            model_timeout=300,
        )
        rex = spawn(
            ChatAgent,
            model,
            "You are Rex, a sceptic. Answer in one sentence.",
            name="rex",
            max_new_tokens=args.max_tokens,
            model_timeout=300,
        )
        result = run_chat(
            [ada, rex],
            "Will robots cook our dinners within ten years?",
            chat_class=Dialogue,
            termination=MaxTurns(args.turns) | Repetition(),
            timeout=900,
        )
        print(f"reason: {result.reason}")
        return 0 if result.turns > 0 else 1
    finally:
        node.close()
        actors.stop_all()
        proc.terminate()  # SIGTERM: the node shuts down cleanly
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
