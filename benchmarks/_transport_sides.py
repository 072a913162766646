"""The two sides of ``bench_transport.py``'s asks and tells, each in its own process.

Servers (run as ``python benchmarks/_transport_sides.py --serve-<kind>``; each prints its
address, then serves until killed or until its stdin closes):

- ``--serve-raw``: a ROUTER in one thread, msgpack;
- ``--serve-raw-threads``: the same in llmos's threads (an I/O thread and a worker thread);
- ``--serve-wire``: one thread answering llmos ask frames itself (the stand-in of ``--split``);
- ``--serve-llmos``: a Node with an echo actor and a counting actor.

Clients (used in the benchmark's own process): :class:`RawClient`, :class:`ThreadedRawClient`,
:class:`LlmosClient`, :class:`WireClient`, and the contenders :class:`RayClient` and
:class:`ThespianClient`. Each times a block of asks (or tells) in a :class:`Measure`: its wall
time, and the CPU time of both processes.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

import msgpack
import zmq

PAYLOAD = {"text": "hello world", "n": 42, "tags": ["a", "b"]}
ASK, TELL, COUNT = 1, 2, 3
SIZES = {"100 B": 0, "10 KB": 10 * 1024, "1 MB": 1024 * 1024}


def tell_payload(size: int) -> Any:
    return PAYLOAD if size == 0 else {"text": "blob", "data": bytes(size)}


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


_ONE = (1).to_bytes(8, sys.byteorder)


def serve_raw_threads() -> None:
    """Raw pyzmq + msgpack in llmos's threads: an I/O thread owns the ROUTER and hands each ask
    to a worker thread (a queue), which answers through a reply queue and an eventfd. It serves
    asks only: every message gets its payload back."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    inbox: queue.SimpleQueue[tuple[bytes, Any]] = queue.SimpleQueue()
    replies: deque[list[bytes]] = deque()

    def worker() -> None:
        while True:
            ident, payload = inbox.get()
            replies.append([ident, msgpack.packb(payload)])
            os.write(wake, _ONE)

    threading.Thread(target=worker, daemon=True).start()
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(wake, zmq.POLLIN)
    while True:
        for ready, _ in poller.poll():
            if ready is sock:
                while True:
                    try:
                        ident, data = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    inbox.put((ident, msgpack.unpackb(data)[1]))
            else:
                os.read(wake, 8)
        while replies:
            sock.send_multipart(replies.popleft())


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


def wire_codec() -> Any:
    from llmos.actors import LlmosError
    from llmos.transport import Codec, Limits

    def no_refs(name: str, node: str) -> Any:
        raise LlmosError("the stand-ins carry no refs")

    return Codec("", no_refs, Limits())


def serve_wire() -> None:
    """One thread answering llmos ask frames itself (no node, no actor): the server stand-in."""
    from llmos.transport._frames import ASK, PING, PONG, REPLY, Limits, pack_frame, parse_frame

    codec, limits = wire_codec(), Limits()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    while True:
        ident, data = sock.recv_multipart()
        answers = []
        for item in parse_frame(data, limits):
            if item[0] == ASK:
                answers.append([REPLY, item[1], codec.encode(codec.decode(item[5]))])
            elif item[0] == PING:
                answers.append([PONG, item[1], b""])
        if answers:
            sock.send_multipart([ident, pack_frame(answers)])


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a process has used, or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measure:
    """Wall time and CPU time (this process + the peer process) of one timed block."""

    def __init__(self, peer_pid: int) -> None:
        self.peer_pid = peer_pid

    def __enter__(self) -> Measure:
        self.cpu0 = time.process_time()
        self.peer0 = process_cpu(self.peer_pid)
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        peer1 = process_cpu(self.peer_pid)
        self.peer_cpu = None if peer1 is None or self.peer0 is None else peer1 - self.peer0


