"""Helpers for the transport tests: peer node processes, endpoints, raw sockets."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import zmq

from llmos.actors import Actor
from llmos.transport._codec import EXT_TUPLE
from llmos.transport._frames import ASK, DETACH, PART, TELL, pack_frame


class Gate(Actor):
    """Answers "wait" once the test opens the gate, anything else at once."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        if message == "wait":
            self.gate.wait(30)
        return message


PEER_SCRIPT = Path(__file__).with_name("transport_peer.py")
START_TIMEOUT = 20.0


def signal_child(pid: int, signum: int) -> None:
    """Send ``signum`` to child process ``pid``; for SIGSTOP, return once all its threads
    have stopped (bounded: 10 s).

    ``kill()`` returns before a busy machine has stopped every thread of a process, and a
    request read meanwhile would still be served: a test of what happens during a freeze
    starts its freeze for real first. ``waitpid(WUNTRACED)`` reports the group stop (in a
    thread, to bound the wait).
    """
    os.kill(pid, signum)
    if signum != signal.SIGSTOP:
        return
    stopped: list[bool] = []

    def wait_stop() -> None:
        _pid, status = os.waitpid(pid, os.WUNTRACED)
        stopped.append(os.WIFSTOPPED(status))

    waiter = threading.Thread(target=wait_stop, daemon=True)
    waiter.start()
    waiter.join(10)
    assert stopped == [True], f"process {pid} did not stop within 10 s of SIGSTOP"


