"""Shared by the durable-run tests: a durable_run.py subprocess, the reference transcript,
and the check that a resumed run lost and repeated no turn."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from durable_run import setup

from llmos.actors import stop_all
from llmos.agents import RunStore, run_chat, transcript_text

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TURNS = 8


class Child:
    """A durable_run.py (or another test script's) subprocess whose stdout lines are read in
    a thread."""

    def __init__(
        self,
        *args: str,
        slow_at: int | None = None,
        script: str = "durable_run.py",
        **env_vars: str,
    ) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        if slow_at is not None:
            env["DURABLE_SLOW_AT"] = str(slow_at)
        env.update(env_vars)
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<eof>")

    def wait_for(self, predicate: object, timeout: float = 30.0) -> str:
        """The first line (from now) for which ``predicate(line)`` holds."""
        assert callable(predicate)
        while True:
            line = self.lines.get(timeout=timeout)
            self.seen.append(line)
            if line == "<eof>":
                raise AssertionError(f"the child ended first: {self.seen[-20:]}")
            if predicate(line):
                return line

    def kill(self, *, may_have_ended: bool = False) -> None:
        """SIGKILL the child. With ``may_have_ended`` (a kill at a random moment, checked
        with ``poll()`` just before), a child that finished in between may exit 0 instead."""
        self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        allowed = (-signal.SIGKILL, 0) if may_have_ended else (-signal.SIGKILL,)
        assert code in allowed, f"exit {code} after SIGKILL: {self.seen[-20:]}"

    def finish(self) -> str:
        code = self.proc.wait(timeout=60)
        line = self.wait_for(lambda ln: ln.startswith("done"), timeout=5) if code == 0 else ""
        assert code == 0, f"exit {code}: {self.seen[-20:]}"
        return line


def reference_transcript(db: Path) -> bytes:
    """The transcript of the dialogue, recorded to ``db`` without interruption."""
    s = setup(TURNS)
    try:
        result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    finally:
        stop_all(timeout=10)
    assert result.turns == TURNS
    return transcript_text(result.transcript)


def resume_until_done(db: Path, run_id: str) -> None:
    Child("resume", str(db), run_id).finish()


def check_run(db: Path, run_id: str, reference: bytes) -> None:
    store = RunStore(db, create=False)
    try:
        run = store.run(run_id)
        entries = store.entries(run_id)
    finally:
        store.close()
    assert run["status"] == "ended" and run["turns"] == TURNS
    turns = [e["turn"] for e in entries if e["kind"] == "utterance"]
    assert turns == list(range(1, TURNS + 1)), "a turn lost or taken twice"
    assert transcript_text(entries) == reference
