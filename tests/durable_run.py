"""A recorded dialogue for the durable-run tests, run in a subprocess that the tests kill -9.

``python tests/durable_run.py record DB RUN_ID [--turns N] [--slow-at K]`` records a dialogue
of two ChatAgents on a stateless fake model; ``resume DB RUN_ID`` resumes it through its
recipe, :func:`setup`. It prints ``gen K`` (flushed) as the model starts its K-th call, and
each transcript entry as it is added. For the tests that kill it at a chosen point, the
environment may say: ``DURABLE_SLOW_AT=K`` (the K-th model call hangs: a kill during a
generation), ``DURABLE_DELAY=S`` (each model call takes S seconds), ``DURABLE_STALL_WRITE=K``
(the K-th batch the log actor writes stops inside its transaction, its rows inserted and not
committed, after printing ``writing K``: a kill during a write), ``DURABLE_FILE_LIMIT_AT=K``
(from the K-th model call on, the process may not grow a file: the log's writes fail).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import threading
import time
import zlib
from typing import Any

from llmos.actors import stop_all
from llmos.agents import (
    ChatAgent,
    ChatSetup,
    ConsolePrinter,
    Dialogue,
    MaxTurns,
    RunStore,
    run_chat,
)
from llmos.agents import resume_chat as resume
from llmos.models import FakeModel

INSERTS = {
    "messages": "INSERT INTO messages (run_id, key, cause, at, sender, receiver, wire_type, "
    "payload) VALUES (?,?,?,?,?,?,?,?)",
    "calls": "INSERT INTO calls (run_id, agent, turn, seq, cause, target, at, seconds, "
    "request_type, request, reply_type, reply) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "entries": "INSERT INTO entries (run_id, idx, kind, speaker, text, turn, at, tokens, "
    "seconds) VALUES (?,?,?,?,?,?,?,?,?)",
}
WORDS = "tea coffee water milk sugar cup pot morning bitter sweet strong warm".split()
_calls = 0
_lock = threading.Lock()


def reply_for(messages: list[dict[str, Any]]) -> str:
    """A reply that depends on the prompt alone (a fresh model answers the same)."""
    global _calls
    with _lock:
        _calls += 1
        n = _calls
    print(f"gen {n}", flush=True)
    if str(n) == os.environ.get("DURABLE_FILE_LIMIT_AT"):
        _limit_files()
    if str(n) == os.environ.get("DURABLE_SLOW_AT"):
        time.sleep(60)
    time.sleep(float(os.environ.get("DURABLE_DELAY", "0")))
    h = zlib.crc32(json.dumps(messages, sort_keys=True).encode())
    words = [WORDS[(h >> (3 * i)) % len(WORDS)] for i in range(6)]
    return " ".join(words).capitalize() + "."


def _limit_files() -> None:
    """From now on this process may not write a file past the size of the run log's WAL
    file now (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it fails with EFBIG, as a full
    disk fails one): the next commit of the log fails, for real, mid-run."""
    wal = os.environ["DURABLE_DB"] + "-wal"
    size = os.path.getsize(wal)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    print(f"file limit {size}", flush=True)


_batches = 0
_write_rows = RunStore.write_rows


def _stalling_write_rows(store: RunStore, rows: Any) -> None:
    """RunStore.write_rows, except that the chosen batch stops before its commit."""
    global _batches
    _batches += 1
    if str(_batches) != os.environ.get("DURABLE_STALL_WRITE"):
        _write_rows(store, rows)
        return
    with store.transaction() as db:
        for table, row in rows:
            db.execute(INSERTS[table], row)
        print(f"writing {_batches}", flush=True)
        time.sleep(60)


if os.environ.get("DURABLE_STALL_WRITE"):
    RunStore.write_rows = _stalling_write_rows  # type: ignore[method-assign, assignment]


def setup(turns: int = 8, printer: bool = False) -> ChatSetup:
    """The recipe: a fake model and two ChatAgents, ``turns`` turns."""
    model = FakeModel.start(reply_for, name="model")
    ann = ChatAgent.start(model, "You are Ann.", name="ann")
    bob = ChatAgent.start(model, "You are Bob.", name="bob")
    options: dict[str, Any] = {
        "termination": MaxTurns(turns),
        "printer": ConsolePrinter(show_chunks=False) if printer else None,
    }
    return ChatSetup([ann, bob], "Tea or coffee?", Dialogue, options)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("record", "resume"))
    parser.add_argument("db")
    parser.add_argument("run_id")
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args(argv)
    if os.environ.get("DURABLE_FILE_LIMIT_AT"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        os.environ["DURABLE_DB"] = args.db
    try:
        if args.command == "record":
            s = setup(args.turns, printer=True)
            recipe = {"function": "durable_run:setup", "args": {"turns": args.turns}}
            result = run_chat(
                s.participants,
                s.task,
                chat_class=s.chat_class,
                record=args.db,
                run_id=args.run_id,
                recipe=recipe,
                timeout=60,
                **s.options,
            )
        else:
            result = resume(args.db, args.run_id, timeout=60)
        print(f"done {result.turns} {result.stopped_by}", flush=True)
        print(f"log error: {result.run_log_error}", flush=True)
        return 0
    finally:
        stop_all(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
