"""A real SQLite "bank" and a teller process for the exactly-once effect tests.

Run as ``python tests/durable_bank.py RUN_DB BANK_DB N``: a small fork server (llmos is
imported once). For each ``run 1`` (idempotent) or ``run 0`` line on stdin it forks a teller
and prints ``started PID`` once the teller is under way, then ``exit PID CODE`` when it ends
(CODE -9 when it was SIGKILLed); end of stdin ends it.

:func:`teller` performs transfers ``0..n-1`` through an :class:`EffectJournal`, each one a
bank transaction that moves money and writes a ledger row; the tests SIGKILL it at random
points and start it again. With ``idempotent`` the bank applies each effect key once (what an
idempotency key buys); without it the bank applies whatever it is asked, so only the journal
(and the decision on an effect in doubt) keeps a transfer from being made twice.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from llmos.agents import EffectInDoubt, EffectJournal

RUN = "bank-run"
IN_DOUBT = 3  # the teller's exit code when an effect waits for a decision


def open_bank(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INTEGER);
        CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, transfer INTEGER, key TEXT);
        CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS replays (key TEXT);
        INSERT OR IGNORE INTO accounts VALUES ('alice', 100000), ('bob', 0);
        """
    )
    return db


def amount(i: int) -> int:
    return 1 + i % 7


def transfer(db: sqlite3.Connection, idempotent: bool, args: dict[str, Any], key: str) -> Any:
    """Move ``amount`` from alice to bob in one bank transaction; answer bob's balance."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if idempotent and db.execute("SELECT 1 FROM applied WHERE key=?", (key,)).fetchone():
            db.execute("INSERT INTO replays VALUES (?)", (key,))  # seen before: no second move
        else:
            db.execute(
                "UPDATE accounts SET balance=balance-? WHERE name='alice'", (args["amount"],)
            )
            db.execute("UPDATE accounts SET balance=balance+? WHERE name='bob'", (args["amount"],))
            db.execute("INSERT INTO ledger (transfer, key) VALUES (?, ?)", (args["transfer"], key))
            if idempotent:
                db.execute("INSERT INTO applied VALUES (?)", (key,))
        balance = db.execute("SELECT balance FROM accounts WHERE name='bob'").fetchone()[0]
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return {"bob": balance}


def teller(run_db: str, bank_db: str, n: int, idempotent: bool) -> None:
    """Perform transfers 0..n-1 once each (a process the tests kill); exit IN_DOUBT when an
    effect waits for a decision."""
    journal = EffectJournal(run_db, RUN + ("-idem" if idempotent else ""))
    bank = open_bank(Path(bank_db))
    os.write(1, f"started {os.getpid()}\n".encode())
    for i in range(n):
        args = {"transfer": i, "from": "alice", "to": "bob", "amount": amount(i)}
        try:
            journal.perform(
                "teller",
                i + 1,
                "transfer",
                args,
                lambda a, k: transfer(bank, idempotent, a, k),
                idempotent=idempotent,
            )
        except EffectInDoubt:
            os._exit(IN_DOUBT)
    os._exit(0)


def serve(run_db: str, bank_db: str, n: int) -> None:
    """Fork a teller for each command line; report how each one ended."""
    for line in sys.stdin:
        if not line.startswith("run "):
            continue
        pid = os.fork()
        if pid == 0:
            try:
                teller(run_db, bank_db, n, line.split()[1] == "1")
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        os.write(1, f"exit {pid} {code}\n".encode())


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
