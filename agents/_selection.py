"""Speaker selection for group chats: round robin, a model that picks, or any function.

A selector is any callable ``(SelectionContext) -> str`` returning the name of the next speaker.
A selector that raises, or names someone who cannot speak, never stalls the chat: the chat
notes it in the transcript and falls back to round robin for that turn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from llmos.actors import ActorRef
from llmos.agents._errors import AgentError
from llmos.agents._replies import display_name
from llmos.agents._transcript import Entry
from llmos.models import Score, Scores

__all__ = [
    "ModelSelector",
    "SelectionContext",
    "Selector",
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
        dialogue: the chat's name ("" when unknown), so a model that picks is charged to it.
        spent: where a selector that asks a model reports what the pick read, as ``(model,
            input tokens)``, so the chat's own ledger holds it beside its turns (None: not
            kept).
    """

    turn: int
    participants: tuple[str, ...]
    candidates: tuple[str, ...]
    descriptions: Mapping[str, str]
    transcript: Sequence[Entry]
    last_speaker: str | None
    task: str
    dialogue: str = ""
    spent: Callable[[str, int], None] | None = None


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
    """A model picks the next speaker: a constrained choice over the allowed names.

    The model is shown the task, the participants' descriptions and the latest utterances, and
    asked who should speak next; then it *scores* each allowed name as the start of its answer
    (:class:`~llmos.models.Score`: log-probabilities from the model's own distribution), and
    the most likely name wins. No free text is parsed, so the pick is always one of the allowed
    names. A model that cannot score (an error, a timeout) makes the selector raise, and the
    chat falls back to round robin for that turn with a note. The chat actor waits for the
    answer (at most ``timeout``) before it asks the next speaker. The model's token ledger
    charges each scoring to the requester "selector" and to the chat's dialogue.

    Fairness: a model tends to pick names it has already seen in the conversation, so left
    alone it may never give the word to a quiet agent. Two rules keep every agent in:

    - the last speaker is not a candidate (unless ``allow_repeat``);
    - a candidate that has waited ``max_wait`` turns (turns since it last spoke, or since the
      chat began) is picked without asking the model; of several, the one waiting longest.

    So in a chat of ``n`` agents each speaks within its first ``max_wait + 1`` turns and
    again at least every ``max_wait + 1`` turns; all other picks are the model's.

    Args:
        model: the model actor's ref (a ModelActor, a pool, a remote one, or a FakeModel).
        allow_repeat: let the last speaker speak again (default: someone else must).
        history: how many of the latest utterances to show the model.
        max_wait: the most turns a candidate waits before it is picked anyway (default: the
            number of participants).
        timeout: how long to wait for the model.
    """

    def __init__(
        self,
        model: ActorRef,
        *,
        allow_repeat: bool = False,
        history: int = 6,
        max_wait: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not isinstance(model, ActorRef):
            raise AgentError(f"ModelSelector needs a model actor's ref, got {model!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise AgentError(f"history must be an int >= 0, got {history!r}")
        if max_wait is not None and (
            isinstance(max_wait, bool) or not isinstance(max_wait, int) or max_wait < 1
        ):
            raise AgentError(f"max_wait must be an int >= 1 or None, got {max_wait!r}")
        self.model = model
        self.allow_repeat = allow_repeat
        self.history = history
        self.max_wait = max_wait
        self.timeout = timeout

    def candidates(self, ctx: SelectionContext) -> list[str]:
        """Who may be picked: the candidates, less the last speaker unless repeats are allowed."""
        names = list(ctx.candidates)
        if not self.allow_repeat and ctx.last_speaker in names and len(names) > 1:
            names.remove(ctx.last_speaker)
        return names

    def overdue(self, ctx: SelectionContext, names: Sequence[str]) -> str | None:
        """The candidate that has waited ``max_wait`` turns or more (the longest waiting
        first), or None when none has."""
        limit = self.max_wait if self.max_wait is not None else len(ctx.participants)
        last_turn = dict.fromkeys(names, 0)
        for entry in ctx.transcript:
            if entry.speaker in last_turn:
                last_turn[entry.speaker] = max(last_turn[entry.speaker], entry.turn)
        waited = {n: ctx.turn - 1 - last_turn[n] for n in names}
        longest = max(names, key=lambda n: waited[n])  # the first of equals, in chat order
        return longest if waited[longest] >= limit else None

    def prompt(self, ctx: SelectionContext, names: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages after which the names are scored (shown by :func:`display_name`)."""
        shown = [display_name(n) for n in names]
        roles = "\n".join(
            f"- {s}: {ctx.descriptions.get(n) or 'a participant'}"
            for n, s in zip(names, shown, strict=True)
        )
        recent = "\n".join(
            f"{display_name(e.speaker)}: {e.text}" for e in ctx.transcript[-self.history :]
        )
        user = (
            f"Task: {ctx.task or '(open discussion)'}\n\nParticipants:\n{roles}\n\n"
            f"Conversation so far:\n{recent or '(nothing yet)'}\n\n"
            f"Who should speak next? Answer with one name: {' or '.join(shown)}."
        )
        system = "You choose the next speaker in a group conversation. Reply with a name only."
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def __call__(self, ctx: SelectionContext) -> str:
        names = self.candidates(ctx)
        if len(names) == 1:
            return names[0]
        due = self.overdue(ctx, names)
        if due is not None:
            return due
        shown = tuple(display_name(n) for n in names)
        if len(set(shown)) != len(shown):  # two names that display alike: score them as given
            shown = tuple(names)
        request = Score(
            candidates=shown,
            messages=self.prompt(ctx, names),
            truncate=True,
            requester="selector",
            dialogue=ctx.dialogue,
        )
        answer = self.model.ask(request, timeout=self.timeout).get()
        if not isinstance(answer, Scores):
            raise AgentError(f"the selector's model answered {type(answer).__name__}, not Scores")
        if ctx.spent is not None and answer.model:
            ctx.spent(answer.model, answer.input_tokens)
        return names[shown.index(answer.best(shown))]


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
