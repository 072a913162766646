"""Smoke test: examples/tool_agent.py runs as a user would run it (scripted stand-in model,
a real tool actor and a real MCP server process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tool_agent.py"


def test_tool_agent_example() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--fake"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"tool_agent.py failed:\n{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert 'tool calculator({"a": 12, "op": "*", "b": 7}) -> 84.0' in out
    assert 'tool word_count({"text": "the quick brown fox jumps"}) -> 5' in out  # over MCP
    assert "helper: The answer is 84.0." in out and "helper: The answer is 5." in out
    assert out.count("(tool loop stopped by: none)") == 2
