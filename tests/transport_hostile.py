"""Helpers for the hostile-peer tests: a real ``llmos node`` process, a raw attacker, a checker.

:class:`TargetNode` runs ``llmos node`` (the kernel supervises what peers spawn there) in its own
process over TCP on 127.0.0.1, with its log in a file. A well-behaved :class:`~llmos.transport.Node`
in the test process spawns an ``echo`` actor there. After each attack, :meth:`TargetNode.check`
asserts that the node process is alive, that its RSS stayed bounded, and that the well-behaved
peer's ask is answered within one second; :meth:`TargetNode.finish` asserts that SIGINT makes it
exit 0 within 15 seconds, and returns its log.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import zmq
from transport_peer import Add
from transport_support import PEER_SCRIPT, START_TIMEOUT, signal_child

from llmos.transport import KeyPair, Limits, Node, RemoteRef
from llmos.transport._frames import FAIL, NOTICE, REPLY, parse_frame

SPAWNABLE = "transport_peer:Echo"
HEARTBEAT = 1.0
ANSWER_WITHIN = 1.0
EXIT_WITHIN = 15.0
RSS_GROWTH = 100 * 1024 * 1024  # what an attack may add to the node's resident memory
_LIMITS = Limits()
_CLI = "import sys; from llmos.cli._main import main; sys.exit(main(sys.argv[1:]))"


def rss_of(pid: int) -> int:
    """Resident memory of a process in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class TargetNode:
    """``llmos node`` in its own process, and a well-behaved peer of it in this one."""

    def __init__(
        self,
        *args: str,
        fd_limit: int | None = None,
        spawn_echo: bool = True,
        keys: KeyPair | None = None,
        server_key: bytes | None = None,
    ) -> None:
        self.args = args
        self.keys = keys
        self.server_key = server_key
        self.fd_limit = fd_limit
        self.spawn_echo = spawn_echo
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.baseline_rss = 0
        self._log = tempfile.NamedTemporaryFile(prefix="llmos-node-", suffix=".log", delete=False)
        self.good: Node | None = None
        self.echo: RemoteRef | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> TargetNode:
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(PEER_SCRIPT.parent), *sys.path]),
        )
        limit = self.fd_limit

        def limit_fds() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CLI,
                "node",
                "--heartbeat",
                str(HEARTBEAT),
                "--import",
                "transport_peer",
                "--allow-spawn",
                SPAWNABLE,
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            preexec_fn=limit_fds if limit is not None else None,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(START_TIMEOUT)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line:
            self.kill()
            raise RuntimeError(f"llmos node did not start within {START_TIMEOUT} s:\n{self.log()}")
        self.address = line
        self.good = Node(heartbeat=HEARTBEAT, **self.client_options())
        if self.spawn_echo:
            ref = self.good.spawn_remote(self.address, SPAWNABLE, name="echo", timeout=10)
            assert isinstance(ref, RemoteRef)
            self.echo = ref
        self.baseline_rss = rss_of(self.pid)
        return self

    def client_options(self) -> dict[str, Any]:
        """What a Node needs to be a well-behaved peer of this one (its keys, if keyed)."""
        if self.keys is None or self.server_key is None:
            return {}
        return {"keys": self.keys, "peer_keys": {self.address: self.server_key}}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def check(self, what: str = "") -> None:
        """The node is alive, its memory bounded, and it answers a well-behaved peer in 1 s."""
        assert self.proc is not None
        label = f" after {what}" if what else ""
        assert self.proc.poll() is None, (
            f"the node died{label} (exit {self.proc.returncode}):\n{self.log()[-3000:]}"
        )
        rss = rss_of(self.pid)
        assert rss < self.baseline_rss + RSS_GROWTH, (
            f"the node's RSS grew from {self.baseline_rss >> 20} to {rss >> 20} MiB{label}"
        )
        assert self.good is not None
        if self.echo is None:
            return
        started = time.monotonic()
        assert self.echo.ask(Add(20, 22), timeout=ANSWER_WITHIN).get() == 42
        took = time.monotonic() - started
        assert took < ANSWER_WITHIN, f"a well-behaved ask took {took:.3f} s{label}"

    def signal(self, signum: int) -> None:
        """Send ``signum``; for SIGSTOP, return once the node has stopped (``signal_child``)."""
        signal_child(self.pid, signum)

    def stats(self) -> dict[str, Any]:
        """The node's transport counters (its ``llmos.node`` service)."""
        assert self.good is not None
        found: dict[str, Any] = (
            self.good.ref(f"llmos.node@{self.address}").ask("statistics", timeout=5).get()
        )
        return found

    def finish(self) -> str:
        """SIGINT: the node exits 0 within 15 s. Returns its log."""
        assert self.proc is not None
        if self.good is not None:
            self.good.close()
            self.good = None
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the node did not exit within {EXIT_WITHIN} s of SIGINT:\n{self.log()[-3000:]}"
            ) from None
        text = self.log()
        assert code == 0, f"the node exited {code} on SIGINT:\n{text[-3000:]}"
        return text

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        """Whatever happened: close the good peer, kill the process, drop the log file."""
        if self.good is not None:
            self.good.close()
            self.good = None
        self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


