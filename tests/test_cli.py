"""The ``llmos`` command: version, demo (fake model), node + status, remote spawn under the
node's kernel, and errors as one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.actors import ActorRef
from llmos.cli._main import main
from llmos.cli._status import format_table
from llmos.models import Generate
from llmos.transport import Node

LLMOS = [sys.executable, "-m", "llmos.cli"]


def run_llmos(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LLMOS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_version_and_help() -> None:
    assert run_llmos("--version").stdout.startswith("llmos 0.")
    assert main([]) == 0


def test_main_called_from_a_program_leaves_its_broken_pipe_handling_alone() -> None:
    before = signal.getsignal(signal.SIGPIPE)
    assert main([]) == 0  # the help
    assert signal.getsignal(signal.SIGPIPE) == before  # a program keeps its own handling


def test_demo_with_fake_model_streams_a_dialogue(tmp_path: Path) -> None:
    done = run_llmos("demo", "--fake", "--turns", "3", "--save", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("ada:", "rex:"))]
    assert [line.split(":")[0] for line in lines] == ["ada", "rex", "ada"]
    assert "MaxTurns(3)" in done.stdout
    assert (tmp_path / "dialogue.jsonl").is_file() and (tmp_path / "dialogue.md").is_file()


def test_errors_are_one_line() -> None:
    done = run_llmos("status", "tcp://127.0.0.1:1", "--timeout", "0.5")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("llmos status: ")


@pytest.fixture
def node_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [*LLMOS, "node", "--name", "cli-test", "--allow-spawn", "llmos.models:FakeModel"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:"), address
        yield proc, address
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.multiprocess
def test_node_status_and_supervised_remote_spawn(
    node_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, address = node_process
    client = Node(name="cli-client")
    try:
        model: ActorRef = client.spawn_remote(
            address, "llmos.models:FakeModel", name="remote-model", timeout=30
        )
        answer = model.ask(Generate(prompt="hello there"), timeout=30).get()
        assert answer.text
        status = run_llmos("status", address)
        assert status.returncode == 0, status.stderr
        out = status.stdout
        assert "NAME" in out and "RESTARTS" in out
        rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
        assert rows["remote-model"][1] == "FakeModel" and rows["remote-model"][2] == "running"
        assert "llmos.kernel" in rows  # the kernel runs the node and supervises the model
    finally:
        client.close()
    proc.send_signal(signal.SIGINT)  # Ctrl+C: a clean shutdown with exit code 0
    assert proc.wait(20) == 0


def test_format_table_aligns() -> None:
    table = format_table(
        [
            {
                "name": "a",
                "class": "X",
                "state": "running",
                "mailbox": 0,
                "processed": 12,
                "failed": 0,
                "restarts": 1,
                "load": 0,
            },
        ]
    )
    header, row = table.splitlines()
    assert header.split() == [
        "NAME",
        "CLASS",
        "STATE",
        "MAILBOX",
        "PROCESSED",
        "FAILURES",
        "RESTARTS",
        "LOAD",
    ]
    assert row.split() == ["a", "X", "running", "0", "12", "0", "1", "0"]
    assert len(header) == len(row)


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "llmos"
    assert script.is_file() and os.access(script, os.X_OK)
