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

The servers and clients of every side are in ``_transport_sides.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import sys
import time
from typing import Any

from _load import hog_beside
from _transport_sides import (
    PAYLOAD,
    SIZES,
    LlmosClient,
    Measure,
    RawClient,
    ThreadedRawClient,
    WireClient,
    start,
)


def tell_count(tells: int, size: int) -> int:
    """Fewer tells for big payloads: about 512 MB per round at most (512 tells of 1 MB: a
    round of a few tenths of a second, long enough that a scheduling hiccup does not decide
    it; both sides send the same count)."""
    return max(20, min(tells, 512 * 1024 * 1024 // max(size, 1)))


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
    args = parser.parse_args()
    load_before = f"{os.getloadavg()[0]:.2f}"
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
