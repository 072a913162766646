"""Two nodes: start a second node process, spawn an agent there, talk to it, shut both down.

Run it with ``python examples/remote_nodes.py``.

The second process runs ``llmos node`` (as ``python -m llmos.cli node``), allowed to
spawn exactly one class: this file's ``Librarian``. Everything after ``spawn_remote`` uses the
returned ref exactly like a local one: ``tell``, ``ask``, ``ask_async``, and a local ref sent
inside a message so the remote agent can answer back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler, message
from llmos.transport import Node


@message("example.remote.Remember")
class Remember:
    """Add a fact to the librarian's memory."""

    fact: str


@message("example.remote.Question")
class Question:
    """Ask which remembered facts mention a word."""

    word: str


@message("example.remote.Summarise")
class Summarise:
    """Ask for a summary, delivered later as a ``Summary`` to ``reply_to``."""

    reply_to: ActorRef


@message("example.remote.Summary")
class Summary:
    librarian: str
    facts: int
    text: str


class Librarian(Actor):
    """A small rule-based agent: remembers facts and answers questions about them."""

    def __init__(self, persona: str) -> None:
        super().__init__()
        self.persona = persona
        self.facts: list[str] = []

    @handler(Remember)
    def remember(self, msg: Remember) -> None:
        self.facts.append(msg.fact)

    @handler(Question)
    def question(self, msg: Question) -> str:
        found = [fact for fact in self.facts if msg.word.lower() in fact.lower()]
        if not found:
            return f"{self.persona} (pid {os.getpid()}): nothing about {msg.word!r}"
        return f"{self.persona} (pid {os.getpid()}): " + "; ".join(found)

    @handler(Summarise)
    def summarise(self, msg: Summarise) -> None:
        # The ref came over the wire: telling it sends the answer back to the other node.
        first_words = ", ".join(fact.split()[0] for fact in self.facts)
        msg.reply_to.tell(Summary(self.persona, len(self.facts), first_words))


class Notebook(Actor):
    """A local actor the remote librarian reports to."""

    def __init__(self, done: threading.Event) -> None:
        super().__init__()
        self.done = done

    @handler(Summary)
    def summary(self, msg: Summary) -> None:
        print(
            f"notebook (pid {os.getpid()}) got: {msg.librarian} knows {msg.facts} facts "
            f"({msg.text})"
        )
        self.done.set()


def start_second_node() -> tuple[subprocess.Popen[str], str]:
    """``llmos node`` in a child process, allowed to spawn this file's Librarian."""
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmos.cli",
            "node",
            "--name",
            "remote",
            "--allow-spawn",
            "remote_nodes:Librarian",
            "--import",
            "remote_nodes",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    address = child.stdout.readline().strip()  # the node prints its address once it listens
    if not address:
        child.kill()
        raise SystemExit("the second node did not start")
    return child, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    child, address = start_second_node()
    print(f"second node (pid {child.pid}) listens on {address}")
    try:
        with Node(name="local") as node:
            librarian = node.spawn_remote(
                address, "remote_nodes:Librarian", "Ada", name="librarian", timeout=10
            )
            print(f"spawned {librarian!r}")
            for fact in (
                "Ravens can solve multi-step puzzles",
                "Octopuses have three hearts",
                "Ravens remember faces for years",
            ):
                librarian.tell(Remember(fact))
            print(librarian.ask(Question("ravens"), timeout=5).get())
            answer = asyncio.run(librarian.ask_async(Question("hearts"), timeout=5))
            print(answer)
            done = threading.Event()
            notebook = Notebook.start(done, name="notebook")
            librarian.tell(Summarise(notebook))
            if not done.wait(10):
                print("no summary arrived within 10 s")
                return 1
            stats = librarian.statistics()
            print(f"librarian handled {stats.processed} messages on the other node")
            librarian.stop(timeout=5)
            print(
                f"transport: {node.statistics().frames_out} frames out, "
                f"{node.statistics().bad_frames} bad frames"
            )
    finally:
        child.send_signal(signal.SIGINT)  # the node shuts down cleanly on Ctrl+C
        code = child.wait(15)
        if child.stdout is not None:
            child.stdout.close()
        actors.stop_all()
    print(f"second node exited with code {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
