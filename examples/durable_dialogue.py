"""A dialogue that survives ``kill -9``: recorded to SQLite, killed halfway, resumed.

Run it with ``python examples/durable_dialogue.py [--turns 8] [--db runs.db] [--real]``.

It starts itself again as a second process that records a dialogue to the run log
(``run_chat(..., record=DB)``) and kills itself with SIGKILL right after half the turns (no
cleanup, no flush: a crash). This process then resumes the run from the log
(:func:`~llmos.agents.resume_chat`): fresh agents take in the recorded turns (their memory is
rebuilt from the log, no model call is repeated) and the dialogue goes on from the last turn
the log holds. Every turn appears once, in order.

By default the agents talk through a fake model (instant); ``--real`` loads the default model
(SmolLM2-135M-Instruct): its sampling is seeded per turn, so the resumed turns are the ones an
uninterrupted run would have said. ``llmos runs DB`` and ``llmos show DB RUN_ID`` show the run
afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import llmos.actors as actors
from llmos.agents import (
    ChatAgent,
    ChatSetup,
    ConsolePrinter,
    Dialogue,
    Entry,
    MaxTurns,
    resume_chat,
    run_chat,
)
from llmos.models import FakeModel

TOPIC = "Should our town turn its main street into a car-free zone?"
LINES = [
    "Yes: a car-free centre is safer and quieter, and people stay longer.",
    "My customers park right outside; without cars, who carries home a new fridge?",
    "Delivery bikes and a loading hour each morning would bring your fridges in.",
    "A loading hour is a start, but the bus has to stop near my door too.",
    "Then let us put a bus stop on your corner and try it for a summer.",
    "A summer trial I can live with, if we count the customers before and after.",
    "Counting is fair: footfall, sales and noise, the same weeks a year apart.",
    "And if the numbers fall, the cars come back in the autumn. Agreed?",
]


def fake_reply(messages: list[dict[str, Any]]) -> str:
    """The fake model's answer: the line after the one it was just told (the same prompt
    always gets the same answer, as from a seeded model)."""
    heard = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    last = heard.strip().split("\n")[-1]
    at = next((i for i, line in enumerate(LINES) if line in last), -1)
    return LINES[(at + 1) % len(LINES)]


def setup(turns: int = 8, real: bool = False) -> ChatSetup:
    """The dialogue: a model, two ChatAgents and the turns (the run's recipe)."""
    if real:
        from llmos.models import ModelActor  # imports torch: only when needed

        model = ModelActor.start(name="model")
    else:
        model = FakeModel.start(fake_reply, name="model")
    ada = ChatAgent.start(model, "You are Ada, an upbeat urban planner.", name="ada", seed=1)
    rex = ChatAgent.start(model, "You are Rex, a sceptical shop owner.", name="rex", seed=2)
    options = {"termination": MaxTurns(turns), "printer": ConsolePrinter(show_chunks=False)}
    return ChatSetup([ada, rex], TOPIC, Dialogue, options)


class CrashAt(ConsolePrinter):
    """Prints the dialogue; after turn ``turn`` is printed, the process dies with SIGKILL."""

    def __init__(self, turn: int) -> None:
        super().__init__(show_chunks=False)
        self.turn = turn

    def entry(self, entry: Entry) -> None:
        super().entry(entry)
        if entry.kind == "utterance" and entry.turn >= self.turn:
            print("-- [the process kills itself now: SIGKILL]", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


def record_and_crash(db: str, run_id: str, turns: int, real: bool) -> None:
    """The second process: record the dialogue, die halfway."""
    s = setup(turns, real)
    s.options["printer"] = CrashAt(turns // 2)
    recipe = {"function": "durable_dialogue:setup", "args": {"turns": turns, "real": real}}
    run_chat(
        s.participants,
        s.task,
        chat_class=s.chat_class,
        record=db,
        run_id=run_id,
        recipe=recipe,
        timeout=600,
        **s.options,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=8, help="turns of the dialogue (8)")
    parser.add_argument("--db", default=None, help="the run log (default: a temporary file)")
    parser.add_argument("--real", action="store_true", help="the default model, not a fake")
    parser.add_argument("--crashing-child", nargs=2, metavar=("DB", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.crashing_child:
        db, run_id = args.crashing_child
        record_and_crash(db, run_id, args.turns, args.real)
        return 1  # not reached: it dies halfway

    tmp = tempfile.TemporaryDirectory() if args.db is None else None
    db = args.db or str(Path(tmp.name if tmp else ".") / "runs.db")
    run_id = f"durable-{os.getpid()}"
    print(f"== recording run {run_id} to {db}; the process will crash at turn {args.turns // 2}")
    child = [sys.executable, __file__, "--turns", str(args.turns), "--crashing-child", db, run_id]
    if args.real:
        child.append("--real")
    crashed = subprocess.run(child, timeout=600)
    print(f"== the recording process ended with {crashed.returncode} (-9: SIGKILL)")
    print("== resuming from the run log: the recorded turns are taken in again, then live")
    try:
        result = resume_chat(db, run_id, setup=setup(args.turns, args.real), timeout=600)
    finally:
        actors.stop_all(timeout=10)
    turns = [e.turn for e in result.utterances]
    print(f"== turns in the resumed run: {turns}")
    ok = crashed.returncode == -signal.SIGKILL and turns == list(range(1, args.turns + 1))
    print("== every turn once, in order" if ok else "== turns were lost or repeated")
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
