"""Smoke test: examples/durable_dialogue.py kills its recording process halfway and resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llmos.agents import RunStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "durable_dialogue.py"


def test_durable_dialogue_example_crashes_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--turns", "6", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "the process kills itself now: SIGKILL" in out
    assert "ended with -9" in out
    assert "turns in the resumed run: [1, 2, 3, 4, 5, 6]" in out
    store = RunStore(db, create=False)
    try:
        (run,) = store.runs()
        assert (run["status"], run["turns"], run["resumes"]) == ("ended", 6, 1)
        assert [e["turn"] for e in store.entries(run["run_id"]) if e["kind"] == "utterance"] == [
            1,
            2,
            3,
            4,
            5,
            6,
        ]
    finally:
        store.close()
