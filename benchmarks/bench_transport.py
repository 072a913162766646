"""Cross-process ask round trip and tell throughput: llmos.transport vs raw pyzmq + msgpack.

Run: ``python benchmarks/bench_transport.py [--asks 2000] [--tells 50000] [--rounds 7]``.

Both sides carry the same payload (a small dict) to a second process:

- raw: a DEALER sends ``msgpack.packb([op, payload])`` to a ROUTER in the other process, which
  unpacks it and (for an ask) packs and sends the answer; one message per send, the plain way
  to use pyzmq;
- llmos: ``ref.ask(payload).get()`` / ``ref.tell(payload)`` on a remote ref to an actor in the
  other process's node.

Tell throughput is measured end to end: N tells, then one ask that returns once the receiving
side has handled all of them. Rounds alternate between raw and llmos so both see the same
background load; each figure is the best of ``--rounds`` rounds. Not a test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import msgpack
import zmq

PAYLOAD = {"text": "hello world", "n": 42, "tags": ["a", "b"]}
ASK, TELL, COUNT = 1, 2, 3


def serve_raw() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    count = 0
    while True:
        ident, data = sock.recv_multipart()
        op, payload = msgpack.unpackb(data)
        if op == ASK:
            sock.send_multipart([ident, msgpack.packb(payload)])
        elif op == TELL:
            count += 1
        else:
            sock.send_multipart([ident, msgpack.packb(count)])
            count = 0


def serve_llmos() -> None:
    from llmos.actors import Actor
    from llmos.transport import Node

    class Echo(Actor):
        def on_receive(self, message: Any) -> Any:
            return message

    class Counter(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            if message == "count":
                count, self.count = self.count, 0
                return count
            self.count += 1
            return None

    node = Node(name="bench-peer")
    Echo.start(name="echo")
    Counter.start(name="counter")
    print(node.address, flush=True)
    sys.stdin.read()
    node.close()


def start(mode: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


class RawClient:
    """A DEALER to the raw ROUTER process."""

    def __init__(self) -> None:
        self.proc, address = start("--serve-raw")
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(address)

    def ask_round_trip(self, asks: int) -> float:
        sock = self.sock
        started = time.perf_counter()
        for _ in range(asks):
            sock.send(msgpack.packb([ASK, PAYLOAD]))
            msgpack.unpackb(sock.recv())
        return (time.perf_counter() - started) / asks

    def tell_rate(self, tells: int) -> float:
        sock = self.sock
        started = time.perf_counter()
        for _ in range(tells):
            sock.send(msgpack.packb([TELL, PAYLOAD]))
        sock.send(msgpack.packb([COUNT, None]))
        assert msgpack.unpackb(sock.recv()) == tells
        return tells / (time.perf_counter() - started)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
        self.proc.kill()
        self.proc.wait()


class LlmosClient:
    """A Node with remote refs to the actors of the llmos peer process."""

    def __init__(self) -> None:
        from llmos.transport import Node

        self.proc, address = start("--serve-llmos")
        self.node = Node(name="bench")
        self.echo = self.node.ref(f"echo@{address}")
        self.counter = self.node.ref(f"counter@{address}")

    def ask_round_trip(self, asks: int) -> float:
        echo = self.echo
        started = time.perf_counter()
        for _ in range(asks):
            echo.ask(PAYLOAD, timeout=10).get()
        return (time.perf_counter() - started) / asks

    def tell_rate(self, tells: int) -> float:
        counter = self.counter
        started = time.perf_counter()
        for _ in range(tells):
            counter.tell(PAYLOAD)
        assert counter.ask("count", timeout=60).get() == tells
        return tells / (time.perf_counter() - started)

    def close(self) -> None:
        self.node.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asks", type=int, default=2000)
    parser.add_argument("--tells", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-llmos", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_raw:
        serve_raw()
        return 0
    if args.serve_llmos:
        serve_llmos()
        return 0
    raw, llmos = RawClient(), LlmosClient()
    try:
        raw.ask_round_trip(500)  # warm up both
        llmos.ask_round_trip(500)
        raw_rtt = llmos_rtt = float("inf")
        raw_rate = llmos_rate = 0.0
        # Rounds alternate between the two, so both see the same background load; each
        # figure is the best of its rounds.
        for _ in range(args.rounds):
            raw_rtt = min(raw_rtt, raw.ask_round_trip(args.asks))
            llmos_rtt = min(llmos_rtt, llmos.ask_round_trip(args.asks))
            raw_rate = max(raw_rate, raw.tell_rate(args.tells))
            llmos_rate = max(llmos_rate, llmos.tell_rate(args.tells))
    finally:
        raw.close()
        llmos.close()
    print(f"payload: {PAYLOAD!r} ({len(msgpack.packb(PAYLOAD))} bytes packed)")
    print(f"{'':28}{'raw pyzmq':>14}{'llmos':>14}{'ratio':>10}  target")
    print(
        f"{'ask round trip (us)':28}{raw_rtt * 1e6:>14.1f}{llmos_rtt * 1e6:>14.1f}"
        f"{llmos_rtt / raw_rtt:>9.2f}x  <= 1.5x"
    )
    print(
        f"{'tell throughput (msg/s)':28}{raw_rate:>14,.0f}{llmos_rate:>14,.0f}"
        f"{llmos_rate / raw_rate:>9.2f}x  >= 1.0x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
