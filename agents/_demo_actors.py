"""A model-free demo: two actors rally typed messages (used until a model is at hand)."""

from __future__ import annotations

import threading

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler, message

__all__ = ["run"]


@message("llmos.demo.Ball")
class Ball:
    reply_to: ActorRef
    left: int


class _Player(Actor):
    def __init__(self, shout: str, done: threading.Event) -> None:
        super().__init__()
        self.shout = shout
        self.done = done

    @handler(Ball)
    def hit(self, ball: Ball) -> None:
        print(f"{self.actor_name:>5}: {self.shout} ({ball.left} to go)", flush=True)
        if ball.left == 0:
            self.done.set()
        else:
            ball.reply_to.tell(Ball(self.actor_ref, ball.left - 1))


def run(rallies: int = 6) -> int:
    done = threading.Event()
    alice = _Player.start("ping!", done, name="alice")
    bob = _Player.start("pong!", done, name="bob")
    try:
        alice.tell(Ball(bob, rallies))
        if not done.wait(10):
            raise actors.AskTimeout("the rally did not finish within 10 s")
    finally:
        actors.stop_all()
    return 0
