"""Two personas discuss a question, turn by turn, through one shared model actor.

Run it with ``python examples/dialogue.py [--fake] [--turns N] [--max-tokens N] [--save DIR]``.
By default it loads the small default model (SmolLM2-135M-Instruct); ``--fake`` uses a
deterministic fake model instead (instant, no model needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import llmos.actors as actors
from llmos.actors import ActorRef
from llmos.agents import ChatAgent, Dialogue, MaxTurns, Repetition, TimeLimit, run_chat, spawn
from llmos.models import FakeModel

# What the fake model says, in turn (it has no model to ask).
FAKE_LINES = [
    "Yes: a car-free centre is safer and quieter, and people stay longer.",
    "My customers park right outside; without cars, who carries home a new fridge?",
    "Delivery bikes and a loading hour each morning would bring your fridges in.",
    "A loading hour is a start, but the bus has to stop near my door too.",
    "Then let us put a bus stop on your corner and try it for a summer.",
    "A summer trial I can live with, if we count the customers before and after.",
]


def start_model(fake: bool) -> ActorRef:
    if fake:
        return FakeModel.start(FAKE_LINES, cycle=True, name="model")
    from llmos.models import ModelActor  # imports torch: only when needed

    return ModelActor.start(name="model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fake", action="store_true", help="use the fake model")
    parser.add_argument("--turns", type=int, default=6, help="turns in the dialogue")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per utterance")
    parser.add_argument("--question", default="Should cities ban cars from their centres?")
    parser.add_argument("--seed", type=int, help="another seed, another dialogue")
    parser.add_argument("--save", type=Path, help="folder for dialogue.jsonl and dialogue.md")
    args = parser.parse_args(argv)

    try:
        # One model actor serves both agents; it batches their requests when they overlap.
        model = start_model(args.fake)
        # The kernel supervises both agents: one that raises mid-turn is restarted (its memory
        # carried over) and the dialogue retries the turn once.
        optimist = spawn(
            ChatAgent,
            model,
            "You are Sunny, an upbeat urban planner. Argue for the idea in one or two sentences.",
            max_new_tokens=args.max_tokens,
            seed=args.seed,  # sampled, reproducibly: another seed, another dialogue
            memory_tokens=512,  # bounded memory: the oldest turns are dropped past this
            name="sunny",
            restart_on_ask_error=True,
        )
        sceptic = spawn(
            ChatAgent,
            model,
            "You are Rex, a sceptical shop owner. Raise one concrete worry in one or two "
            "sentences.",
            max_new_tokens=args.max_tokens,
            seed=args.seed,
            memory_tokens=512,
            name="rex",
            restart_on_ask_error=True,
        )
        # Stop after N turns, when the talk goes round in circles (near-repeats), or after 5
        # minutes.
        stop = MaxTurns(args.turns) | Repetition() | TimeLimit(300)
        result = run_chat(
            [optimist, sceptic],
            args.question,
            chat_class=Dialogue,
            termination=stop,
            save_to=args.save / "dialogue" if args.save else None,
            timeout=600,
        )
        print(f"reason: {result.reason}")
        if result.jsonl_path:
            print(f"saved: {result.jsonl_path} and {result.markdown_path}")
    finally:
        actors.stop_all()
    return 0 if result.ended_normally else 1


if __name__ == "__main__":
    raise SystemExit(main())
