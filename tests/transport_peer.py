"""A second llmos node for the multi-process transport tests (also the spawnable test actors).

Run as ``python tests/transport_peer.py --bind tcp://127.0.0.1:0 [--keys DIR --allow-key K]
[--allow-spawn transport_peer:Echo] [--heartbeat S]``. It starts a Node with an ``echo`` actor
and a ``node-stats`` actor, prints the node's address on one line, and serves until its stdin
closes or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
import time
from typing import Any

from llmos.actors import Actor, ActorRef, handler, message, stop_all
from llmos.transport import Node


@message("tests.transport.Add")
class Add:
    a: int
    b: int


@message("tests.transport.Sleep")
class Sleep:
    seconds: float


@message("tests.transport.CallBack")
class CallBack:
    """Ask ``ref`` for ``value`` and answer with what it answered."""

    ref: Any
    value: Any


@message("tests.transport.TellBack")
class TellBack:
    """Tell ``value`` to ``ref``."""

    ref: Any
    value: Any


@message("tests.transport.Record")
class Record:
    """Remember ``value`` (the answer is how many were recorded so far)."""

    value: Any


class Echo(Actor):
    """Answers what it gets; raises on "boom"; sleeps, calls back and records on request."""

    def __init__(self, greeting: str = "hello") -> None:
        super().__init__()
        self.greeting = greeting
        self.records: list[Any] = []

    @handler(Add)
    def add(self, msg: Add) -> int:
        return msg.a + msg.b

    @handler(Sleep)
    def sleep(self, msg: Sleep) -> str:
        time.sleep(msg.seconds)
        return "slept"

    @handler(CallBack)
    def call_back(self, msg: CallBack) -> Any:
        ref: ActorRef = msg.ref
        return ref.ask(msg.value, timeout=5).get()

    @handler(TellBack)
    def tell_back(self, msg: TellBack) -> str:
        msg.ref.tell(msg.value)
        return "told"

    @handler(Record)
    def record(self, msg: Record) -> int:
        self.records.append(msg.value)
        return len(self.records)

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom on purpose")
        if message == "greeting":
            return self.greeting
        if message == "records":
            return list(self.records)
        return message


class Exiting(Actor):
    """Its constructor raises ``BaseException(kind)``: SystemExit, KeyboardInterrupt, ..."""

    def __init__(self, kind: str = "SystemExit") -> None:
        super().__init__()
        raise {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt()}.get(
            kind, GeneratorExit()
        )


class NodeStatsActor(Actor):
    """Answers with its node's statistics as a dict."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node

    def on_receive(self, message: Any) -> Any:
        return dataclasses.asdict(self.node.statistics())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="tcp://127.0.0.1:0")
    parser.add_argument("--keys")
    parser.add_argument("--allow-key", action="append", default=[])
    parser.add_argument("--peer-key", action="append", default=[])
    parser.add_argument("--allow-spawn", action="append", default=[])
    parser.add_argument("--heartbeat", type=float, default=3.0)
    args = parser.parse_args()
    peer_keys = dict(spec.rsplit("=", 1) for spec in args.peer_key)
    node = Node(
        args.bind,
        name="peer",
        keys=args.keys,
        allow_keys=args.allow_key,
        peer_keys=peer_keys,
        allow_spawn=args.allow_spawn,
        heartbeat=args.heartbeat,
    )
    Echo.start(name="echo")
    NodeStatsActor.start(node, name="node-stats")
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())

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
    # Run the importable copy of this module, so the classes used here are the very ones a
    # spawn request ("transport_peer:Echo") and the message registry refer to.
    import transport_peer

    sys.exit(transport_peer.main())
