"""The run store: one SQLite file (WAL mode) holding recorded runs, read and written here only.

Tables (one row per ...):

- ``runs``: run (id, chat, task, participants, recipe, status, why it ended, resumes);
- ``messages``: message between the run's actors (sender, receiver, wire type, msgpack payload,
  time, ``key`` and the ``cause`` key it answers or follows);
- ``calls``: request an agent made during a turn through ``Agent.ask_agent`` (a model's
  Generate and its Completion, mostly), keyed by agent, turn and order within the turn;
- ``entries``: transcript entry (utterances and notes);
- ``effects``: side effect, with its state (``started``, ``done``, ``failed``) and result.

Every write is idempotent (``INSERT OR IGNORE`` on a natural key), so a resumed run that
re-executes the turns it already took writes nothing twice. Any SQLite failure surfaces as one
:class:`RunLogError` naming the file.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack

from llmos.actors import ActorRef, message_fields, wire_name
from llmos.actors.lowlevel import message_class
from llmos.agents._errors import AgentError

__all__ = ["SCHEMA_VERSION", "RunLogError", "RunStore", "pack", "unpack", "unpack_message"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL, updated REAL, chat TEXT, kind TEXT, task TEXT,
    participants TEXT, recipe TEXT, status TEXT, reason TEXT, stopped_by TEXT,
    turns INTEGER, resumes INTEGER);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, run_id TEXT, key TEXT, cause TEXT, at REAL, sender TEXT,
    receiver TEXT, wire_type TEXT, payload BLOB, UNIQUE (run_id, key));
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, run_id TEXT, agent TEXT, turn INTEGER, seq INTEGER, cause TEXT,
    target TEXT, at REAL, seconds REAL, request_type TEXT, request BLOB, reply_type TEXT,
    reply BLOB, UNIQUE (run_id, agent, turn, seq));
CREATE TABLE IF NOT EXISTS entries (
    run_id TEXT, idx INTEGER, kind TEXT, speaker TEXT, text TEXT, turn INTEGER, at REAL,
    tokens INTEGER, seconds REAL, PRIMARY KEY (run_id, idx));
CREATE TABLE IF NOT EXISTS effects (
    run_id TEXT, key TEXT, agent TEXT, turn INTEGER, name TEXT, args BLOB, state TEXT,
    result BLOB, error TEXT, started REAL, finished REAL, PRIMARY KEY (run_id, key));
"""

_INSERT = {
    "messages": "INSERT OR IGNORE INTO messages "
    "(run_id, key, cause, at, sender, receiver, wire_type, payload) VALUES (?,?,?,?,?,?,?,?)",
    "calls": "INSERT OR IGNORE INTO calls (run_id, agent, turn, seq, cause, target, at, "
    "seconds, request_type, request, reply_type, reply) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "entries": "INSERT OR IGNORE INTO entries "
    "(run_id, idx, kind, speaker, text, turn, at, tokens, seconds) VALUES (?,?,?,?,?,?,?,?,?)",
    "trim_entries": "DELETE FROM entries WHERE run_id=? AND idx>=?",
}


class RunLogError(AgentError):
    """Raised when a run log cannot be opened, read or written: a missing, corrupted or
    truncated database, a full disk, or a run id the file does not hold.

    The message names the file. Nothing in the file is changed or removed by the failure.
    """


