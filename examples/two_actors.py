"""Two actors talking: a ping-pong rally over typed messages, with tell, ask and a reply ref.

Run it with ``python examples/two_actors.py [--rallies N]``.
"""

from __future__ import annotations

import argparse
import threading

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler, message


@message("example.Ball")
class Ball:
    """One shot of the rally: who to hit it back to, and how many shots are left."""

    reply_to: ActorRef
    left: int


class Player(Actor):
    def __init__(self, shout: str, done: threading.Event) -> None:
        super().__init__()
        self.shout = shout
        self.done = done
        self.hits = 0

    @handler(Ball)
    def hit(self, ball: Ball) -> None:
        self.hits += 1
        print(f"{self.actor_name:>5}: {self.shout} ({ball.left} to go)")
        if ball.left == 0:
            self.done.set()
            return
        # Hit it back: the ball carries our ref so the other side can answer us.
        ball.reply_to.tell(Ball(self.actor_ref, ball.left - 1))

    def on_receive(self, message: object) -> object:
        if message == "score":
            return self.hits
        return super().on_receive(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rallies", type=int, default=6, help="shots in the rally")
    args = parser.parse_args(argv)

    done = threading.Event()
    ping = Player.start("ping!", done, name="alice")
    pong = Player.start("pong!", done, name="bob")
    try:
        ping.tell(Ball(pong, args.rallies))
        if not done.wait(10):
            print("the rally did not finish in 10 s")
            return 1
        alice = ping.ask("score", timeout=5).get()
        bob = pong.ask("score", timeout=5).get()
        print(f"score: alice {alice}, bob {bob}; alice's stats: {ping.statistics()}")
    finally:
        actors.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
