"""Operation logs: one structured record per message an agent handles.

Each :class:`~llmos.agents.Agent` keeps an :class:`OpLog`: who handled what, when, for how long,
and how it ended. The newest records stay in memory (bounded); with a path they are also
appended to a JSONL file as they happen, one JSON object per line, so a log survives the process
and several agents may share one file.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from llmos.agents._errors import AgentError

__all__ = ["OpLog", "OpRecord"]

_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _lock_for(path: str) -> threading.Lock:
    with _file_locks_guard:
        lock = _file_locks.get(path)
        if lock is None:
            lock = _file_locks[path] = threading.Lock()
        return lock


@dataclasses.dataclass(frozen=True, slots=True)
class OpRecord:
    """One handled message.

    Attributes:
        agent: the name of the agent that handled it.
        op: the handler that ran (its method name), or "refused" / "unhandled".
        message_type: the message's wire name, or its Python type name.
        started_at: ``time.time()`` when handling began.
        seconds: how long the handler ran.
        outcome: "ok", "error" (the handler raised), "refused" (input validation failed) or
            "unhandled" (no handler for that type).
        error_type: the exception's class name when the outcome is not "ok", else "".
        error: the exception's message (cut to 300 characters), else "".
    """

    agent: str
    op: str
    message_type: str
    started_at: float
    seconds: float
    outcome: str
    error_type: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (what a JSONL line holds)."""
        return dataclasses.asdict(self)


class OpLog:
    """A bounded in-memory operation log, optionally mirrored to a JSONL file.

    Args:
        capacity: how many of the newest records to keep in memory.
        path: a file to append every record to as one JSON line (created with its folder).

    Raises:
        AgentError: the capacity is not a positive int, or the file cannot be opened.
    """

    def __init__(self, capacity: int = 1000, path: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise AgentError(f"an OpLog capacity must be an int >= 1, got {capacity!r}")
        self._records: collections.deque[OpRecord] = collections.deque(maxlen=capacity)
        self.count = 0
        self.path: Path | None = Path(path) if path is not None else None
        self._file: IO[str] | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            except OSError as exc:
                raise AgentError(
                    f"cannot open the operation log file {str(self.path)!r}: {exc}; pick a "
                    "writable path or pass oplog=None"
                ) from exc

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: OpRecord) -> None:
        """Keep a record and append it to the file, if there is one."""
        self._records.append(record)
        self.count += 1
        if self._file is not None and self.path is not None:
            line = json.dumps(record.as_dict(), ensure_ascii=False)
            with _lock_for(str(self.path.resolve())):
                self._file.write(line + "\n")
                self._file.flush()

    def records(self, outcome: str | None = None) -> list[OpRecord]:
        """The records kept, oldest first; only those with ``outcome`` if given."""
        kept = list(self._records)
        return kept if outcome is None else [r for r in kept if r.outcome == outcome]

    def close(self) -> None:
        """Close the file (records are still kept in memory). Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[OpRecord]:
        """Read the records back from a JSONL operation log file.

        Raises:
            AgentError: the file is missing or a line is not a record.
        """
        out: list[OpRecord] = []
        number = 0
        try:
            with Path(path).open(encoding="utf-8") as f:
                for line in f:
                    number += 1
                    if line.strip():
                        out.append(OpRecord(**json.loads(line)))
        except (OSError, ValueError, TypeError) as exc:
            raise AgentError(
                f"cannot read operation log {str(path)!r} (line {number}): {exc}"
            ) from exc
        return out
