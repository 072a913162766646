"""A recorded chat whose agent calls a side-effecting tool, run in a subprocess the tests kill -9.

``python tests/tool_run.py record DB RUN_ID SINK`` records a dialogue of a buyer and a clerk
(a ChatAgent with one tool, ``record_sale``, marked ``side_effects``: it inserts a row into the
SQLite file SINK) on a stateless scripted fake model; ``resume DB RUN_ID`` resumes it through
its recipe, :func:`setup`. It prints ``gen N KIND`` (flushed) as the model starts its N-th call
(KIND: ``call`` for the clerk's tool call, ``none`` for its decision to stop calling tools,
``text`` for an utterance), and ``sale ...`` around the tool's write. For the tests that kill
it at a chosen point, the environment may say: ``TOOL_HANG_ON=none`` (the model call after
the tool ran, and so after its result was journaled, hangs), ``TOOL_HANG_IN_TOOL=before`` or
``=after`` (the tool hangs just before its write, or just after it committed: its intent is
journaled, its result not).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
import zlib
from typing import Any

from llmos.actors import stop_all
from llmos.agents import ChatAgent, ChatSetup, Dialogue, MaxTurns, run_chat, tool
from llmos.agents import resume_chat as resume
from llmos.models import FakeModel

TURNS = 3
CALL = json.dumps({"tool": "record_sale", "arguments": {"item": "tea"}})
WORDS = "tea coffee water milk sugar cup pot morning bitter sweet strong warm".split()
_calls = 0
_lock = threading.Lock()


def hang(what: str) -> None:
    """Print ``what`` and wait to be killed (the tests kill the process; never returns)."""
    print(what, flush=True)
    time.sleep(60)
    raise SystemExit(f"not killed while hung at {what!r}")


@tool(side_effects=True, timeout=90.0)
def record_sale(item: str) -> str:
    """Record the sale of an item.

    Args:
        item: what was sold.
    """
    where = os.environ.get("TOOL_HANG_IN_TOOL", "")
    if where == "before":
        hang("sale before")
    with sqlite3.connect(os.environ["TOOL_SINK"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS sales (item TEXT)")
        db.execute("INSERT INTO sales VALUES (?)", (item,))
        count = db.execute("SELECT count(*) FROM sales").fetchone()[0]
    if where == "after":
        hang("sale after")
    print(f"sale {count}", flush=True)
    return f"sold {item}"


def reply_for(messages: list[dict[str, Any]]) -> str:
    """A reply that depends on the prompt alone (a fresh model answers the same)."""
    global _calls
    with _lock:
        _calls += 1
        n = _calls
    deciding = "You can use tools" in str(messages[0].get("content", ""))
    if deciding:
        done = any(str(m.get("content", "")).startswith("Result of") for m in messages)
        kind = "none" if done else "call"
    else:
        kind = "text"
    print(f"gen {n} {kind}", flush=True)
    if kind == os.environ.get("TOOL_HANG_ON"):
        hang(f"hung {n}")
    if kind == "call":
        return CALL
    if kind == "none":
        return '{"tool": "none"}'
    h = zlib.crc32(json.dumps(messages, sort_keys=True).encode())
    return " ".join(WORDS[(h >> (3 * i)) % len(WORDS)] for i in range(6)).capitalize() + "."


def setup() -> ChatSetup:
    """The recipe: a fake model, a buyer, and a clerk who records each sale with its tool."""
    model = FakeModel.start(reply_for, name="model")
    buyer = ChatAgent.start(model, "You buy tea.", name="buyer")
    clerk = ChatAgent.start(
        model, "You sell tea.", name="clerk", tools=[record_sale], tool_choice="required"
    )
    return ChatSetup([buyer, clerk], "One tea, please.", Dialogue, {"termination": MaxTurns(TURNS)})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("record", "resume"))
    parser.add_argument("db")
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            s = setup()
            result = run_chat(
                s.participants,
                s.task,
                chat_class=s.chat_class,
                record=args.db,
                run_id=args.run_id,
                recipe={"function": "tool_run:setup"},
                timeout=60,
                printer=None,
                **s.options,
            )
        else:
            result = resume(args.db, args.run_id, timeout=60, printer=None)
        print(f"done {result.turns} {result.stopped_by}", flush=True)
        return 0
    finally:
        stop_all(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
