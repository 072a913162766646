"""Helpers for the tests of a node's views: a real ``llmos node`` process running the actors of
``observe_node`` (spawned by a client over the transport), and bounded waits."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from llmos.actors import ActorRef
from llmos.transport import Node

TESTS = Path(__file__).resolve().parent
LLMOS = [sys.executable, "-m", "llmos.cli"]
T = TypeVar("T")


def env() -> dict[str, str]:
    """The environment of a child process that imports ``observe_node`` from tests/."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{path}" if path else str(TESTS)}


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Call ``check`` until it returns something other than None or False; fail past
    ``timeout`` seconds, saying ``what`` was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")
        time.sleep(0.05)  # a poll interval of a remote condition, not a wait for state


def read_line(stream: IO[str], timeout: float = 30.0) -> str:
    """One line of a child's output, failing if none comes within ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout} s"
    return stream.readline().strip()


@dataclass
class LiveNode:
    """A running ``llmos node`` and a client connected to it."""

    proc: subprocess.Popen[str]
    address: str
    client: Node
    stderr: Path

    def ref(self, name: str) -> ActorRef:
        return self.client.lookup(name, node=self.address, timeout=10)

    def spawn(self, path: str, name: str) -> ActorRef:
        return self.client.spawn_remote(self.address, path, name=name, timeout=30)

    def stderr_line(self, start: str, timeout: float = 30.0) -> str:
        def found() -> str | None:
            for line in self.stderr.read_text().splitlines():
                if line.startswith(start):
                    return line
            return None

        return wait_for(f"a line starting {start!r} on the node's stderr", found, timeout)


@contextmanager
def live_node(
    tmp: Path, *flags: str, extra_env: dict[str, str] | None = None
) -> Iterator[LiveNode]:
    """``llmos node --allow-spawn observe_node:* FLAGS`` and a client; both closed after."""
    stderr = tmp / "node.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [*LLMOS, "node", "--name", "watched", "--allow-spawn", "observe_node:*", *flags],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**env(), **(extra_env or {})},
        )
    client: Node | None = None
    try:
        assert proc.stdout is not None
        address = read_line(proc.stdout)
        assert address.startswith("tcp://127.0.0.1:"), (address, stderr.read_text())
        client = Node(name="watcher-test")
        yield LiveNode(proc, address, client, stderr)
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
