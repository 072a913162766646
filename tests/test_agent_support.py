"""Helpers shared by the agent tests (no tests here): supervised start, small agents."""

from __future__ import annotations

import threading
from typing import Any

from llmos.actors import Actor, ActorRef, handler
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Turn, Utterance
from llmos.kernel import kernel


def start_supervised(
    cls: type[Actor], *args: Any, name: str, supervisor: ActorRef | None = None, **kwargs: Any
) -> ActorRef:
    """Start ``cls`` under the kernel, restarted on any failure, an exception in an ask included.

    The kernel's own budget is 1 restart in 5 s per child; pass ``supervisor`` (a
    ``llmos.kernel.Supervisor`` ref) for another budget.
    """
    return kernel().spawn(
        cls, *args, name=name, restart_on_ask_error=True, supervisor=supervisor, **kwargs
    )


class Scripted(Agent):
    """Says its lines in order, then repeats the last one."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(description="says scripted lines")
        self.lines = lines
        self.said = 0
        self.turns_seen: list[Turn] = []

    @handler(Turn)
    def on_turn(self, turn: Turn) -> Utterance:
        self.turns_seen.append(turn)
        text = self.lines[min(self.said, len(self.lines) - 1)]
        self.said += 1
        return Utterance(self.agent_name, text)


class Flaky(Agent):
    """Raises on the turns listed in ``fail_on`` (a shared dict survives restarts), else talks."""

    def __init__(self, fail_on: dict[str, int]) -> None:
        super().__init__()
        self.fail_on = fail_on

    @handler(Turn)
    def on_turn(self, turn: Turn) -> str:
        if self.fail_on.get("turn") == turn.turn and self.fail_on.get("left", 0) > 0:
            self.fail_on["left"] -= 1
            raise RuntimeError(f"flaky failed on turn {turn.turn}")
        return f"{self.agent_name} speaks in turn {turn.turn}"


class Blocking(Agent):
    """Blocks each turn until ``release`` is set (at most ``limit`` seconds), then talks."""

    def __init__(
        self, release: threading.Event, entered: threading.Event, limit: float = 10
    ) -> None:
        super().__init__()
        self.release = release
        self.entered = entered
        self.limit = limit

    @handler(Turn)
    def on_turn(self, turn: Turn) -> str:
        self.entered.set()
        self.release.wait(self.limit)
        return f"{self.agent_name} finally speaks"
