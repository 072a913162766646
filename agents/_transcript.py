"""Transcripts: what was said in a dialogue, printed as it happens and saved as JSONL and Markdown.

A transcript is a list of :class:`Entry` records: utterances of the participants and notes of the
dialogue itself (a retried or skipped turn, the end). A finished dialogue gives a
:class:`ChatResult`. :class:`TranscriptWriter` appends each entry to ``<stem>.jsonl`` as it
happens and writes ``<stem>.md`` at the end; :class:`ConsolePrinter` streams to a terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Protocol

from llmos.actors import message, message_fields
from llmos.agents._errors import AgentError
from llmos.kernel import Ledger

__all__ = [
    "ChatResult",
    "ChatTimeout",
    "ConsolePrinter",
    "Entry",
    "Printer",
    "TranscriptWriter",
    "read_jsonl",
    "to_markdown",
]


@message("llmos.agents.Entry")
class Entry:
    """One line of a transcript.

    Attributes:
        index: its position in the transcript, from 0.
        kind: "utterance" (a participant spoke) or "note" (the dialogue says something).
        speaker: who spoke; "" for a note.
        text: what was said, or the note.
        turn: the turn it belongs to, from 1 (0 for notes outside any turn).
        at: ``time.time()`` when it was recorded.
        tokens: tokens of an utterance (the model's count, else whitespace words).
        seconds: how long the speaker took to answer.
        trace_id: the trace of the turn that produced an utterance (32 hex digits; "" when
            tracing is off), to find it in a trace collector.
    """

    index: int
    kind: str
    speaker: str
    text: str
    turn: int
    at: float
    tokens: int = 0
    seconds: float = 0.0
    trace_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The entry as a plain dict (one JSONL record)."""
        return message_fields(self)


@message("llmos.agents.ChatResult")
class ChatResult:
    """How a dialogue went and why it ended.

    Attributes:
        dialogue: the dialogue's name.
        task: its topic or question.
        reason: why it ended, in words (which condition fired and why, or what went wrong).
        stopped_by: what ended it: a termination condition's name ("MaxTurns", "Repetition",
            ...), "speaker" (a participant ended it, e.g. a human typing /quit), "no_speakers"
            (no participant could speak), "stopped" (asked to stop, or run out of time), or
            "error"; "" while it is still running.
        transcript: every entry, oldest first.
        turns: turns taken (skipped turns included).
        tokens: tokens of all utterances.
        seconds: wall-clock time from start to end.
        participants: the participants' names.
        jsonl_path: where the JSONL transcript was saved ("" if not saved).
        markdown_path: where the Markdown transcript was saved ("" if not saved).
        ledger: the model tokens in and out its turns spent, per agent and per model (None
            when unknown); saved with the transcript.
        run_id: the recorded run's id ("" when the chat was not recorded).
        run_log_error: why the run log failed during the chat (a full disk, a file over a size
            limit, a removed folder, a damaged file: the first failure, naming the file), or
            "" when every row was committed or the chat was not recorded. The chat itself
            goes on to its end; the log keeps what was committed before the failure (its run
            stays ``running``, so ``llmos resume`` can take it up again elsewhere).
    """

    dialogue: str
    task: str
    reason: str
    stopped_by: str
    transcript: list[Entry]
    turns: int
    tokens: int
    seconds: float
    participants: list[str]
    jsonl_path: str = ""
    markdown_path: str = ""
    ledger: Ledger | None = None
    run_id: str = ""
    run_log_error: str = ""

    @property
    def utterances(self) -> list[Entry]:
        """The participants' utterances (no notes)."""
        return [e for e in self.transcript if e.kind == "utterance"]

    @property
    def speakers(self) -> list[str]:
        """Who spoke, in order."""
        return [e.speaker for e in self.utterances]

    @property
    def notes(self) -> list[Entry]:
        """The dialogue's own notes."""
        return [e for e in self.transcript if e.kind == "note"]

    @property
    def ended_normally(self) -> bool:
        """True if a termination condition or a participant ended it (not a stop or failure)."""
        return self.stopped_by not in ("", "stopped", "error", "no_speakers")


class ChatTimeout(AgentError, TimeoutError):
    """Raised by :func:`run_chat` when the chat has not ended within ``timeout``.

    The chat is stopped first; what was said so far is in ``result`` (``stopped_by``
    "stopped"). Unlike a :class:`~llmos.agents.TimeLimit` condition, which ends a chat normally,
    this means the caller's bound ran out: raise it, or add a TimeLimit condition.

    Attributes:
        result: the chat up to the moment it was stopped.
    """

    def __init__(self, text: str, result: ChatResult | None) -> None:
        super().__init__(text)
        self.result = result


def to_markdown(result: ChatResult) -> str:
    """The transcript as a Markdown document."""
    lines = [f"# {result.dialogue}", ""]
    if result.task:
        lines += [f"**Task:** {result.task}", ""]
    lines += [f"**Participants:** {', '.join(result.participants)}", ""]
    for e in result.transcript:
        if e.kind == "utterance":
            lines += [f"**{e.speaker}** (turn {e.turn}):", "", e.text, ""]
        else:
            lines += [f"> _{e.text}_", ""]
    lines += [
        "---",
        "",
        f"**Ended:** {result.reason} ({result.turns} turns, {result.tokens} tokens, "
        f"{result.seconds:.1f} s)",
        "",
    ]
    if result.ledger is not None and result.ledger.agents:
        lines += ["| agent | input tokens | output tokens | model calls |", "|---|---:|---:|---:|"]
        for name, usage in sorted(result.ledger.agents.items()):
            lines.append(
                f"| {name} | {usage.input_tokens} | {usage.output_tokens} | {usage.requests} |"
            )
        lines.append("")
    return "\n".join(lines)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSONL transcript back: one dict per entry, then the closing ``"end"`` record.

    Raises:
        AgentError: the file is missing or holds a line that is not JSON.
    """
    try:
        with Path(path).open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read transcript {str(path)!r}: {exc}") from exc


class TranscriptWriter:
    """Saves a transcript as it grows: JSONL line by line, Markdown at the end.

    Args:
        stem: the path without extension; ``<stem>.jsonl`` and ``<stem>.md`` are written (a
            folder is created if needed, earlier files of the same name are replaced).

    Raises:
        AgentError: the files cannot be written.
    """

    def __init__(self, stem: str | os.PathLike[str]) -> None:
        base = Path(stem)
        if base.suffix in (".jsonl", ".md"):
            base = base.with_suffix("")
        self.jsonl_path = base.with_name(base.name + ".jsonl")
        self.markdown_path = base.with_name(base.name + ".md")
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = self.jsonl_path.open("w", encoding="utf-8")
        except OSError as exc:
            raise AgentError(
                f"cannot write the transcript to {str(self.jsonl_path)!r}: {exc}; pick a "
                "writable save_to path"
            ) from exc

    def write(self, entry: Entry) -> None:
        """Append one entry to the JSONL file (flushed, so a crash loses nothing said)."""
        if self._file is not None:
            self._file.write(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n")
            self._file.flush()

    def finish(self, result: ChatResult) -> None:
        """Close the JSONL file with an ``end`` record and write the Markdown file."""
        if self._file is None:
            return
        end = {
            "kind": "end",
            "reason": result.reason,
            "stopped_by": result.stopped_by,
            "turns": result.turns,
            "tokens": result.tokens,
            "seconds": result.seconds,
            "at": time.time(),
            "ledger": result.ledger.as_dict() if result.ledger is not None else None,
        }
        self._file.write(json.dumps(end, ensure_ascii=False) + "\n")
        self._file.close()
        self._file = None
        self.markdown_path.write_text(to_markdown(result), encoding="utf-8")

    def close(self) -> None:
        """Close the JSONL file without an end record (safe to call twice)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class Printer(Protocol):
    """Where a dialogue streams its progress (``ConsolePrinter``, or your own)."""

    def chunk(self, speaker: str, text: str) -> None:
        """A piece of an utterance being generated (token streaming)."""

    def entry(self, entry: Entry) -> None:
        """An utterance or note, once complete."""

    def end(self, result: ChatResult) -> None:
        """The dialogue ended."""


class ConsolePrinter:
    """Prints a dialogue to a terminal as it happens.

    Args:
        stream: where to print (default: ``sys.stdout`` at print time).
        show_chunks: print tokens as they are generated, when the model streams them.
    """

    def __init__(self, stream: IO[str] | None = None, show_chunks: bool = True) -> None:
        self.stream = stream
        self.show_chunks = show_chunks
        self._open: str | None = None  # the speaker whose streamed line is being printed
        self._streamed = ""  # what was streamed of that line so far

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def chunk(self, speaker: str, text: str) -> None:
        if not self.show_chunks:
            return
        out = self._out()
        if self._open != speaker:
            if self._open is not None:
                out.write("\n")
            out.write(f"{speaker}: ")
            self._open, self._streamed = speaker, ""
        out.write(text)
        self._streamed += text
        out.flush()

    def entry(self, entry: Entry) -> None:
        out = self._out()
        streamed = self._streamed.strip() if self._open == entry.speaker else None
        if entry.kind == "utterance" and streamed is not None and entry.text.startswith(streamed):
            # Its text is on screen already, or the start of it (chunks from another node may
            # trail the answer): finish the line.
            out.write(entry.text[len(streamed) :] + "\n")
        else:
            if self._open is not None:
                out.write("\n")
            if entry.kind == "utterance":
                out.write(f"{entry.speaker}: {entry.text}\n")
            else:
                out.write(f"  [{entry.text}]\n")
        self._open, self._streamed = None, ""
        out.flush()

    def end(self, result: ChatResult) -> None:
        out = self._out()
        if self._open is not None:
            out.write("\n")
            self._open, self._streamed = None, ""
        out.write(
            f"-- ended: {result.reason} ({result.turns} turns, {result.tokens} tokens, "
            f"{result.seconds:.1f} s)\n"
        )
        out.flush()
