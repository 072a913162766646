"""Durable runs: resume a recorded chat after a crash, replay it from its log.

Record with ``run_chat(..., record="runs.db")``. Then:

- :func:`resume_chat` runs the chat again with fresh agents: every call the log holds is
  answered from it (the agents take in the same turns and the same model outputs, so they
  rebuild their memory exactly), and the run goes on live from its last completed turn; no
  turn is lost or taken twice, and the transcript of the turns already taken is the same;
- :func:`replay_chat` re-executes a run with every model output served from the log and
  compares its transcript with the recorded one; ``live=True`` asks the model again instead
  and reports where it first diverges.

The fresh agents come from a :class:`ChatSetup`: given by the caller, or built by the run's
recipe (``recipe={"function": "module:function", "args": {...}}`` when it was recorded), which
is how ``llmos resume`` and ``llmos replay`` rebuild a run without the program that made it.
Resuming is for runs in one process; a participant on another node records nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

from llmos.actors import ActorRef
from llmos.agents._dialogue import run_chat
from llmos.agents._divergence import Divergence
from llmos.agents._errors import AgentError
from llmos.agents._group_chat import GroupChat
from llmos.agents._runlog import Recording, RunLogger
from llmos.agents._runstore import RunLogError, RunStore
from llmos.agents._transcript import ChatResult, Entry

__all__ = ["ChatSetup", "Replay", "build_setup", "replay_chat", "resume_chat", "transcript_text"]


@dataclasses.dataclass
class ChatSetup:
    """What a chat is made of: the (freshly started) participants, the task, the chat class
    and its other arguments (termination, selector, printer, ...).

    A recipe function returns one; :func:`resume_chat` and :func:`replay_chat` run it.
    """

    participants: Sequence[ActorRef | str]
    task: str = ""
    chat_class: type[GroupChat] = GroupChat
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Replay:
    """How a replay went.

    Attributes:
        result: the replayed chat's result.
        identical: its transcript (speakers, texts, turns, tokens, notes) is byte for byte the
            recorded one.
        first_difference: the index of the first transcript entry that differs (None when
            identical).
        divergence: with ``live``, where the model first answered otherwise (None: never).
        served: how many calls were answered from the log.
    """

    result: ChatResult
    identical: bool
    first_difference: int | None
    divergence: Divergence | None
    served: int


def transcript_text(entries: Sequence[Entry] | Sequence[dict[str, Any]]) -> bytes:
    """A transcript as JSONL bytes of what was said (index, kind, speaker, text, turn, tokens):
    what a replay must reproduce byte for byte."""
    lines = []
    for e in entries:
        d = e.as_dict() if isinstance(e, Entry) else e
        keep = {k: d[k] for k in ("index", "kind", "speaker", "text", "turn", "tokens")}
        lines.append(json.dumps(keep, ensure_ascii=False, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()


def build_setup(recipe: dict[str, Any] | None, run_id: str = "") -> ChatSetup:
    """Run a recipe: import ``module:function`` and call it with the recorded args.

    Raises:
        AgentError: no recipe, or it cannot be imported, or it returns no ChatSetup.
    """
    if not recipe or not isinstance(recipe.get("function"), str):
        raise AgentError(
            f"run {run_id!r} was recorded without a recipe, so it cannot be rebuilt here; "
            "resume it from Python with resume_chat(path, run_id, setup=ChatSetup(...)), or "
            "record with recipe={'function': 'module:function', 'args': {...}}"
        )
    module, _, name = recipe["function"].partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise AgentError(
            f"run {run_id!r}: cannot import its recipe {recipe['function']!r} ({exc}); run "
            "from where that module is importable"
        ) from exc
    setup = fn(**dict(recipe.get("args") or {}))
    if not isinstance(setup, ChatSetup):
        raise AgentError(f"recipe {recipe['function']!r} returned {setup!r}, not a ChatSetup")
    return setup


def _prepare(
    path: str | os.PathLike[str], run_id: str, setup: ChatSetup | None
) -> tuple[RunStore, dict[str, Any], ChatSetup]:
    store = RunStore(path, create=False)
    try:
        run = store.run(run_id)
        if setup is None:
            setup = build_setup(run["recipe"], run_id)
        names = [p if isinstance(p, str) else p.name for p in setup.participants]
        if names != run["participants"]:
            raise AgentError(
                f"run {run_id!r} was recorded with participants {run['participants']}, the "
                f"setup has {names}; rebuild the same agents under the same names"
            )
    except BaseException:
        store.close()
        raise
    return store, run, setup


def _options(setup: ChatSetup, printer: Any) -> dict[str, Any]:
    options = {
        k: v for k, v in setup.options.items() if k not in ("record", "run_id", "recipe", "name")
    }
    if printer != "default":
        options["printer"] = printer
    return options


def resume_chat(
    path: str | os.PathLike[str],
    run_id: str,
    *,
    setup: ChatSetup | None = None,
    timeout: float = 300.0,
    printer: Any = "default",
) -> ChatResult:
    """Resume a recorded run from its last completed turn (see the module docstring).

    Args:
        path: the run log.
        run_id: the run to resume (one that has not ended normally).
        setup: fresh participants and the chat's arguments (default: the run's recipe).
        timeout: the most seconds for the rest of the run.
        printer: where to stream the chat ("default": as the setup says).

    Returns:
        The result of the whole run, recorded turns and new ones.

    Raises:
        RunLogError: the file or the run cannot be read, or the run has ended already.
        AgentError: no setup and no recipe, or participants that do not match.
    """
    store, run, setup = _prepare(path, run_id, setup)
    if run["status"] == "ended":
        store.close()
        raise RunLogError(
            f"run {run_id!r} in {str(store.path)!r} has ended already ({run['reason']}); "
            "there is nothing to resume (`llmos replay` re-executes it)"
        )
    recording = Recording(store, run_id, "resume", RunLogger.start(store))
    try:
        return run_chat(
            setup.participants,
            setup.task,
            chat_class=setup.chat_class,
            name=run["chat"],
            timeout=timeout,
            record=recording,
            recipe=run["recipe"],
            **_options(setup, printer),
        )
    finally:
        recording.close()


def replay_chat(
    path: str | os.PathLike[str],
    run_id: str,
    *,
    live: bool = False,
    setup: ChatSetup | None = None,
    timeout: float = 300.0,
    printer: Any = None,
) -> Replay:
    """Re-execute a recorded run; nothing is written to the log, no effect is performed.

    Args:
        path: the run log.
        run_id: the run.
        live: ask the model again (with the recorded parameters: the same seeds, so a greedy
            or seeded run should repeat) instead of serving its outputs from the log.
        setup: fresh participants and the chat's arguments (default: the run's recipe).
        timeout: the most seconds for the replay.
        printer: where to stream the replayed chat (default: nowhere).

    Raises:
        RunLogError: the file or the run cannot be read, or (not live) the replay made a call
            the log does not hold.
        AgentError: no setup and no recipe, or participants that do not match.
    """
    store, run, setup = _prepare(path, run_id, setup)
    recording = Recording(store, run_id, "live" if live else "replay")
    try:
        result = run_chat(
            setup.participants,
            setup.task,
            chat_class=setup.chat_class,
            name=run["chat"],
            timeout=timeout,
            record=recording,
            **_options(setup, printer),
        )
        logged = store.entries(run_id)
    finally:
        recording.close()
    new = transcript_text(result.transcript).splitlines()
    old = transcript_text(logged).splitlines()
    first = next(
        (i for i, (a, b) in enumerate(zip(new, old, strict=False)) if a != b),
        None if len(new) == len(old) else min(len(new), len(old)),
    )
    return Replay(result, first is None, first, recording.divergence, recording.served)
