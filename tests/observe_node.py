"""Actors a test ``llmos node`` runs for the views of a node (metrics, ``llmos top``, the
dashboard): spawned by import path (``--allow-spawn observe_node:*``, ``PYTHONPATH=tests``).

- :class:`CrashFarm`: a supervisor with a generous restart budget over one ``crasher``, which
  fails on each ``"crash"`` it is told (and is restarted at once).
- :class:`Stage`: a fake model, two gated agents and a chat between them; each turn waits for
  a ``"next"`` told to the ``gate`` actor, so a test decides when each turn is generated.
"""

from __future__ import annotations

import threading
from typing import Any

from llmos.actors import Actor, get, handler
from llmos.agents import Agent, GroupChat, MaxTurns, Turn, Utterance
from llmos.kernel import ChildSpec, Supervisor
from llmos.models import Completion, FakeModel, Generate

_turns = threading.Semaphore(0)


class Crasher(Actor):
    """Fails on ``"crash"``; answers anything else with itself."""

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash on request")
        return message


class CrashFarm(Supervisor):
    """Supervises ``crasher`` with room for many restarts and no backoff."""

    def __init__(self) -> None:
        super().__init__(
            [ChildSpec(Crasher, name="crasher")], max_restarts=10_000, within=1.0, backoff=None
        )


class Gate(Actor):
    """Lets one more turn through per ``"next"``."""

    def on_receive(self, message: Any) -> Any:
        if message == "next":
            _turns.release()
        return message


class Gated(Agent):
    """Speaks when the gate lets a turn through, with the fake model's words."""

    @handler(Turn)
    def on_turn(self, turn: Turn) -> Utterance:
        if not _turns.acquire(timeout=60):
            raise TimeoutError("no 'next' came to the gate within 60 s")
        heard = turn.new[-1]["text"] if turn.new else turn.task
        answer: Completion = (
            get("model")
            .ask(
                Generate(
                    messages=[{"role": "user", "content": heard}],
                    max_new_tokens=12,
                    requester=self.actor_name,
                    dialogue=turn.dialogue,
                ),
                timeout=10,
            )
            .get()
        )
        return Utterance(
            speaker=self.actor_name,
            text=answer.text,
            tokens=answer.completion_tokens,
            input_tokens=answer.prompt_tokens,
            output_tokens=answer.completion_tokens,
            model=answer.model,
        )


class Stage(Supervisor):
    """``model`` (a FakeModel), ``gate``, agents ``ada`` and ``rex``, and ``chat`` (six turns,
    started with StartChat)."""

    def __init__(self) -> None:
        super().__init__(
            [
                ChildSpec(FakeModel, name="model"),
                ChildSpec(Gate, name="gate"),
                ChildSpec(Gated, name="ada"),
                ChildSpec(Gated, name="rex"),
                ChildSpec(
                    GroupChat,
                    (["ada", "rex"], "what to watch"),
                    {"termination": MaxTurns(6), "printer": None, "speaker_timeout": 60.0},
                    name="chat",
                ),
            ],
            max_restarts=10,
            within=1.0,
        )
