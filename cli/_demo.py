"""``llmos demo`` and ``llmos chat``: a dialogue on the default model, and a person talking to
an agent. Both load the model in the foreground (with a progress bar in a terminal), then stream
every utterance to the console as it is generated."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import llmos.actors as actors
from llmos.actors import ActorRef, LlmosError
from llmos.agents import (
    ChatAgent,
    ChatResult,
    ChatSetup,
    ConsolePrinter,
    Dialogue,
    Entry,
    HumanAgent,
    MaxTurns,
    Repetition,
    TimeLimit,
    run_chat,
    spawn,
)
from llmos.models import FakeModel, GetModelStats, ModelStats

__all__ = ["DEMO_QUESTION", "RECIPE", "demo_setup", "run_chat_session", "run_demo"]

DEMO_QUESTION = "Should our town turn its main street into a car-free zone?"

# Each speaker is a plain ChatAgent: the agent adds the scene (whom it talks with, the
# question, how to answer), samples with a seed of its own per turn, keeps from repeating
# itself or the other, and ends on a whole sentence.
# A concrete stake each gives a small model something to say.
PERSONAS = (
    (
        "ada",
        "You are Ada, an upbeat urban planner who wants the main street free of cars: more "
        "room for people, cafes and bikes.",
    ),
    (
        "rex",
        "You are Rex, who runs a shop on the main street and fears losing the customers who "
        "come by car.",
    ),
)


def _start_model(model: str | None, fake: bool, device: str) -> ActorRef:
    if fake:
        return FakeModel.start(name="model")
    from llmos.models import ModelActor, shared_model

    print(f"loading {model or 'the default model (SmolLM2-135M-Instruct)'} ...", file=sys.stderr)
    loaded = shared_model(model, device=device, progress=True)  # weights shared with the actor
    print(f"model ready: {loaded.name} on {loaded.device}", file=sys.stderr)
    return ModelActor.start(model, device=device, name="model")


def _shut_down() -> None:
    """Stop every actor; after Ctrl+C quietly and briefly (the command then exits at once)."""
    interrupted = sys.exc_info()[0] is KeyboardInterrupt
    if interrupted:
        logging.disable(logging.CRITICAL)  # threads winding down have nothing to tell
    try:
        actors.stop_all(timeout=0.3 if interrupted else 10.0)
    except LlmosError:
        if not interrupted:
            raise


def summary(result: ChatResult, stats: ModelStats | None) -> str:
    """The demo's closing lines: turns, tokens, tokens/s and batch sizes, on one screen."""
    rate = result.tokens / result.seconds if result.seconds > 0 else 0.0
    lines = [
        f"summary: {result.turns} turns, {result.tokens} tokens in {result.seconds:.1f} s "
        f"({rate:.1f} tokens/s); ended: {result.reason}"
    ]
    if stats is not None and stats.batches:
        gen = stats.tokens_generated / stats.generation_seconds if stats.generation_seconds else 0
        lines.append(
            f"model:   {stats.model}: {stats.completed} requests, {stats.tokens_generated} "
            f"tokens generated ({gen:.1f} tokens/s while generating), {stats.batches} batches, "
            f"mean batch size {stats.mean_batch_size:.2f}"
        )
    return "\n".join(lines)


RECIPE = "llmos.cli._demo:demo_setup"


def demo_setup(
    *,
    model: str | None = None,
    turns: int = 4,
    max_tokens: int = 40,
    temperature: float | None = None,
    seed: int | None = None,
    question: str = DEMO_QUESTION,
    device: str = "auto",
    fake: bool = False,
) -> ChatSetup:
    """Start the demo's model and speakers; the dialogue to run (the recipe of a recorded
    demo: ``llmos resume`` calls it with the recorded arguments)."""
    model_ref = _start_model(model, fake, device)
    sampling: dict[str, Any] = {"seed": seed}
    if temperature is not None:
        sampling["temperature"] = temperature
    speakers = [
        spawn(
            ChatAgent,
            model_ref,
            persona,
            max_new_tokens=max_tokens,
            name=name,
            **sampling,
            restart_on_ask_error=True,  # a speaker that fails its turn is restarted
        )
        for name, persona in PERSONAS
    ]
    stop = MaxTurns(turns) | Repetition(window=4, repeats=2) | TimeLimit(600)
    return ChatSetup(speakers, question, Dialogue, {"termination": stop})


