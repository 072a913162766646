"""Smoke tests: examples/remote_dialogue.py, the model on a second node process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "remote_dialogue.py"


def run(*args: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.multiprocess
def test_remote_dialogue_with_fake_model() -> None:
    out = run("--fake", "--turns", "3", timeout=120)
    assert "model node at tcp://127.0.0.1:" in out
    speakers = [
        line.split(":")[0] for line in out.splitlines() if line.startswith(("ada:", "rex:"))
    ]
    assert speakers == ["ada", "rex", "ada"]
    assert "reason: MaxTurns(3)" in out


@pytest.mark.model
@pytest.mark.multiprocess
def test_remote_dialogue_with_real_model() -> None:
    out = run("--turns", "2", "--max-tokens", "8", timeout=600)
    speakers = [
        line.split(":")[0] for line in out.splitlines() if line.startswith(("ada:", "rex:"))
    ]
    assert speakers == ["ada", "rex"]
