"""Smoke tests: the core examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_two_actors_example() -> None:
    out = run_example("two_actors.py", "--rallies", "4")
    assert out.count("ping!") + out.count("pong!") == 5
    assert "score: alice 3, bob 2" in out


def test_many_sessions_example() -> None:
    out = run_example("many_sessions.py", "--sessions", "300", "--messages", "6", timeout=120)
    lines = out.splitlines()
    pooled = next(line for line in lines if line.startswith("PooledSession:"))
    threaded = next(line for line in lines if line.startswith("Session:"))
    # The kernel's thread and the shared dispatcher's 4, against one thread per session.
    assert "300 sessions on 5 new threads" in pooled
    assert "300 sessions on 301 new threads" in threaded
    assert "1,800 messages handled" in pooled and "1,800 messages handled" in threaded
    restarts = [line for line in lines if "session 7 crashed once" in line]
    assert len(restarts) == 2
    assert all("restarted 1 time(s)" in line and "'line 5 of user 7'" in line for line in restarts)