def run_demo(
    *,
    model: str | None = None,
    turns: int = 4,
    max_tokens: int = 40,
    temperature: float | None = None,
    seed: int | None = None,
    question: str = DEMO_QUESTION,
    save: Path | None = None,
    device: str = "auto",
    fake: bool = False,
    record: Path | None = None,
) -> int:
    """Two personas discuss ``question`` for ``turns`` turns through one model actor.

    Prints the question, the dialogue as it is generated, then a short summary. The speakers
    sample (``temperature``, ChatAgent's default when None) with seeds drawn from ``seed`` and
    the turn, so the same seed replays the same dialogue and another seed gives another one.

    With ``record`` the run is recorded to that SQLite file (``llmos resume`` and ``llmos
    replay`` rebuild it through :func:`demo_setup`).

    Returns:
        0 when the dialogue ended normally (turns done), 1 otherwise (the reason is printed).
    """
    args: dict[str, Any] = {
        "model": model,
        "turns": turns,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "question": question,
        "device": device,
        "fake": fake,
    }
    try:
        setup = demo_setup(**args)
        print(f"question: {question}", flush=True)
        recording: dict[str, Any] = {}
        if record is not None:
            recording = {"record": record, "recipe": {"function": RECIPE, "args": args}}
        result = run_chat(
            setup.participants,
            setup.task,
            chat_class=setup.chat_class,
            save_to=save / "dialogue" if save else None,
            timeout=900,
            **recording,
            **setup.options,
        )
        model_ref = actors.get("model")
        stats = model_ref.ask(GetModelStats(), timeout=10).get()
        print(summary(result, stats if isinstance(stats, ModelStats) else None))
        if result.jsonl_path:
            print(f"[transcript: {result.jsonl_path} and {result.markdown_path}]")
        if result.run_id:
            print(f"[recorded: run {result.run_id} in {record}]")
            if result.run_log_error:
                print(f"[the run log failed: {result.run_log_error}]", file=sys.stderr)
        return 0 if result.ended_normally else 1
    finally:
        _shut_down()


class _ChatPrinter(ConsolePrinter):
    """Prints each line once: the person's lines are on the terminal already, and the note
    that says why the chat ended is left to the closing line, which says it too."""

    def __init__(self, person: str) -> None:
        super().__init__()
        self.person = person
        self._note: Entry | None = None

    def entry(self, entry: Entry) -> None:
        if self._note is not None:
            super().entry(self._note)
            self._note = None
        if entry.kind != "utterance":
            self._note = entry
        elif entry.speaker != self.person:
            super().entry(entry)

    def end(self, result: ChatResult) -> None:
        if self._note is not None and self._note.text not in result.reason:
            super().entry(self._note)
        self._note = None
        super().end(result)


def run_chat_session(
    *,
    model: str | None = None,
    persona: str = "You are a helpful, concise assistant.",
    max_tokens: int = 96,
    temperature: float | None = None,
    seed: int | None = None,
    device: str = "auto",
    fake: bool = False,
    turns: int = 200,
) -> int:
    """A person at the terminal talks with a ChatAgent; ``/quit`` or end of input ends it."""
    try:
        model_ref = _start_model(model, fake, device)
        sampling: dict[str, Any] = {"seed": seed}
        if temperature is not None:
            sampling["temperature"] = temperature
        bot = spawn(
            ChatAgent,
            model_ref,
            persona,
            max_new_tokens=max_tokens,
            name="assistant",
            **sampling,
            restart_on_ask_error=True,
        )
        print("type a message; /quit ends the chat", file=sys.stderr)
        you = HumanAgent.start(name="you")
        run_chat(
            [you, bot],
            "",
            chat_class=Dialogue,
            termination=MaxTurns(turns),
            printer=_ChatPrinter("you"),
            timeout=24 * 3600,
        )
        return 0
    finally:
        _shut_down()