# -- payloads ------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    """What msgpack cannot pack itself: a message as a dict with its wire name under ``@``, a
    ref as its name, anything else as its repr."""
    name = wire_name(type(value))
    if name is not None:
        out = message_fields(value)
        out["@"] = name
        return out
    if isinstance(value, ActorRef):
        return {"@ref": value.name}
    return {"@repr": repr(value)[:200]}


def pack(value: Any) -> bytes:
    """A message or plain value as msgpack bytes (refs kept as their names)."""
    data: bytes = msgpack.packb(value, default=_encode, use_bin_type=True)
    return data


def unpack(data: bytes | None) -> Any:
    """The plain value :func:`pack` stored (messages as dicts with their wire name in ``@``)."""
    if data is None:
        return None
    return msgpack.unpackb(data, raw=False)


def unpack_message(data: bytes | None) -> Any:
    """The value :func:`pack` stored, with registered messages rebuilt as their classes.

    A ref inside comes back as None (the actor it named belongs to the recorded process).
    """

    def build(value: Any) -> Any:
        if isinstance(value, list):
            return [build(v) for v in value]
        if isinstance(value, dict):
            if "@ref" in value or "@repr" in value:
                return None
            name = value.get("@")
            fields = {k: build(v) for k, v in value.items() if k != "@"}
            if isinstance(name, str):
                cls = message_class(name)
                hints = getattr(cls, "__annotations__", {})
                for k, v in fields.items():  # msgpack has no tuples
                    if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
                        fields[k] = tuple(v)
                return cls(**fields)
            return fields
        return value

    return build(unpack(data))


# -- the store ----------------------------------------------------------------------------------


class RunStore:
    """One run database, opened for reading and writing by one thread at a time.

    Args:
        path: the SQLite file; created when missing (unless ``create`` is False).
        create: make the file (and its tables) if it does not exist.
        durable: fsync every commit (``synchronous=FULL``); otherwise a commit survives a
            crash of the process (kill -9), not necessarily a power cut.

    Raises:
        RunLogError: the file is missing (``create`` False), not a database, corrupted or
            truncated, or of a newer schema.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, durable: bool = False
    ) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise RunLogError(f"run log {str(self.path)!r} does not exist")
        else:
            self._check_readable()
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RunLogError(
                    f"run log {str(self.path)!r} has schema {version}, newer than this llmos "
                    f"({SCHEMA_VERSION}); upgrade llmos to read it"
                )
            if version < SCHEMA_VERSION:
                with self.db:
                    self.db.executescript(_SCHEMA)
                    self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise self.error("cannot open", exc) from exc

    def _check_readable(self) -> None:
        """Read the whole file through a read-only connection first: a damaged file is
        reported, never written to."""
        try:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            probe = sqlite3.connect(uri, uri=True, timeout=30.0)
            try:
                found = probe.execute("PRAGMA quick_check").fetchone()
            finally:
                probe.close()
        except sqlite3.Error as exc:
            raise self.error("cannot read", exc) from exc
        if not found or found[0] != "ok":
            raise RunLogError(
                f"run log {str(self.path)!r} is corrupted ({found[0] if found else 'no answer'}); "
                "it was left as it is: restore it from a copy, or record to another file"
            )

    def error(self, what: str, exc: BaseException) -> RunLogError:
        """A RunLogError naming the file, for a failed SQLite operation."""
        if what.startswith("cannot write"):
            why = (
                "a full disk, a file size limit, a read-only or removed folder, or a damaged "
                "file; it keeps what was committed before"
            )
        else:
            why = "the file may be corrupted or truncated; it was left as it is"
        return RunLogError(f"{what} run log {str(self.path)!r}: {exc} ({why})")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction (committed at the end, rolled back on error)."""
        with self.lock:
            try:
                with self.db:
                    yield self.db
            except sqlite3.Error as exc:
                raise self.error("cannot write to", exc) from exc

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        with self.lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self.error("cannot read", exc) from exc

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        with self.lock:
            self.db.close()

    # -- writes ----------------------------------------------------------------------------

    def write_rows(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Insert a batch of ``(table, row)`` in one transaction, in order (rows already
        stored are kept: a resumed run writes nothing twice)."""
        with self.transaction() as db:
            for table, group in itertools.groupby(rows, key=operator.itemgetter(0)):
                db.executemany(_INSERT[table], [row for _table, row in group])

    # A resumed run that takes another path than the log (a turn cut off by a stop now
    # succeeds) replaces the transcript from the first entry that differs ("trim_entries").

    def begin_run(
        self,
        run_id: str,
        *,
        chat: str,
        kind: str,
        task: str,
        participants: Sequence[str],
        recipe: dict[str, Any] | None,
    ) -> None:
        """Add a run (status ``running``), or count one more resume of a run already there."""
        now = time.time()
        with self.transaction() as db:
            found = db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if found is None:
                db.execute(
                    "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        run_id,
                        now,
                        now,
                        chat,
                        kind,
                        task,
                        json.dumps(list(participants)),
                        json.dumps(recipe) if recipe else "",
                        "running",
                        "",
                        "",
                        0,
                        0,
                    ),
                )
            else:
                db.execute(
                    "UPDATE runs SET resumes=resumes+1, updated=?, status='running' WHERE run_id=?",
                    (now, run_id),
                )

    def end_run(
        self,
        run_id: str,
        *,
        reason: str,
        stopped_by: str,
        turns: int,
        participants: Sequence[str] | None = None,
    ) -> None:
        """Record how the run ended (and, if given, who took part)."""
        status = "stopped" if stopped_by in ("stopped", "error", "effect") else "ended"
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status=?, reason=?, stopped_by=?, turns=?, updated=? "
                "WHERE run_id=?",
                (status, reason, stopped_by, turns, time.time(), run_id),
            )
            if participants is not None:
                db.execute(
                    "UPDATE runs SET participants=? WHERE run_id=?",
                    (json.dumps(list(participants)), run_id),
                )

    # -- reads -----------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, as dicts (the ``runs`` table's columns)."""
        rows = self.query("SELECT * FROM runs ORDER BY created")
        return [self._run_dict(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's row as a dict.

        Raises:
            RunLogError: the file holds no run of that id.
        """
        rows = self.query("SELECT * FROM runs WHERE run_id=?", (run_id,))
        if not rows:
            known = [r["run_id"] for r in self.runs()][-5:]
            raise RunLogError(
                f"run log {str(self.path)!r} holds no run {run_id!r} (latest: {known}); "
                "`llmos runs FILE` lists them"
            )
        return self._run_dict(rows[0])

    @staticmethod
    def _run_dict(row: tuple[Any, ...]) -> dict[str, Any]:
        keys = (
            "run_id created updated chat kind task participants recipe status reason "
            "stopped_by turns resumes"
        ).split()
        out = dict(zip(keys, row, strict=True))
        out["participants"] = json.loads(out["participants"] or "[]")
        out["recipe"] = json.loads(out["recipe"]) if out["recipe"] else None
        return out

    def entries(self, run_id: str) -> list[dict[str, Any]]:
        """The run's transcript entries, in order."""
        keys = ("index", "kind", "speaker", "text", "turn", "at", "tokens", "seconds")
        rows = self.query(
            "SELECT idx, kind, speaker, text, turn, at, tokens, seconds FROM entries "
            "WHERE run_id=? ORDER BY idx",
            (run_id,),
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        """The run's recorded calls (requests and replies still packed), in order."""
        keys = (
            "agent turn seq cause target at seconds request_type request reply_type reply"
        ).split()
        rows = self.query(
            f"SELECT {', '.join(keys)} FROM calls WHERE run_id=? ORDER BY id", (run_id,)
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def messages(self, run_id: str) -> list[dict[str, Any]]:
        """The run's recorded messages (payloads still packed), in order."""
        keys = ("key", "cause", "at", "sender", "receiver", "wire_type", "payload")
        rows = self.query(
            f"SELECT {', '.join(keys)} FROM messages WHERE run_id=? ORDER BY id", (run_id,)
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def selections(self, run_id: str) -> dict[int, str]:
        """The speaker the chat's selector picked for each turn, as recorded."""
        rows = self.query(
            "SELECT key, payload FROM messages WHERE run_id=? AND key LIKE 'select/%'", (run_id,)
        )
        out: dict[int, str] = {}
        for key, payload in rows:
            name = unpack(payload)
            if isinstance(name, str):
                out[int(key.split("/")[1])] = name
        return out

    def size(self, run_id: str) -> int:
        """Bytes of the run's recorded rows (payloads, texts and keys)."""
        total = 0
        for sql in (
            "SELECT SUM(LENGTH(payload) + LENGTH(key) + LENGTH(cause) + LENGTH(sender) "
            "+ LENGTH(receiver) + LENGTH(wire_type) + 8) FROM messages WHERE run_id=?",
            "SELECT SUM(LENGTH(request) + LENGTH(reply) + LENGTH(agent) + LENGTH(cause) "
            "+ LENGTH(target) + 24) FROM calls WHERE run_id=?",
            "SELECT SUM(LENGTH(text) + LENGTH(speaker) + LENGTH(kind) + 32) FROM entries "
            "WHERE run_id=?",
        ):
            found = self.query(sql, (run_id,))
            total += int(found[0][0] or 0)
        return total