class PeerProcess:
    """A second node running ``tests/transport_peer.py`` in its own process."""

    def __init__(
        self, *args: str, bind: str = "tcp://127.0.0.1:0", script: Path = PEER_SCRIPT
    ) -> None:
        self.args = args
        self.script = script
        self.bind = bind
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""

    def start(self) -> PeerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), "--bind", self.bind, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(START_TIMEOUT)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line:
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"peer did not print its address within {START_TIMEOUT} s: {err}")
        self.address = line
        if self.bind.endswith(":0"):
            self.bind = line  # a restart reuses the same address
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        """Send ``signum``; for SIGSTOP, return once the process is stopped (see
        :func:`signal_child`)."""
        assert self.proc is not None
        signal_child(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL and reap (what a crash looks like to the other node)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process must be able to die
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        """Close its stdin (it shuts down cleanly), then kill it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self.kill()
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


@contextlib.contextmanager
def peer_process(*args: str, bind: str = "tcp://127.0.0.1:0") -> Iterator[PeerProcess]:
    peer = PeerProcess(*args, bind=bind)
    try:
        yield peer.start()
    finally:
        peer.stop()


@contextlib.contextmanager
def short_tmpdir() -> Iterator[str]:
    """A short temporary folder (ipc:// paths are limited to about 100 characters)."""
    path = tempfile.mkdtemp(prefix="llmos-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def endpoint(scheme: str, folder: str) -> str:
    """A fresh endpoint to bind: a free loopback port, an ipc path, or an inproc name."""
    if scheme == "tcp":
        return "tcp://127.0.0.1:0"
    if scheme == "ipc":
        return f"ipc://{folder}/{uuid.uuid4().hex[:8]}.ipc"
    return f"inproc://llmos-test-{uuid.uuid4().hex}"


@contextlib.contextmanager
def raw_dealer(
    address: str, context: zmq.Context[zmq.Socket[bytes]] | None = None
) -> Iterator[zmq.Socket[bytes]]:
    """A bare DEALER socket connected to ``address``, closed with linger 0."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.sndtimeo = 5000
    sock.connect(address)
    try:
        yield sock
    finally:
        sock.close(0)


def ask_item(rid: int, payload: bytes, target: str = "echo", deadline: float = 30.0) -> list[Any]:
    return [ASK, rid, deadline, time.time() + deadline, target, payload]


def header(version: int = 1, kind: int = 1, length: int = 0) -> bytes:
    return struct.pack(">2sBBI", b"LM", version, kind, length)


def part_ref(size: int) -> msgpack.ExtType:
    """What an item holds in place of a payload of ``size`` bytes sent as a message part."""
    return msgpack.ExtType(PART, struct.pack(">I", size))


def with_parts(items: list[Any]) -> bytes:
    """A frame of kind 2 (its payloads follow as parts) holding ``items`` as they are."""
    body: bytes = msgpack.packb(items, use_bin_type=True)
    return header(kind=2, length=len(body)) + body


def hostile_frames() -> list[tuple[str, list[bytes] | bytes, str]]:
    """(label, frame or multipart message, what answers it): "frame" (dropped, a NOTICE),
    "item" (the item rejected, a NOTICE), "reply" (the ask fails with a FrameError)."""
    good = pack_frame([ask_item(1, msgpack.packb("x"))])
    big = DETACH + 100
    blob = msgpack.packb(b"p" * (big - 3))  # a payload of ``big`` bytes: a bin 16
    deep = b"\x91" * (big - 1) + b"\xc0"
    junk = b"\xc1" * big
    return [
        ("random bytes", bytes(range(256)) * 4, "frame"),
        ("truncated", good[:-3], "frame"),
        ("100 MB declared", header(length=100 * 1024 * 1024) + b"\x90", "frame"),
        ("wrong version", header(version=2, length=1) + b"\x90", "frame"),
        ("unknown kind", header(kind=42, length=1) + b"\x90", "frame"),
        ("deep frame body", header(length=3001) + b"\x91" * 3000 + b"\xc0", "frame"),
        ("multipart", [good, good], "frame"),
        ("not an item", pack_frame([5]), "item"),  # type: ignore[list-item]
        ("unknown op", pack_frame([[99, 1, b""]]), "item"),
        ("bad tell", pack_frame([[TELL, 5, b""]]), "item"),
        ("deep payload", pack_frame([ask_item(7, b"\x91" * 100 + b"\xc0")]), "reply"),
        ("bin32 100 MB", pack_frame([ask_item(8, b"\xc6\x06\x40\x00\x00ab")]), "reply"),
        (
            "unknown ext",
            pack_frame([ask_item(9, msgpack.packb(msgpack.ExtType(99, b"")))]),
            "reply",
        ),
        (
            "tuple as a dict key",
            pack_frame([ask_item(11, msgpack.packb({msgpack.ExtType(EXT_TUPLE, b"\x91\x01"): 1}))]),
            "reply",
        ),
        (
            "bad tuple ext",
            pack_frame([ask_item(10, msgpack.packb(msgpack.ExtType(EXT_TUPLE, b"\xc1")))]),
            "reply",
        ),
        ("kind 2 without its part", with_parts([ask_item(12, part_ref(big))]), "frame"),
        (
            "a part too few",
            [with_parts([ask_item(12, part_ref(big)), ask_item(13, part_ref(big))]), blob],
            "frame",
        ),
        ("a part too many", [with_parts([ask_item(12, part_ref(big))]), blob, blob], "frame"),
        ("a part of another size", [with_parts([ask_item(12, part_ref(big - 1))]), blob], "frame"),
        ("a small part", [with_parts([ask_item(12, part_ref(10))]), b"x" * 10], "frame"),
        (
            "a payload across parts",
            [
                with_parts([ask_item(12, part_ref(big + 10)), ask_item(13, part_ref(big - 10))]),
                blob,
                blob,
            ],
            "frame",
        ),
        (
            "a part as a target",
            [with_parts([ask_item(14, msgpack.packb("x"), target=part_ref(big))]), blob],
            "reply",
        ),
        ("deep payload in a part", [with_parts([ask_item(15, part_ref(big))]), deep], "reply"),
        ("garbage tell in a part", [with_parts([[TELL, "echo", part_ref(big)]]), junk], "item"),
    ]


class OneWayProxy:
    """A TCP proxy in front of a node that can cut one direction: after :meth:`cut`, what the
    node sends is read and dropped, while what its peers send still reaches it (a one-way
    network cut); with ``both``, what they send is dropped too. Its own thread; :meth:`close`
    closes every socket it opened."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("tcp://").rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._cut = threading.Event()
        self._both = threading.Event()
        self._closing = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="one-way-proxy", daemon=True)
        self._thread.start()

    def cut(self, both: bool = False) -> None:
        """From now on, drop what the node sends (to every connection, new ones too), and with
        ``both`` what is sent to it."""
        if both:
            self._both.set()
        self._cut.set()

    def _run(self) -> None:
        while not self._closing.is_set():
            for key, _ in self._selector.select(0.05):
                if key.data is None:
                    self._accept()
                    continue
                source, sink, from_node = key.data
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(source, sink)
                elif not self._cut.is_set() or not (from_node or self._both.is_set()):
                    sink.sendall(data)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self._upstream, timeout=5)
        self._selector.register(client, selectors.EVENT_READ, (client, server, False))
        self._selector.register(server, selectors.EVENT_READ, (server, client, True))

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
