"""``llmos runs``, ``show``, ``resume``, ``replay`` and ``effects``: recorded runs at the
command line (the run log is a SQLite file written by ``run_chat(..., record=FILE)`` or
``llmos demo --record FILE``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

import llmos.actors as actors
from llmos.agents import (
    EffectJournal,
    RunLogError,
    RunStore,
    replay_chat,
    resume_chat,
)

__all__ = ["print_effects", "print_replay", "print_resume", "print_runs", "print_show"]


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _open(path: Path) -> RunStore:
    if not path.exists():
        raise RunLogError(f"run log {str(path)!r} does not exist")
    return RunStore(path, create=False)


def print_runs(path: Path) -> int:
    """List the runs of a run log, oldest first."""
    store = _open(path)
    try:
        runs = store.runs()
    finally:
        store.close()
    if not runs:
        print(f"{path}: no runs")
        return 0
    print(
        f"{'RUN':24} {'KIND':10} {'STATUS':8} {'TURNS':>5} {'RESUMES':>7}  "
        f"{'STARTED (UTC)':19}  TASK"
    )
    for r in runs:
        task = r["task"] if len(r["task"]) <= 40 else r["task"][:39] + "…"
        print(
            f"{r['run_id']:24} {r['kind']:10} {r['status']:8} {r['turns']:>5} "
            f"{r['resumes']:>7}  {_when(r['created'])}  {task}"
        )
    return 0


def print_show(path: Path, run_id: str) -> int:
    """Print a run's transcript with tokens and timing per turn."""
    store = _open(path)
    try:
        run = store.run(run_id)
        entries = store.entries(run_id)
        calls = store.calls(run_id)
        size = store.size(run_id)
        messages = store.messages(run_id) if run["kind"] == "actors" else []
    finally:
        store.close()
    if run["kind"] == "actors":
        return _show_messages(run, messages, size)
    per_turn: dict[tuple[str, int], list[float]] = {}  # calls, prompt tokens, model seconds
    for call in calls:
        figures = per_turn.setdefault((call["agent"], call["turn"]), [0, 0, 0.0])
        figures[0] += 1
        figures[2] += call["seconds"]
        reply = msgpack.unpackb(call["reply"], raw=False) if call["reply"] else None
        if isinstance(reply, dict):
            figures[1] += int(reply.get("prompt_tokens") or 0)
    print(f"run {run['run_id']}: {run['kind']} {run['chat']} ({', '.join(run['participants'])})")
    print(f"task: {run['task']}")
    print(
        f"status: {run['status']}"
        + (f" ({run['reason']})" if run["reason"] else "")
        + f"; {run['turns']} turns; resumed {run['resumes']} times; {size} bytes recorded"
    )
    print(
        f"{'TURN':>4} {'SPEAKER':10} {'TOKENS':>6} {'PROMPT':>6} {'CALLS':>5} {'MODEL S':>7} "
        f"{'TURN S':>6}  TEXT"
    )
    for e in entries:
        if e["kind"] != "utterance":
            print(f"{'':>4} {'':10} {'':>6} {'':>6} {'':>5} {'':>7} {'':>6}  [{e['text']}]")
            continue
        calls_n, prompt, model_s = per_turn.get((e["speaker"], e["turn"]), [0, 0, 0.0])
        print(
            f"{e['turn']:>4} {e['speaker']:10} {e['tokens']:>6} {int(prompt):>6} "
            f"{int(calls_n):>5} {model_s:>7.2f} {e['seconds']:>6.2f}  {e['text']}"
        )
    return 0


def _show_messages(run: dict[str, Any], messages: list[dict[str, Any]], size: int) -> int:
    """A run of marked actors: its messages in order, each with its cause."""
    print(f"run {run['run_id']}: actors ({', '.join(run['participants'])})")
    if run["task"]:
        print(f"task: {run['task']}")
    print(f"status: {run['status']}; {len(messages)} messages; {size} bytes recorded")
    print(f"{'#':>4} {'AT (UTC)':12} {'KEY':22} {'SENDER':16} {'RECEIVER':16} {'TYPE':24} CAUSE")
    for i, m in enumerate(messages, 1):
        at = time.strftime("%H:%M:%S", time.gmtime(m["at"])) + f".{int(m['at'] % 1 * 1000):03d}"
        payload = json.dumps(
            msgpack.unpackb(m["payload"], raw=False), ensure_ascii=False, default=str
        )
        print(
            f"{i:>4} {at:12} {m['key']:22} {m['sender']:16} {m['receiver']:16} "
            f"{m['wire_type']:24} {m['cause'] or '-'}"
        )
        print(f"{'':>4} {payload if len(payload) <= 100 else payload[:99] + '…'}")
    return 0


def print_resume(path: Path, run_id: str, timeout: float) -> int:
    """Resume a run from its last completed turn (its recipe rebuilds the agents)."""
    try:
        result = resume_chat(path, run_id, timeout=timeout)
    finally:
        actors.stop_all(timeout=10)
    print(f"resumed run {run_id}: {result.turns} turns; ended: {result.reason}")
    if result.run_log_error:
        print(f"the run log failed: {result.run_log_error}", file=sys.stderr)
        return 1
    return 0 if result.ended_normally else 1


def print_replay(path: Path, run_id: str, live: bool, timeout: float) -> int:
    """Re-execute a run from its log (or live) and say whether it matches the recording."""
    from llmos.agents import ConsolePrinter

    try:
        replay = replay_chat(
            path, run_id, live=live, timeout=timeout, printer=ConsolePrinter(show_chunks=False)
        )
    finally:
        actors.stop_all(timeout=10)
    if replay.identical:
        print(f"replay: the transcript is identical to the log ({replay.served} calls served)")
    else:
        print(f"replay: the transcript differs from the log at entry {replay.first_difference}")
    if live:
        d = replay.divergence
        if d is None:
            print("live: the model gave the recorded output at every call")
        else:
            where = f"token {d.token} (word {d.word})" if d.token is not None else f"word {d.word}"
            print(f"live: first divergence at turn {d.turn} ({d.agent}), {where}")
            if d.token is not None:
                print(f"  tokens from there: logged {d.logged_tokens!r}, live {d.live_tokens!r}")
            print(f"  logged {d.logged!r}\n  live   {d.live!r}")
    return 0 if replay.identical else 1


def print_effects(
    path: Path, run_id: str, done: str | None, redo: str | None, result: str | None
) -> int:
    """List a run's effects, or decide one in doubt (``--done KEY`` / ``--redo KEY``)."""
    store = _open(path)
    try:
        store.run(run_id)
    finally:
        store.close()
    journal = EffectJournal(path, run_id)
    try:
        if done is not None:
            value: Any = json.loads(result) if result is not None else None
            journal.resolve(done, done=True, result=value)
            print(f"effect {done}: recorded as done; resume the run to go on")
            return 0
        if redo is not None:
            journal.resolve(redo, done=False)
            print(f"effect {redo}: forgotten; it runs again when the run resumes")
            return 0
        records = journal.records()
    finally:
        journal.close()
    if not records:
        print(f"run {run_id}: no effects")
    for r in records:
        shown = json.dumps(r.result) if r.state == "done" else r.error or "(in doubt)"
        args = json.dumps(r.args)
        print(f"{r.state:8} turn {r.turn:>3} {r.agent:10} {r.name} {args} -> {shown}")
        print(f"         key {r.key}")
    return 0
