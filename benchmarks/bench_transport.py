"""Cross-process ask round trip and tell throughput: llmos.transport vs raw pyzmq + msgpack.

Run: ``python benchmarks/bench_transport.py [--asks 2000] [--tells 50000] [--rounds 7] [--hog]
[--contenders]``.

Both sides carry the same payload to a second process:

- raw: a DEALER sends ``msgpack.packb([op, payload])`` to a ROUTER in the other process, which
  unpacks it and (for an ask) packs and sends the answer; one message per send, the plain way
  to use pyzmq, with a blocking ``recv``;
- llmos: ``ref.ask(payload).get()`` / ``ref.tell(payload)`` on a remote ref to an actor in the
  other process's node (its asking thread also sleeps until the answer is in: like for like).

Asks carry a small dict; tells carry it (about 100 bytes) and a ``bytes`` field of 10 KB and
1 MB. Tell throughput is measured end to end: N tells, then one ask that returns once the
receiving side has handled all of them. Rounds alternate between raw and llmos so both see the
same background load; the table prints min / median / max of the per-round ratios (llmos's
time over raw's) and the load average. ``--hog`` runs the whole thing beside a process that
keeps one CPU busy. Not a test.

``--contenders`` measures instead the ask round trip of a Ray actor method call and a Thespian
``multiprocTCPBase`` ask, across processes, in alternating blocks with llmos's and raw pyzmq's
(``pip install ray thespian`` into the benchmark's environment; each is skipped with the reason
if missing).

Each round also times the ask in raw pyzmq + msgpack laid out in llmos's threads (the asker
hands it to an I/O thread that owns the socket; the server's I/O thread hands it to a worker
thread and back), on both sides and on the server side only: what that thread layout costs by
itself, apart from llmos's code.

``--split`` adds where the ask round trip's time goes: each side of llmos against a
one-thread stand-in that speaks the llmos wire format (frames, request items, codec) on a plain
socket, so a figure shows what the node, its I/O thread and the actor thread add on that side.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

import msgpack
import zmq
from _load import hog_beside

PAYLOAD = {"text": "hello world", "n": 42, "tags": ["a", "b"]}
ASK, TELL, COUNT = 1, 2, 3
SIZES = {"100 B": 0, "10 KB": 10 * 1024, "1 MB": 1024 * 1024}


def tell_payload(size: int) -> Any:
    return PAYLOAD if size == 0 else {"text": "blob", "data": bytes(size)}


def tell_count(tells: int, size: int) -> int:
    """Fewer tells for big payloads: about 512 MB per round at most (512 tells of 1 MB: a
    round of a few tenths of a second, long enough that a scheduling hiccup does not decide
    it; both sides send the same count)."""
    return max(20, min(tells, 512 * 1024 * 1024 // max(size, 1)))


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


class RayClient:
    """An echo actor in a Ray worker process (a local Ray instance), called by method."""

    def __init__(self) -> None:
        import ray

        ray.init(
            num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
        )

        @ray.remote
        class Echo:
            def echo(self, message: Any) -> Any:
                return message

        self.ray = ray
        self.echo = Echo.remote()  # type: ignore[attr-defined]

    def ask_round_trip(self, asks: int) -> Measure:
        get, echo = self.ray.get, self.echo.echo
        with Measure(os.getpid()) as measure:
            for _ in range(asks):
                get(echo.remote(PAYLOAD), timeout=10)
        return measure

    def close(self) -> None:
        self.ray.shutdown()


class ThespianClient:
    """An echo actor in Thespian's multiprocTCPBase (each actor a process, TCP between them)."""

    def __init__(self) -> None:
        from thespian.actors import ActorSystem

        with socket.socket() as probe:  # a free port for this run's admin, not the default
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.system = ActorSystem("multiprocTCPBase", {"Admin Port": port})
        self.echo = self.system.createActor(ThespianEcho)

    def ask_round_trip(self, asks: int) -> Measure:
        ask, echo = self.system.ask, self.echo
        with Measure(os.getpid()) as measure:
            for _ in range(asks):
                assert ask(echo, PAYLOAD, 10) == PAYLOAD
        return measure

    def close(self) -> None:
        self.system.shutdown()


try:
    from thespian.actors import Actor as _ThespianActor

    class ThespianEcho(_ThespianActor):  # type: ignore[misc]
        def receiveMessage(self, message: Any, sender: Any) -> None:
            if isinstance(message, dict):
                self.send(sender, message)