@contextlib.contextmanager
def target_node(
    *args: str,
    fd_limit: int | None = None,
    spawn_echo: bool = True,
    keys: KeyPair | None = None,
    server_key: bytes | None = None,
) -> Iterator[TargetNode]:
    node = TargetNode(
        *args, fd_limit=fd_limit, spawn_echo=spawn_echo, keys=keys, server_key=server_key
    )
    try:
        yield node.start()
    finally:
        node.close()


@contextlib.contextmanager
def attacker(address: str, **options: Any) -> Iterator[zmq.Socket[bytes]]:
    """A raw DEALER speaking the llmos frame format, closed with linger 0."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.sndtimeo = 5000
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name.upper()), value)
    sock.connect(address)
    try:
        yield sock
    finally:
        _seen.pop(id(sock), None)
        sock.close(0)


def answers(sock: zmq.Socket[bytes], count: int, timeout: float = 5.0) -> list[list[Any]]:
    """Read items (from any frames) until ``count`` items other than PONG arrived."""
    items: list[list[Any]] = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000)):
            break
        for item in read_items(sock):
            if item[0] != 6:  # PONG
                items.append(item)
    return items


def read_items(sock: zmq.Socket[bytes]) -> list[Any]:
    """The items of the next message (a frame, and the large payloads that follow it)."""
    frame, *parts = sock.recv_multipart()
    return parse_frame(frame, _LIMITS, parts)


def answer_to(sock: zmq.Socket[bytes], rid: int, timeout: float = 5.0) -> list[Any]:
    """The REPLY or FAIL item of request ``rid`` (AssertionError if it does not arrive)."""
    return collect(sock, [rid], timeout)[rid]


_seen: dict[int, dict[Any, list[Any]]] = {}  # per socket: answers read while waiting for others


def collect(sock: zmq.Socket[bytes], rids: Any, timeout: float = 5.0) -> dict[Any, list[Any]]:
    """Read until a REPLY or FAIL for each of ``rids`` arrived; answers to other requests are
    kept for a later call on the same socket."""
    seen = _seen.setdefault(id(sock), {})
    wanted = set(rids)
    deadline = time.monotonic() + timeout
    while not wanted.issubset(seen):
        left = deadline - time.monotonic()
        missing = sorted(wanted - seen.keys(), key=repr)[:10]
        assert left > 0 and sock.poll(int(left * 1000)), f"no answer to requests {missing}"
        for item in read_items(sock):
            if item[0] in (REPLY, FAIL) and len(item) == 3:
                seen[item[1]] = list(item)
    return {rid: seen.pop(rid) for rid in wanted}


def notices(items: list[list[Any]]) -> list[str]:
    return [str(item[1]) for item in items if item[0] == NOTICE]


def packb(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def tracebacks(log: str) -> int:
    return log.count("Traceback (most recent call last)")
