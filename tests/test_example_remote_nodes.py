"""Smoke test: examples/remote_nodes.py runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "remote_nodes.py"


@pytest.mark.multiprocess
def test_remote_nodes_example() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"remote_nodes.py failed:\n{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "spawned <RemoteRef librarian@tcp://127.0.0.1:" in out
    assert "Ravens can solve multi-step puzzles; Ravens remember faces for years" in out
    assert "Octopuses have three hearts" in out
    assert "got: Ada knows 3 facts" in out
    assert "0 bad frames" in out
    assert "second node exited with code 0" in out
