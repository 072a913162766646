"""Speaker selection for group chats: round robin, a model that picks, or any function.

A selector is any callable ``(SelectionContext) -> str`` returning the name of the next speaker.
A selector that raises, or names someone who cannot speak, never stalls the chat: the chat
notes it in the transcript and falls back to round robin for that turn.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

from llmos.actors import ActorRef, AgentError
from llmos.agents._transcript import Entry
from llmos.models import Completion, Generate

__all__ = [
    "ModelSelector",
    "SelectionContext",
    "Selector",
    "pick_name",
    "resolve_selector",
    "round_robin",
]


@dataclasses.dataclass(frozen=True)
class SelectionContext:
    """What a selector sees when it picks the next speaker.

    Attributes:
        turn: the turn about to be taken, from 1.
        participants: everyone in the chat, in the order given.
        candidates: those who can speak now (in order; participants that stopped are left out).
        descriptions: each participant's description.
        transcript: the utterances so far, oldest first.
        last_speaker: who spoke last (None before the first turn).
        task: the chat's topic or question.
    """

    turn: int
    participants: tuple[str, ...]
    candidates: tuple[str, ...]
    descriptions: Mapping[str, str]
    transcript: Sequence[Entry]
    last_speaker: str | None
    task: str


Selector = Callable[[SelectionContext], str]


def round_robin(ctx: SelectionContext) -> str:
    """The participant after the last speaker, in order, skipping those who cannot speak."""
    if not ctx.candidates:
        raise AgentError("no participant can speak")
    if ctx.last_speaker is None or ctx.last_speaker not in ctx.participants:
        return ctx.candidates[0]
    order = ctx.participants
    start = order.index(ctx.last_speaker)
    for step in range(1, len(order) + 1):
        name = order[(start + step) % len(order)]
        if name in ctx.candidates:
            return name
    return ctx.candidates[0]


class ModelSelector:
    """A model picks the next speaker from the participants' descriptions and the chat so far.

    The model is asked with greedy decoding; the first candidate name in its answer is chosen.
    An answer that names no candidate raises AgentError, and the chat falls back to round robin
    for that turn (with a note), so a confused model cannot stall or loop the chat. The chat
    actor waits for this answer (at most ``timeout``) before it asks the next speaker.

    Args:
        model: the model actor's ref (a ModelActor, a pool, a remote one, or a FakeModel).
        allow_repeat: let the last speaker speak again (default: someone else must).
        history: how many of the latest utterances to show the model.
        max_new_tokens: the longest answer to read.
        timeout: how long to wait for the model.
    """

    def __init__(
        self,
        model: ActorRef,
        *,
        allow_repeat: bool = False,
        history: int = 6,
        max_new_tokens: int = 8,
        timeout: float = 60.0,
    ) -> None:
        if not isinstance(model, ActorRef):
            raise AgentError(f"ModelSelector needs a model actor's ref, got {model!r}")
        self.model = model
        self.allow_repeat = allow_repeat
        self.history = history
        self.max_new_tokens = max_new_tokens
        self.timeout = timeout

    def candidates(self, ctx: SelectionContext) -> list[str]:
        """Who may be picked: the candidates, less the last speaker unless repeats are allowed."""
        names = list(ctx.candidates)
        if not self.allow_repeat and ctx.last_speaker in names and len(names) > 1:
            names.remove(ctx.last_speaker)
        return names

    def prompt(self, ctx: SelectionContext, names: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages the model is asked with."""
        roles = "\n".join(f"- {n}: {ctx.descriptions.get(n) or 'a participant'}" for n in names)
        recent = "\n".join(f"{e.speaker}: {e.text}" for e in ctx.transcript[-self.history :])
        user = (
            f"Task: {ctx.task or '(open discussion)'}\n\nParticipants:\n{roles}\n\n"
            f"Conversation so far:\n{recent or '(nothing yet)'}\n\n"
            f"Who should speak next? Answer with exactly one name from: {', '.join(names)}."
        )
        system = "You choose the next speaker in a group conversation. Reply with a name only."
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def __call__(self, ctx: SelectionContext) -> str:
        names = self.candidates(ctx)
        if len(names) == 1:
            return names[0]
        request = Generate(
            messages=self.prompt(ctx, names),
            max_new_tokens=self.max_new_tokens,
            temperature=0.0,
            requester="selector",
        )
        done = self.model.ask(request, timeout=self.timeout).get()
        text = done.text if isinstance(done, Completion) else str(done)
        return pick_name(text, names)


def pick_name(text: str, names: Sequence[str]) -> str:
    """The name in ``names`` that appears first in ``text`` (whole word, any case).

    Raises:
        AgentError: no name appears.
    """
    best: tuple[int, str] | None = None
    for name in names:
        found = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), name)
    if best is None:
        raise AgentError(f"the selector answered {text.strip()!r:.80}, which names none of {names}")
    return best[1]


def resolve_selector(spec: str | Selector | ActorRef) -> Selector:
    """Turn a ``selector=`` argument into a selector.

    Args:
        spec: "round_robin", a model actor's ref (wrapped in :class:`ModelSelector`), or any
            callable ``(SelectionContext) -> str``.

    Raises:
        AgentError: an unknown name or a value that is none of these.
    """
    if isinstance(spec, ActorRef):
        return ModelSelector(spec)
    if isinstance(spec, str):
        if spec == "round_robin":
            return round_robin
        if spec == "selector":
            raise AgentError(
                "selector='selector' needs a model: pass selector=ModelSelector(model_ref) or "
                "selector=model_ref"
            )
        raise AgentError(
            f"unknown selector {spec!r}; use 'round_robin', a model ref, ModelSelector(...), or "
            "a function (SelectionContext) -> name"
        )
    if callable(spec):
        return spec
    raise AgentError(f"a selector must be a name, a model ref or a callable, got {spec!r}")
