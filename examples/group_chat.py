"""Three agents write a slogan together; a model picks who speaks next.

Run it with ``python examples/group_chat.py [--fake] [--turns N] [--max-tokens N] [--save DIR]``.
By default it loads the small default model; ``--fake`` uses deterministic fake models (the
selector's fake follows a fixed script).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import llmos.actors as actors
from llmos.actors import ActorRef
from llmos.agents import (
    ChatAgent,
    MaxTurns,
    ModelSelector,
    Repetition,
    TextMention,
    run_chat,
    spawn,
)
from llmos.models import FakeModel

TEAM = {
    "wren": "You are Wren, a copywriter. Propose or improve a short slogan.",
    "cole": "You are Cole, a critic. Point out one weakness of the latest slogan.",
    "eda": "You are Eda, the editor. Pick the best slogan; say APPROVED when it is good.",
}


def start_models(fake: bool) -> tuple[ActorRef, ActorRef]:
    """The agents' model and the selector's model (the same actor unless faked)."""
    if fake:
        picks = ["cole", "wren", "eda"]  # the fake selector's fixed choices
        lines = [  # said in the order the fake selector picks: cole, wren, eda, cole
            "Before we start: no puns on rising dough, please.",
            "Warm bread before the first bus.",
            "Good; it says when, but not for whom.",
            "Then: warm bread for the first shift, before the first bus.",
        ]
        model = FakeModel.start(lines, cycle=True, name="model")
        return model, FakeModel.start(picks, cycle=True, name="picker")
    from llmos.models import ModelActor  # imports torch: only when needed

    model = ModelActor.start(name="model")
    return model, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fake", action="store_true", help="use fake models")
    parser.add_argument("--turns", type=int, default=6, help="most turns in the chat")
    parser.add_argument("--max-tokens", type=int, default=40, help="tokens per utterance")
    parser.add_argument("--seed", type=int, help="another seed, another conversation")
    parser.add_argument("--save", type=Path, help="folder for group_chat.jsonl and .md")
    args = parser.parse_args(argv)

    try:
        model, picker = start_models(args.fake)
        # Supervised by the kernel: an agent that raises mid-turn is restarted, the turn retried.
        team = [
            spawn(
                ChatAgent,
                model,
                persona,
                max_new_tokens=args.max_tokens,
                seed=args.seed,
                name=name,
                restart_on_ask_error=True,
            )
            for name, persona in TEAM.items()
        ]
        # The selector shows the model each agent's description (its persona's first sentence)
        # and the latest turns, and takes the allowed name the model scores highest: a choice
        # among the names, never free text, so it is valid every time.
        selector = ModelSelector(picker)
        stop = MaxTurns(args.turns) | TextMention("APPROVED", speakers=["eda"]) | Repetition()
        result = run_chat(
            team,
            "A slogan for a bakery that opens at 5 am.",
            selector=selector,
            termination=stop,
            save_to=args.save / "group_chat" if args.save else None,
            timeout=600,
        )
        print(f"speakers: {' -> '.join(result.speakers)}")
        print(f"reason: {result.reason}")
    finally:
        actors.stop_all()
    return 0 if result.ended_normally else 1


if __name__ == "__main__":
    raise SystemExit(main())
