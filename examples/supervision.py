"""Supervision: a crashing agent is restarted behind the same ref, its mailbox intact.

A note-taking "agent" keeps a conversation in memory. One message in its mailbox is poisoned:
handling it raises. The kernel restarts the agent (a fresh instance behind the same ref and the
same mailbox), ``pre_restart``/``post_restart`` carry the conversation over, every message
queued behind the poisoned one is handled by the new instance, and the poisoned one goes to
dead letters. A watcher then sees a temporary helper stop for good (death watch).

Run it with ``python examples/supervision.py [--messages N]``.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, Terminated, handler, message
from llmos.kernel import kernel


@message("example.Say")
class Say:
    """One line of conversation for the agent to remember."""

    text: str


@message("example.Think")
class Think:
    """Keeps the agent busy until the example lets it go (so the mailbox fills up)."""

    pass


@message("example.Transcript")
class Transcript:
    pass


class NoteTaker(Actor):
    """Remembers what it is told; chokes on lines that contain "poison"."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.memory: list[str] = []

    @handler(Think)
    def think(self, msg: Think) -> None:
        self.gate.wait(10)

    @handler(Say)
    def say(self, msg: Say) -> None:
        if "poison" in msg.text:
            raise ValueError(f"cannot digest {msg.text!r}")
        self.memory.append(msg.text)

    @handler(Transcript)
    def transcript(self, msg: Transcript) -> list[str]:
        return list(self.memory)

    def pre_restart(self, error: BaseException) -> Any:
        print(f"  {self.actor_name} crashed ({error}); it hands over {len(self.memory)} lines")
        return self.memory

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        self.memory = state
        print(f"  {self.actor_name} is back (a new instance), memory intact")


class Watcher(Actor):
    def __init__(self, seen: threading.Event) -> None:
        super().__init__()
        self.seen = seen

    @handler(Terminated)
    def terminated(self, msg: Terminated) -> None:
        print(f"  watcher: {msg.ref.name} terminated ({msg.reason})")
        self.seen.set()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ActorRef):
            self.watch(message)
            return True
        return super().on_receive(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20, help="lines queued behind the crash")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the crash is on purpose: keep the log quiet

    k = kernel()
    gate = threading.Event()
    agent = k.spawn(NoteTaker, gate, name="note-taker")  # permanent: restarted on failure
    try:
        print(f"1. {agent.name} hears two lines, then is kept busy while its mailbox fills")
        agent.tell(Say("hello"))
        agent.tell(Say("my name is Ada"))
        agent.tell(Think())
        agent.tell(Say("here is some poison"))
        for i in range(args.messages):
            agent.tell(Say(f"line {i}"))
        print(f"   queued behind the busy agent: the poison, then {args.messages} lines")
        gate.set()

        lines = agent.ask(Transcript(), timeout=10).get()  # the same ref, a new instance
        stats = agent.statistics()
        kept = len([line for line in lines if line.startswith("line ")])
        print(f"2. restarts: {stats.restarts}, failed: {stats.failed}")
        print(f"   handled after the crash: {kept} of {args.messages} queued lines")
        print(f"   remembered: {lines[:2]} ... {lines[-1]!r} ({len(lines)} lines)")
        poison = [d for d in actors.dead_letters(agent.name) if "poison" in str(d.message)]
        print(f"   dead letters: {len(poison)} (the poisoned line)")

        print("3. death watch: a temporary helper stops for good")
        seen = threading.Event()
        watcher = k.spawn(Watcher, seen, name="watcher")
        helper = k.spawn(NoteTaker, threading.Event(), name="helper", restart="temporary")
        watcher.ask(helper, timeout=5).get()
        helper.tell(Say("poison for the helper"))
        if not seen.wait(10):
            print("the watcher heard nothing in 10 s")
            return 1
        ok = stats.restarts == 1 and kept == args.messages and len(poison) == 1
        print("mailbox intact" if ok else "SOMETHING WAS LOST")
        return 0 if ok else 1
    finally:
        k.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
