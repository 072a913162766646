"""Exactly-once effects: 200 real SIGKILLs of a teller process at random points, a real
SQLite bank, zero transfers made twice and zero lost; and the effect rule inside a chat."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import durable_bank
import pytest
from durable_bank import IN_DOUBT, RUN, amount, open_bank

from llmos.actors import handler, stop_all
from llmos.agents import (
    Agent,
    ChatSetup,
    Dialogue,
    EffectInDoubt,
    EffectJournal,
    MaxTurns,
    Turn,
    Utterance,
    replay_chat,
    resume_chat,
    run_chat,
)

N = 120  # transfers per run
KILLS = 100  # per run: 200 in all


def _decide(journal: EffectJournal, bank_db: Path) -> int:
    """What an operator does for an effect in doubt: look at the bank, then resolve it."""
    bank = open_bank(bank_db)
    try:
        decided = 0
        for rec in journal.in_doubt():
            made = bank.execute("SELECT 1 FROM ledger WHERE key=?", (rec.key,)).fetchone()
            journal.resolve(rec.key, done=made is not None, result={"bob": None})
            decided += 1
        return decided
    finally:
        bank.close()


def test_200_sigkills_no_transfer_twice_none_lost(tmp_path: Path) -> None:
    rng = random.Random(20)
    run_db, bank_db = tmp_path / "runs.db", tmp_path / "bank.db"
    open_bank(bank_db).close()
    server = subprocess.Popen(
        [sys.executable, str(Path(durable_bank.__file__)), str(run_db), str(bank_db), str(N)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert server.stdin is not None and server.stdout is not None
    kills = decisions = 0
    deadline = time.monotonic() + 120
    try:
        for idempotent in (True, False):
            killed = 0
            while True:
                assert time.monotonic() < deadline, "the kill loop ran out of time"
                server.stdin.write(f"run {int(idempotent)}\n")
                line = server.stdout.readline().split()
                if line[0] == "started":
                    pid = int(line[1])
                    if killed < KILLS:
                        threading.Event().wait(rng.uniform(0.0, 0.012))
                        with contextlib.suppress(ProcessLookupError):  # ended already
                            os.kill(pid, signal.SIGKILL)
                    line = server.stdout.readline().split()
                assert line[0] == "exit", line
                code = int(line[2])
                if code == -signal.SIGKILL:
                    killed += 1
                    continue
                if code == IN_DOUBT:
                    journal = EffectJournal(run_db, RUN)
                    try:
                        decisions += _decide(journal, bank_db)
                    finally:
                        journal.close()
                    continue
                assert code == 0, line
                if killed >= KILLS:
                    break
            kills += killed
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    assert kills == 2 * KILLS
    bank = open_bank(bank_db)
    try:
        counts = dict(
            bank.execute("SELECT transfer, COUNT(*) FROM ledger GROUP BY transfer").fetchall()
        )
        balances = dict(bank.execute("SELECT name, balance FROM accounts").fetchall())
        replays = bank.execute("SELECT COUNT(*) FROM replays").fetchone()[0]
    finally:
        bank.close()
    # Each run made every transfer: the ledger holds two rows per transfer, one per run.
    assert counts == dict.fromkeys(range(N), 2), "a transfer was made twice or lost"
    moved = 2 * sum(amount(i) for i in range(N))
    assert balances == {"alice": 100000 - moved, "bob": moved}
    for run in (RUN + "-idem", RUN):
        journal = EffectJournal(run_db, run)
        try:
            states = [r.state for r in journal.records()]
        finally:
            journal.close()
        assert states == ["done"] * N
    print(f"{kills} kills, {decisions} decisions on effects in doubt, {replays} keyed replays")
    # The kills did land between an intent and its result, in both runs.
    assert decisions > 0 and replays > 0


# -- the rule inside a chat -----------------------------------------------------------------------


class Teller(Agent):
    """Pays one coin each turn through an effect, and says the balance."""

    def __init__(self, paid: list[int], idempotent: bool = False) -> None:
        super().__init__()
        self.paid = paid
        self.idempotent = idempotent

    @handler(Turn)
    def speak(self, turn: Turn) -> Utterance:
        def pay(args: dict[str, Any], key: str) -> int:
            self.paid.append(args["turn"])
            return len(self.paid)

        total = self.agent_effect("pay", {"turn": turn.turn}, pay, idempotent=self.idempotent)
        return Utterance(self.agent_name, f"paid, {total} so far")


def _tellers(paid: list[int]) -> ChatSetup:
    a = Teller.start(paid, name="a")
    b = Teller.start(paid, name="b")
    return ChatSetup([a, b], "pay", Dialogue, {"termination": MaxTurns(4), "printer": None})


def test_a_recorded_effect_is_not_run_again_on_replay_or_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    paid: list[int] = []
    s = _tellers(paid)
    result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    assert paid == [1, 2, 3, 4]
    stop_all(timeout=10)
    replay = replay_chat(db, result.run_id, setup=_tellers(paid))
    assert replay.identical and paid == [1, 2, 3, 4]  # results from the journal, no payment


def test_an_effect_in_doubt_stops_the_run_for_a_decision(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    paid: list[int] = []
    s = _tellers(paid)
    result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    stop_all(timeout=10)
    journal = EffectJournal(db, result.run_id)
    try:  # as if the process had died while turn 3's payment ran
        with journal.store.transaction() as conn:
            conn.execute("UPDATE effects SET state='started', result=NULL WHERE turn=3")
            conn.execute("DELETE FROM entries WHERE turn>=3")
            conn.execute("DELETE FROM calls WHERE turn>=3")
            conn.execute("UPDATE runs SET status='running'")
    finally:
        journal.close()
    stopped = resume_chat(db, result.run_id, setup=_tellers(paid))
    assert stopped.stopped_by == "effect" and "in doubt" in stopped.reason
    assert paid == [1, 2, 3, 4]
    stop_all(timeout=10)
    journal = EffectJournal(db, result.run_id)
    try:
        (doubt,) = journal.in_doubt()
        with pytest.raises(EffectInDoubt):
            journal.perform("a", 3, "pay", {"turn": 3}, lambda a, k: 0)
        journal.resolve(doubt.key, done=True, result=3)
    finally:
        journal.close()
    done = resume_chat(db, result.run_id, setup=_tellers(paid))
    assert done.stopped_by == "MaxTurns" and paid == [1, 2, 3, 4]
    assert [e.text for e in done.utterances][2] == "paid, 3 so far"