except ImportError:  # pragma: no cover - optional contender
    pass


def contenders(asks: int, rounds: int) -> None:
    """llmos's ask round trip against a Ray actor call and a Thespian TCP ask, interleaved."""
    # Thespian forks its processes: before anything else starts threads or subprocesses whose
    # descriptors a fork would carry along (a forked child holding llmos's peer's stdin open
    # keeps that peer from ever ending).
    clients: dict[str, Any] = {}
    kinds = (
        ("Thespian TCP", ThespianClient),
        ("llmos", LlmosClient),
        ("raw pyzmq", RawClient),
        ("Ray", RayClient),
    )
    for name, cls in kinds:
        try:
            clients[name] = cls()
        except Exception as exc:  # an optional install: say why it is left out
            if name in ("llmos", "raw pyzmq"):
                raise
            print(f"{name}: skipped ({type(exc).__name__}: {exc})")
    times: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for client in clients.values():
            client.ask_round_trip(200)  # warm up
        for n in range(rounds):
            order = list(clients.items())
            for name, client in order if n % 2 == 0 else order[::-1]:
                times[name].append(client.ask_round_trip(asks).wall / asks)
    finally:
        for client in clients.values():
            client.close()
    print()
    print(f"ask round trip against other actor systems (load average {os.getloadavg()[0]:.2f})")
    print(f"{'':14}{'median':>12}{'their time / llmos time':>28}{'their time / raw time':>28}")
    for name, theirs in times.items():
        row = f"{name:14}{statistics.median(theirs) * 1e6:>9.1f} us"
        for base in ("llmos", "raw pyzmq"):
            ratios = sorted(t / o for t, o in zip(theirs, times[base], strict=True))
            spread = f"{ratios[0]:.1f} / {statistics.median(ratios):.1f} / {ratios[-1]:.1f}x"
            row += f"{spread:>28}"
        print(row)
    print("(per round: min / median / max; raw pyzmq: the floor of any design on ZeroMQ)")


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