def start(mode: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


class RawClient:
    """A DEALER to the raw ROUTER process (or to ``server``, another that speaks the same)."""

    def __init__(self, server: str = "--serve-raw") -> None:
        self.proc, address = start(server)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(address)

    def ask_round_trip(self, asks: int) -> Measure:
        sock = self.sock
        with Measure(self.proc.pid) as measure:
            for _ in range(asks):
                sock.send(msgpack.packb([ASK, PAYLOAD]))
                msgpack.unpackb(sock.recv())
        return measure

    def tell_rate(self, tells: int, size: int = 0) -> Measure:
        sock, payload = self.sock, tell_payload(size)
        with Measure(self.proc.pid) as measure:
            for _ in range(tells):
                sock.send(msgpack.packb([TELL, payload]))
            sock.send(msgpack.packb([COUNT, None]))
            assert msgpack.unpackb(sock.recv()) == tells
        return measure

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
        self.proc.kill()
        self.proc.wait()


class ThreadedRawClient:
    """Raw pyzmq + msgpack in llmos's threads: the asking thread hands each ask to an I/O
    thread that owns the DEALER (a queue and an eventfd) and sleeps on a lock until that thread
    has the answer. The server is :func:`serve_raw_threads`. So both sides cross the threads an
    llmos ask crosses, with nothing of llmos in them: the floor of that design in Python."""

    def __init__(self) -> None:
        self.proc, self.address = start("--serve-raw-threads")
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.wake = os.eventfd(0, os.EFD_NONBLOCK)
        self.outbox: deque[bytes] = deque()
        self.waiting: deque[list[Any]] = deque()  # [lock, answer] per ask sent, in order
        self.closing = False
        self.thread = threading.Thread(target=self._io, daemon=True)
        self.thread.start()

    def _io(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(self.address)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        while not self.closing:
            for ready, _ in poller.poll():
                if ready is sock:
                    while True:
                        try:
                            data = sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        waiter = self.waiting.popleft()
                        waiter[1] = msgpack.unpackb(data)
                        waiter[0].release()
                else:
                    os.read(self.wake, 8)
            while self.outbox:
                sock.send(self.outbox.popleft())
        sock.close(0)

    def ask(self, payload: Any) -> Any:
        lock = threading.Lock()
        lock.acquire()
        waiter = [lock, None]
        self.waiting.append(waiter)
        self.outbox.append(msgpack.packb([ASK, payload]))
        os.write(self.wake, _ONE)
        if not lock.acquire(timeout=10):
            raise TimeoutError("no answer from the raw-threads server in 10 s")
        return waiter[1]

    def ask_round_trip(self, asks: int) -> Measure:
        ask = self.ask
        with Measure(self.proc.pid) as measure:
            for _ in range(asks):
                ask(PAYLOAD)
        return measure

    def close(self) -> None:
        self.closing = True
        os.write(self.wake, _ONE)
        self.thread.join(10)
        os.close(self.wake)
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

    def ask_round_trip(self, asks: int) -> Measure:
        echo = self.echo
        with Measure(self.proc.pid) as measure:
            for _ in range(asks):
                echo.ask(PAYLOAD, timeout=10).get()
        return measure

    def tell_rate(self, tells: int, size: int = 0) -> Measure:
        counter, payload = self.counter, tell_payload(size)
        with Measure(self.proc.pid) as measure:
            for _ in range(tells):
                counter.tell(payload)
            assert counter.ask("count", timeout=60).get() == tells
        return measure

    def close(self) -> None:
        self.node.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class WireClient:
    """One thread sending llmos ask frames on a plain DEALER: the client stand-in."""

    def __init__(self, address: str) -> None:
        from llmos.transport._frames import Limits

        self.codec, self.limits = wire_codec(), Limits()
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(address)
        self.rid = 0

    def ask_round_trip(self, asks: int) -> float:
        from llmos.transport._frames import ASK, REPLY, pack_frame, parse_frame

        sock, codec, limits = self.sock, self.codec, self.limits
        start = time.perf_counter()
        for _ in range(asks):
            self.rid += 1
            item = [ASK, self.rid, 10.0, time.time() + 10.0, "echo", codec.encode(PAYLOAD)]
            sock.send(pack_frame([item]))
            answer = parse_frame(sock.recv(), limits)[0]
            assert answer[0] == REPLY and answer[1] == self.rid
            codec.decode(answer[2])
        return (time.perf_counter() - start) / asks

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def main() -> int:
    servers = {
        "--serve-raw": serve_raw,
        "--serve-raw-threads": serve_raw_threads,
        "--serve-wire": serve_wire,
        "--serve-llmos": serve_llmos,
    }
    if len(sys.argv) != 2 or sys.argv[1] not in servers:
        print(f"usage: {sys.argv[0]} {{{','.join(servers)}}}", file=sys.stderr)
        return 2
    servers[sys.argv[1]]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
