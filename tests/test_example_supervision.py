"""Smoke test: examples/supervision.py runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "supervision.py"


def test_supervision_example_restarts_the_agent_with_its_mailbox_intact() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--messages", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"supervision.py failed:\n{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "restarts: 1, failed: 1" in out
    assert "handled after the crash: 50 of 50 queued lines" in out
    assert "remembered: ['hello', 'my name is Ada'] ... 'line 49' (52 lines)" in out
    assert "dead letters: 1" in out
    assert "watcher: helper terminated (failed:" in out
    assert out.rstrip().endswith("mailbox intact")
