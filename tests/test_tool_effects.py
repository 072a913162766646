"""A side-effecting tool in a recorded chat, across real SIGKILLs of the process that runs it.

The chat runs in a subprocess (tests/tool_run.py): a clerk agent calls ``record_sale``, a
``side_effects`` tool that inserts a row into a real SQLite file. The process is killed -9 once
the effect's result is journaled, or while the tool runs (its intent journaled, its result not:
the effect is in doubt, the resumed run stops for a decision, which is made with ``llmos
effects``). Each time the run resumes, the sale is in the file exactly once, and the transcript
goes on to its end.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from durable_support import Child
from tool_run import TURNS

from llmos.agents import EffectJournal, RunStore
from llmos.cli import main as llmos

pytestmark = pytest.mark.timeout(120)


def _sales(sink: Path) -> int:
    if not sink.exists():
        return 0
    with sqlite3.connect(sink) as db:
        found = db.execute("SELECT count(*) FROM sqlite_master WHERE name='sales'").fetchone()
        return int(db.execute("SELECT count(*) FROM sales").fetchone()[0]) if found[0] else 0


def _effects(db: Path, run_id: str) -> list[tuple[str, str]]:
    journal = EffectJournal(db, run_id)
    try:
        return [(r.name, r.state) for r in journal.records()]
    finally:
        journal.close()


def _check_ended(db: Path, run_id: str) -> list[str]:
    store = RunStore(db, create=False)
    try:
        run = store.run(run_id)
        entries = store.entries(run_id)
    finally:
        store.close()
    assert run["status"] == "ended" and run["turns"] == TURNS
    said = [e for e in entries if e["kind"] == "utterance"]
    assert [e["turn"] for e in said] == list(range(1, TURNS + 1)), "a turn lost or taken twice"
    return [e["speaker"] for e in said]


def _child(*args: str, sink: Path, hang_on: str = "", hang_in_tool: str = "") -> Child:
    return Child(
        *args,
        script="tool_run.py",
        TOOL_SINK=str(sink),
        TOOL_HANG_ON=hang_on,
        TOOL_HANG_IN_TOOL=hang_in_tool,
    )


def test_killed_after_the_effect_is_journaled_the_resumed_run_does_not_sell_again(
    tmp_path: Path,
) -> None:
    db, sink = tmp_path / "runs.db", tmp_path / "shop.db"
    child = _child("record", str(db), "r1", sink=sink, hang_on="none")
    child.wait_for(lambda ln: ln.startswith("hung"))  # the model call after the tool's result
    child.kill()
    assert _sales(sink) == 1 and _effects(db, "r1") == [("tool:record_sale", "done")]
    resumed = _child("resume", str(db), "r1", sink=sink)
    assert resumed.finish() == f"done {TURNS} MaxTurns"
    assert not any(ln.startswith("sale") for ln in resumed.seen)  # the tool never ran again
    assert _sales(sink) == 1 and _effects(db, "r1") == [("tool:record_sale", "done")]
    assert _check_ended(db, "r1") == ["buyer", "clerk", "buyer"]


@pytest.mark.parametrize("where", ["after", "before"])
def test_killed_between_intent_and_result_the_run_stops_for_a_decision_then_sells_once(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db, sink = tmp_path / "runs.db", tmp_path / "shop.db"
    child = _child("record", str(db), "r2", sink=sink, hang_in_tool=where)
    child.wait_for(lambda ln: ln == f"sale {where}")
    child.kill()
    assert _sales(sink) == (1 if where == "after" else 0)
    assert _effects(db, "r2") == [("tool:record_sale", "started")]
    stopped = _child("resume", str(db), "r2", sink=sink)
    assert stopped.finish().startswith("done") and stopped.seen[-1].endswith(" effect")
    journal = EffectJournal(db, "r2")
    try:
        (doubt,) = journal.in_doubt()
    finally:
        journal.close()
    # The operator looks at the shop: the sale is there (done) or not (run it again).
    decision = "--done" if _sales(sink) == 1 else "--redo"
    assert llmos(["effects", str(db), "r2", decision, doubt.key]) == 0
    capsys.readouterr()
    resumed = _child("resume", str(db), "r2", sink=sink)
    assert resumed.finish() == f"done {TURNS} MaxTurns"
    assert _sales(sink) == 1 and _effects(db, "r2") == [("tool:record_sale", "done")]
    assert _check_ended(db, "r2") == ["buyer", "clerk", "buyer"]
