"""``llmos top`` run as a person runs it, in a terminal (tmux), against a real ``llmos node``
whose actor crashes and is restarted while the view is open; ``q`` quits."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from observe_support import LLMOS, TESTS, live_node, read_line, wait_for
from rich.console import Console

from llmos.actors import Actor
from llmos.cli import node_snapshot
from llmos.cli._top import Rates, render
from llmos.kernel import kernel
from llmos.models import FakeModel, Generate


class Tmux:
    """A tmux server of its own (``-L``), so a test never touches a person's sessions."""

    def __init__(self) -> None:
        assert shutil.which("tmux"), "tmux is missing: scripts/test installs it (apt-get)"
        self.socket = f"llmos-test-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def screen_where(self, what: str, check: Callable[[str], bool]) -> str:
        """Wait (bounded) for a screen that passes ``check``; return it."""
        return wait_for(what, lambda: s if check(s := self.screen()) else None)

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20, check=False
        )


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux()
    try:
        yield server
    finally:
        server.close()


def restarts_of(screen: str, name: str) -> int | None:
    """The RESTARTS column of ``name``'s row in the tree, as drawn."""
    for line in screen.splitlines():
        words = line.split()
        if "└" in words and words[words.index("└") + 1 :][:1] == [name]:
            return int(words[-2])  # ... FAILURES RESTARTS LOAD
    return None


@pytest.mark.multiprocess
def test_top_under_tmux_shows_the_tree_and_rising_restarts_and_quits_on_q(
    tmp_path: Path, tmux: Tmux
) -> None:
    with live_node(tmp_path) as node:
        node.spawn("observe_node:CrashFarm", "farm")
        crasher = node.ref("crasher")
        crasher.tell("crash")
        command = " ".join(shlex.quote(part) for part in [*LLMOS, "top", node.address])
        script = f"{command}; echo llmos-top-exited-$?; sleep 120"
        path = f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        tmux(
            "new-session", "-d", "-s", "top", "-x", "120", "-y", "50",
            "-e", f"PYTHONPATH={path}", "sh", "-c", script,
        )  # fmt: skip
        first = tmux.screen_where(
            "the tree with crasher under farm, restarted once",
            lambda s: restarts_of(s, "crasher") == 1,
        )
        assert "supervision tree" in first and "llmos.kernel" in first
        assert restarts_of(first, "farm") == 0
        assert "q quits" in first

        for _ in range(2):
            crasher.tell("crash")
        wait_for(
            "crasher's restarts rising to 3 on the screen",
            lambda: restarts_of(tmux.screen(), "crasher") == 3,
        )
        tmux("send-keys", "-t", "top", "q")
        last = tmux.screen_where(
            "llmos top to end with exit code 0 after q", lambda s: "llmos-top-exited-" in s
        )
        assert "llmos-top-exited-0" in last, last

        # Not a terminal: one view per refresh, one after the other; Ctrl+C ends it (130).
        batch = subprocess.Popen(
            [*LLMOS, "top", node.address, "--interval", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert batch.stdout is not None and batch.stderr is not None
            views = 0
            while views < 2:
                line = read_line(batch.stdout)
                views += line == "supervision tree"
            batch.send_signal(signal.SIGINT)
            assert batch.wait(20) == 130
            assert batch.stderr.read().strip() == "llmos top: interrupted"
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait(10)
            for stream in (batch.stdout, batch.stderr):
                if stream is not None:
                    stream.close()


def test_render_without_a_transport_or_models() -> None:
    snap: dict[str, Any] = {
        "at": 0.0,
        "node": None,
        "kernel": {"processed": 0, "restarts": 0, "dead_letters": 0},
        "actors": [],
        "pools": [],
        "transport": None,
        "models": [],
        "tokens": {"agents": {}},
    }
    assert render("tcp://x", snap, Rates().tokens_per_second(snap)) is not None


class Echo(Actor):
    def on_receive(self, message: object) -> object:
        return message


def test_render_a_pool_a_model_and_tokens_per_agent() -> None:
    kernel().spawn_pool(Echo, size=2, name="echoes")
    model = kernel().spawn(FakeModel, name="fake-model")
    done = model.ask(Generate(prompt="hello there", requester="ada"), timeout=10).get()
    assert done.completion_tokens > 0
    snap = node_snapshot()
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render("in-process", snap, Rates().tokens_per_second(snap)))
    text = console.export_text()
    assert "echoes" in text and "round_robin" in text and "2 (2-2)" in text
    assert "model actors" in text and "fake-model" in text
    assert "tokens per agent" in text and "ada" in text


def test_top_of_a_node_that_is_not_there_is_one_line() -> None:
    done = subprocess.run(
        [*LLMOS, "top", "tcp://127.0.0.1:1", "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("llmos top: ") and done.stderr.count("\n") == 1, done.stderr