def split(asks: int, rounds: int) -> None:
    """Ask round trip of each client (stand-in, llmos) against each server (stand-in, llmos)."""
    from llmos.transport import Node

    wire_proc, wire_address = start("--serve-wire")
    llmos_proc, llmos_address = start("--serve-llmos")
    node = Node(name="bench-split")
    clients: dict[str, Any] = {}
    try:
        servers = {"stand-in server": wire_address, "llmos server": llmos_address}
        best: dict[tuple[str, str], float] = {}
        for server, address in servers.items():
            wire = clients[server] = WireClient(address)
            ref = node.ref(f"echo@{address}")

            def llmos_asks(n: int, ref: Any = ref) -> float:
                begin = time.perf_counter()
                for _ in range(n):
                    ref.ask(PAYLOAD, timeout=10).get()
                return (time.perf_counter() - begin) / n

            wire.ask_round_trip(300)  # warm up both
            llmos_asks(300)
            for _ in range(rounds):
                runs = (("stand-in client", wire.ask_round_trip), ("llmos client", llmos_asks))
                for client, run in runs:
                    took = run(asks)
                    key = (client, server)
                    best[key] = min(best.get(key, took), took)
    finally:
        for wire in clients.values():
            wire.close()
        node.close()
        wire_proc.kill()
        wire_proc.wait()
        assert llmos_proc.stdin is not None
        llmos_proc.stdin.close()
        llmos_proc.wait(10)
    print()
    print("where the ask round trip goes (us; stand-ins speak the llmos wire format in one thread)")
    print(f"{'':28}{'stand-in server':>16}{'llmos server':>14}")
    for client in ("stand-in client", "llmos client"):
        row = "".join(
            f"{best[(client, server)] * 1e6:>{width}.1f}"
            for server, width in (("stand-in server", 16), ("llmos server", 14))
        )
        print(f"{client:28}{row}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asks", type=int, default=2000)
    parser.add_argument("--tells", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--hog", action="store_true", help="run beside a process that keeps a CPU busy"
    )
    parser.add_argument(
        "--contenders", action="store_true", help="also Ray and Thespian (when installed)"
    )
    parser.add_argument(
        "--split", action="store_true", help="also show which side of an ask the time goes to"
    )
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-wire", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw-threads", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-llmos", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    load_before = f"{os.getloadavg()[0]:.2f}"
    if args.serve_raw:
        serve_raw()
        return 0
    if args.serve_llmos:
        serve_llmos()
        return 0
    if args.serve_wire:
        serve_wire()
        return 0
    if args.serve_raw_threads:
        serve_raw_threads()
        return 0
    if args.contenders:  # on its own: Thespian's forks must not inherit the other peers' pipes
        contenders(max(200, args.asks // 4), args.rounds)
        return 0
    with hog_beside(args.hog):
        results = measure(args)
    report(args, load_before, results)
    if args.split:
        with hog_beside(args.hog):
            split(args.asks, args.rounds)
    return 0


def measure(args: argparse.Namespace) -> dict[tuple[str, str], list[Measure]]:
    """The main table's rounds: each row, each side, alternating."""
    raw, threads, llmos = RawClient(), ThreadedRawClient(), LlmosClient()
    server_threads = RawClient("--serve-raw-threads")
    results: dict[tuple[str, str], list[Measure]] = {}
    try:
        for client in (raw, threads, server_threads, llmos):  # warm up
            client.ask_round_trip(500)
        # Rounds alternate between the sides, and which goes first, so all see the same load.
        for n in range(args.rounds):
            askers = (
                ("raw", raw),
                ("threads", threads),
                ("server threads", server_threads),
                ("llmos", llmos),
            )
            for side, client in askers[n % 4 :] + askers[: n % 4]:
                results.setdefault(("ask", side), []).append(client.ask_round_trip(args.asks))
            order = (("raw", raw), ("llmos", llmos))
            for label, size in SIZES.items():
                count = tell_count(args.tells, size)
                for side, client in order if n % 2 == 0 else order[::-1]:
                    key = (f"tell {label}", side)
                    results.setdefault(key, []).append(client.tell_rate(count, size))
    finally:
        raw.close()
        threads.close()
        server_threads.close()
        llmos.close()
    return results


def report(
    args: argparse.Namespace, load_before: str, results: dict[tuple[str, str], list[Measure]]
) -> None:
    rows = ["ask"] + [f"tell {label}" for label in SIZES]
    counts = {"ask": args.asks} | {
        f"tell {label}": tell_count(args.tells, size) for label, size in SIZES.items()
    }
    print(
        f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f}"
        f"{'  (with a CPU hog)' if args.hog else ''}; {args.rounds} rounds"
    )
    print(
        f"{'':14}{'raw median':>12}{'llmos median':>14}{'llmos/raw time per round':>34}"
        f"{'CPU ratio':>11}"
    )
    for row in rows:
        raws, ours = results[(row, "raw")], results[(row, "llmos")]
        ratios = sorted(o.wall / r.wall for r, o in zip(raws, ours, strict=True))
        n = counts[row]

        def per(ms: list[Measure], n: int = n, row: str = row) -> str:
            wall = statistics.median(m.wall for m in ms) / n
            return f"{wall * 1e6:.1f} us" if row == "ask" else f"{1 / wall:,.0f}/s"

        cpu = [
            (o.cpu + o.peer_cpu) / (r.cpu + r.peer_cpu)
            for r, o in zip(raws, ours, strict=True)
            if o.peer_cpu is not None and r.peer_cpu is not None
        ]
        spread = f"{ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}x"
        cpu_text = f"{statistics.median(cpu):.2f}x" if cpu else "n/a"
        print(f"{row:14}{per(raws):>12}{per(ours):>14}{spread:>34}{cpu_text:>11}")
    print("(ratios are min / median / max of llmos's time over raw's; < 1 means llmos is faster)")
    raws, walls, halves, ours = (
        results[("ask", side)] for side in ("raw", "threads", "server threads", "llmos")
    )
    print()
    print("the same ask in raw pyzmq + msgpack laid out in llmos's threads (no llmos code):")
    print(f"{'':40}{'median':>10}{'its time / raw time':>26}{'llmos time / its':>24}")
    for text, theirs in (
        ("both sides (I/O threads, a worker)", walls),
        ("the server side only (raw client)", halves),
    ):
        row = f"  {text:38}{statistics.median(m.wall for m in theirs) / args.asks * 1e6:>7.1f} us"
        for tops, bottoms, width in ((theirs, raws, 26), (ours, theirs, 24)):
            ratios = sorted(t.wall / b.wall for t, b in zip(tops, bottoms, strict=True))
            spread = f"{ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}x"
            row += f"{spread:>{width}}"
        print(row)


if __name__ == "__main__":
    sys.exit(main())
