"""The recorded-run commands: ``llmos demo --record``, ``runs``, ``show``, ``replay``,
``resume`` (after a real kill -9) and ``effects``, and their one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from durable_support import TESTS, TURNS, Child, check_run, reference_transcript

from llmos.cli import main


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The transcript of the same dialogue, recorded without interruption."""
    return reference_transcript(tmp_path_factory.mktemp("ref") / "ref.db")


def _run_id(out: str) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("[recorded: run "))
    return line.split()[2]


def test_demo_records_and_the_commands_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    assert main(["demo", "--fake", "--turns", "2", "--record", str(db)]) == 0
    run_id = _run_id(capsys.readouterr().out)
    assert main(["runs", str(db)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("RUN") and listed[1].split()[:4] == [
        run_id,
        "Dialogue",
        "ended",
        "2",
    ]
    assert main(["show", str(db), run_id]) == 0
    shown = capsys.readouterr().out
    assert "TOKENS" in shown and "MODEL S" in shown
    rows = [
        ln.split() for ln in shown.splitlines() if ln.split()[:2] in (["1", "ada"], ["2", "rex"])
    ]
    assert len(rows) == 2 and all(int(r[2]) > 0 and int(r[3]) > 0 for r in rows)
    assert main(["replay", str(db), run_id]) == 0
    assert "identical to the log (" in capsys.readouterr().out
    assert main(["replay", str(db), run_id, "--live"]) == 0
    assert "the model gave the recorded output at every call" in capsys.readouterr().out
    assert main(["effects", str(db), run_id]) == 0
    assert "no effects" in capsys.readouterr().out


def test_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert main(["runs", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RunLogError" in err[0] and str(missing) in err[0]
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    before = bad.read_bytes()
    assert main(["show", str(bad), "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert bad.read_bytes() == before


def test_llmos_resume_after_kill(tmp_path: Path, reference: bytes) -> None:
    db = tmp_path / "runs.db"
    child = Child("record", str(db), "cli", "--turns", str(TURNS), slow_at=7)
    child.wait_for(lambda ln: ln == "gen 7")
    child.kill()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "llmos.cli", "resume", str(db), "cli"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"resumed run cli: {TURNS} turns" in done.stdout
    check_run(db, "cli", reference)
