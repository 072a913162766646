"""Helpers shared by the agent tests (no tests here): a restarting supervisor, small agents."""

from __future__ import annotations

import threading
from typing import Any

from llmos.actors import Actor, ActorRef, Cell, handler
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Turn, Utterance


class Restarter:
    """A minimal supervisor: restart every failed child at once (stands in for the kernel)."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.restarted = threading.Event()

    def child_failed(self, cell: Cell, error: BaseException) -> None:
        self.failures.append(error)
        self.restarted.set()  # before the restart: the new instance may answer at once
        cell.restart()

    def child_stopped(self, cell: Cell) -> None:
        pass


def start_supervised(
    cls: type[Actor], *args: Any, name: str, **kwargs: Any
) -> tuple[ActorRef, Restarter]:
    """Start ``cls`` restarted on any failure, an exception while handling an ask included."""
    sup = Restarter()
    cell = Cell(
        lambda: cls(*args, **kwargs),
        name,
        cls.actor_mailbox(),
        class_name=cls.__name__,
        supervisor=sup,
        ask_errors_fail=True,
    )
    cell.start()
    return cell.ref, sup


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
