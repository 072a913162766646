"""``llmos cluster up|status|down`` as a user runs them on a machine where no Ray runs: ``up``
starts a local Ray head (``ray start --head``) and the nodes, ``status`` lists them (also into a
pipe that closes early), Ctrl+C stops an ``up`` still waiting for room, ``down`` stops the nodes
and leaves Ray running.

Ray gets a temporary folder of its own (RAY_TMPDIR), so the commands find only this Ray head;
the test stops it through the processes of that folder (``ray stop`` would end every Ray on
the machine). It needs Ray's default port, 6379, free."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.multiprocess

LLMOS = [sys.executable, "-m", "llmos.cli", "cluster"]


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        # As a server binds it (so a closed connection in TIME-WAIT does not count).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


@pytest.fixture
def ray_env() -> Iterator[dict[str, str]]:
    """The environment of a user with no Ray running: a Ray folder of its own, no RAY_ADDRESS.
    Whatever Ray runs from that folder at the end is stopped."""
    if not port_free(6379):
        pytest.skip("port 6379 is taken (another Ray head?): `llmos cluster up` starts one there")
    # Short: Ray's socket paths under it must stay within 107 characters.
    folder = tempfile.mkdtemp(prefix="lr-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = folder
    try:
        yield env
    finally:
        left = stop_processes_of(folder, timeout=5)
        shutil.rmtree(folder, ignore_errors=True)
        assert left == [], f"Ray processes of {folder} still run: {left}"


def llmos(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [*LLMOS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_up_status_down_without_an_address(ray_env: dict[str, str]) -> None:
    out = llmos(ray_env, "status")
    assert "no Ray cluster runs on this machine" in out

    out = llmos(ray_env, "up", "--nodes", "2", "--model", "fake")
    assert "started a local Ray head at" in out
    assert "started 2 llmos nodes in Ray namespace 'llmos'" in out
    assert out.count("model  FakeModel  running") == 2, out
    assert "stop them with: llmos cluster down\n" in out
    pids = [int(pid) for pid in re.findall(r"  pid (\d+)  ", out)]
    addresses = re.findall(r"(tcp://\S+)  pid", out)
    assert len(pids) == 2 == len(addresses), out

    out = llmos(ray_env, "status")
    assert "2 llmos nodes in Ray namespace 'llmos'" in out
    assert all(address in out for address in addresses)

    # Into a pipe that closes after one line (``| head -1``): the command ends, quietly.
    with subprocess.Popen(
        [*LLMOS, "status"], env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as piped:
        assert piped.stdout is not None and piped.stderr is not None
        assert piped.stdout.readline().startswith(b"2 llmos nodes")
        piped.stdout.close()
        assert piped.wait(timeout=60) in (-signal.SIGPIPE, 0)
        assert b"Traceback" not in piped.stderr.read()

    # Ctrl+C while Ray looks for room it will never find: the command stops, and so does
    # what it had started (its placement group), so the same nodes start later.
    with subprocess.Popen(
        [*LLMOS, "up", "--nodes", "2", "--prefix", "big", "--num-cpus", "1000"],
        env=ray_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as big:
        assert big.stdout is not None and big.stderr is not None
        assert big.stdout.readline().startswith("starting big-1, big-2 (waiting")
        big.send_signal(signal.SIGINT)
        assert big.wait(timeout=60) == 130
        assert "interrupted" in big.stderr.read()
    out = llmos(ray_env, "status")
    assert "2 llmos nodes" in out and "big-" not in out

    out = llmos(ray_env, "down")
    assert "stopped 2 llmos nodes: node-1, node-2" in out
    for pid in pids:
        assert process_ends(pid, timeout=30), f"node process {pid} outlived llmos cluster down"
    for address in addresses:
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5).close()
    # Ray keeps running (it answers: the namespace has no llmos cluster any more).
    assert "no llmos cluster in Ray namespace 'llmos'" in llmos(ray_env, "status")


def process_ends(pid: int, timeout: float) -> bool:
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([handle], [], [], timeout)  # readable once it has exited
        return bool(ready)
    finally:
        os.close(handle)


def stop_processes_of(folder: str, timeout: float) -> list[int]:
    """SIGTERM the processes whose command line names ``folder`` (Ray's daemons for a head
    started with RAY_TMPDIR=folder) and their children (Ray's workers, which rename their
    command lines); SIGKILL those left after ``timeout`` (gcs_server can take 20 s to
    end on SIGTERM). Returns the pids still running."""
    parents: dict[int, int] = {}
    mine: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
        except (OSError, ValueError, IndexError):
            continue
        if folder.encode() in command:
            mine.add(int(entry.name))
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in mine} - mine
        mine |= children
        grown = bool(children)
    for pid in mine:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    left = [pid for pid in mine if not process_ends(pid, max(deadline - time.monotonic(), 0))]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return [pid for pid in left if not process_ends(pid, 5)]


def test_up_and_down_where_a_ray_token_file_exists(ray_env: dict[str, str]) -> None:
    # Once any ray.init() (Ray >= 2.59) has written ~/.ray/auth_token, a head that `ray start`
    # runs requires that token: `llmos cluster` must reach it the way Ray reads it.
    home = Path(ray_env["RAY_TMPDIR"], "home")
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("c2687e886f0a4e8b9d1f3c5a7b9e2d4f")
    env = dict(ray_env, HOME=str(home))
    out = llmos(env, "up", "--nodes", "1", "--model", "none")
    assert "started 1 llmos node" in out, out
    assert "1 llmos node" in llmos(env, "status")
    assert "stopped" in llmos(env, "down")
