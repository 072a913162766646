"""Instructions per remote ask, counted by callgrind, on each side: llmos against raw pyzmq.

Run: ``python benchmarks/profile_transport.py [--asks 400]``. Needs valgrind (``apt-get install
valgrind``); without it, it says so and exits 0. Not a test, and not part of ``make bench``
(valgrind runs the code about 50 times slower).

Wall times of a remote ask on a shared virtual machine move by 2-3x from one run to the next:
they are made of thread wake-ups, whose cost depends on what else runs. The instructions a
process executes per ask do not: they show what a change to the code costs or saves, where a
wall-time benchmark cannot see 10%.

Three clients ask an echo across processes (the servers and clients that
``bench_transport.py`` times, from ``_transport_sides.py``):

- raw: a DEALER and a ROUTER, one thread each, msgpack;
- raw in llmos's threads: the same, but on each side an I/O thread owns the socket, the asker
  hands it each ask and sleeps until it has the answer, and the server's I/O thread hands each
  ask to a worker thread and its answer back;
- llmos: ``ref.ask(payload).get()`` on a remote ref to an actor in the other node.

Each side is counted in its own run: the server process under callgrind with a plain client,
then the client process under callgrind with a plain server. Instrumentation is switched on
after a warm-up and off after the timed asks (``callgrind_control``), so start-up is not
counted. Every thread of the process is counted, ZeroMQ's own I/O thread included.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import _transport_sides as sides
import msgpack
import zmq

SERVERS = {"raw": "--serve-raw", "raw in llmos's threads": "--serve-raw-threads", "llmos": ""}
WARM_UP = 100


def client_for(kind: str) -> Any:
    """A client of ``_transport_sides`` for ``kind``, with its server (started natively)."""
    if kind == "llmos":
        return sides.LlmosClient()
    if kind == "raw":
        return sides.RawClient()
    return sides.ThreadedRawClient()


def callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True, capture_output=True)


def counted(prefix: str) -> int:
    """The instructions callgrind dumped into the files ``prefix``.*."""
    total = 0
    for path in glob.glob(prefix + ".*"):
        with open(path) as dump:
            for line in dump:
                if line.startswith("totals:"):
                    total += int(line.split()[1])
    return total


def valgrind(out: str, *command: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}.%p",
        *command,
    ]


def server_side(kind: str, asks: int, folder: str) -> float:
    """Instructions per ask in the server process of ``kind`` (run under callgrind)."""
    out = os.path.join(folder, f"server-{len(os.listdir(folder))}")
    mode = SERVERS[kind] or "--serve-llmos"
    proc = subprocess.Popen(
        valgrind(out, sys.executable, sides.__file__, mode),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        if kind == "llmos":
            from llmos.transport import Node

            node = Node(name="profile")
            ref = node.ref(f"echo@{address}")

            def ask() -> None:
                ref.ask(sides.PAYLOAD, timeout=60).get()

            def close() -> None:
                node.close()
        else:
            ctx: Any = zmq.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(address)
            sock.rcvtimeo = 60_000

            def ask() -> None:
                sock.send(msgpack.packb([sides.ASK, sides.PAYLOAD]))
                msgpack.unpackb(sock.recv())

            def close() -> None:
                sock.close(0)
                ctx.term()

        for _ in range(WARM_UP):
            ask()
        callgrind(proc.pid, "-i", "on")
        for _ in range(asks):
            ask()
        callgrind(proc.pid, "-i", "off")
        callgrind(proc.pid, "-d")
        close()
    finally:
        proc.kill()
        proc.wait()
    return counted(out) / asks


def client_side(kind: str, asks: int, folder: str) -> float:
    """Instructions per ask in the client process of ``kind`` (this script, under callgrind)."""
    out = os.path.join(folder, f"client-{len(os.listdir(folder))}")
    subprocess.run(
        valgrind(out, sys.executable, __file__, "--client", kind, "--asks", str(asks)),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return counted(out) / asks


def run_client(kind: str, asks: int) -> None:
    """The client process of :func:`client_side` (runs under callgrind)."""
    client = client_for(kind)
    try:
        client.ask_round_trip(WARM_UP)
        callgrind(os.getpid(), "-i", "on")
        client.ask_round_trip(asks)
        callgrind(os.getpid(), "-i", "off")
        callgrind(os.getpid(), "-d")
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asks", type=int, default=400)
    parser.add_argument("--client", choices=list(SERVERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args.client, args.asks)
        return 0
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not found (apt-get install valgrind)")
        return 0
    with tempfile.TemporaryDirectory(prefix="llmos-callgrind-") as folder:
        rows = {
            kind: (server_side(kind, args.asks, folder), client_side(kind, args.asks, folder))
            for kind in SERVERS
        }
    print(f"instructions per ask ({args.asks} asks after {WARM_UP} to warm up; every thread)")
    print(f"{'':26}{'server':>10}{'client':>10}{'both':>10}{'both / raw':>12}")
    both_raw = sum(rows["raw"])
    for kind, (server, client) in rows.items():
        both = server + client
        print(f"{kind:26}{server:>10,.0f}{client:>10,.0f}{both:>10,.0f}{both / both_raw:>11.2f}x")
    ours, floor = rows["llmos"], rows["raw in llmos's threads"]
    print(
        f"llmos over raw in its threads: server {ours[0] / floor[0]:.2f}x, "
        f"client {ours[1] / floor[1]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
