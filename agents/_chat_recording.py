"""A chat's run in the run log: open it, begin it, end it.

These are the ends of a recorded chat's life; what happens in between (each Turn, answer and
transcript entry) goes through the :class:`~llmos.agents.Recording` itself (see
``llmos.agents._runlog``).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from typing import Any

from llmos.agents._runlog import Recording, register
from llmos.agents._runstore import RunLogError
from llmos.agents._transcript import ChatResult

__all__ = ["begin_recording", "finish_recording", "open_recording"]

log = logging.getLogger("llmos.agents.chat")


def open_recording(
    record: str | os.PathLike[str] | Recording | None, run_id: str | None
) -> Recording | None:
    """The recording a chat made with ``record=`` writes to (None: it records nothing).

    Args:
        record: a run log's path (a new run is opened in it), a Recording (used as it is:
            how a resume or a replay runs a chat), or None.
        run_id: the new run's id (default: the time and a random part).

    Raises:
        RunLogError: the run log cannot be opened (it names the file).
    """
    if record is None or isinstance(record, Recording):
        return record
    new_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    return Recording.open(record, new_id)


def begin_recording(
    rec: Recording,
    chat: str,
    kind: str,
    task: str,
    participants: Sequence[str],
    recipe: dict[str, Any] | None,
) -> None:
    """Begin the chat's run in the log (unless it only reads it), and register the recording
    under the chat's name, so the agents answering its turns record through it."""
    if rec.writes:
        rec.store.begin_run(
            rec.run_id,
            chat=chat,
            kind=kind,
            task=task,
            participants=participants,
            recipe=recipe,
        )
    register(chat, rec)


def finish_recording(rec: Recording, chat: str, result: ChatResult, owns: bool) -> str:
    """Commit the run's last rows and its end; the log's first failure ("" if none).

    Args:
        rec: the chat's recording.
        chat: the chat's name (its recording is unregistered).
        result: how the chat ended.
        owns: the chat opened the recording, so it closes it too.
    """
    register(chat, None)
    error = ""
    try:
        rec.end_run(reason=result.reason, stopped_by=result.stopped_by, turns=result.turns)
    except RunLogError as exc:
        log.error("%s: %s", chat, exc)
        error = str(exc)
    error = rec.lost or error
    if owns:
        rec.close()
    return error
