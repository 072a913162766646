"""Smoke tests: the agent examples run as a user would run them (fake model; one real run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_dialogue_example(tmp_path: Path) -> None:
    out = run_example("dialogue.py", "--fake", "--turns", "4", "--save", str(tmp_path))
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == ["sunny", "rex", "sunny", "rex"]
    assert "reason: MaxTurns(4): 4 turns taken" in out
    records = [json.loads(x) for x in (tmp_path / "dialogue.jsonl").read_text().splitlines()]
    assert len(records) == 5 and records[-1]["kind"] == "end"
    assert (tmp_path / "dialogue.md").read_text().startswith("# ")


def test_group_chat_example() -> None:
    out = run_example("group_chat.py", "--fake", "--turns", "4")
    assert "speakers: cole -> wren -> eda -> cole" in out
    assert "reason: MaxTurns(4): 4 turns taken" in out


def test_custom_agent_example(tmp_path: Path) -> None:
    oplog = tmp_path / "calc.jsonl"
    out = run_example("custom_agent.py", "--fake", "--oplog", str(oplog))
    assert "calculator: 1024.0" in out
    assert "refused: agent 'calculator' refused Calculate.expression: 300 characters" in out
    assert "tutor: 12 * (3 + 4) makes 84." in out
    assert "tutor: 1.5 / 4 makes 0.375." in out
    ops = [json.loads(line)["outcome"] for line in oplog.read_text().splitlines()]
    assert ops == ["ok", "refused", "ok", "ok", "ok"]  # the last: the GetOpLog itself


@pytest.mark.model
def test_dialogue_example_with_the_real_model() -> None:
    out = run_example("dialogue.py", "--turns", "2", "--max-tokens", "8", timeout=280)
    assert "reason: MaxTurns(2): 2 turns taken" in out
