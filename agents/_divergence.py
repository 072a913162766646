"""Where a live replay first parts from its log: the first model token that differs.

A live replay asks the model again and compares each answer with the recorded one. Where the
texts differ, the model that answered splits both with its own tokenizer
(:class:`~llmos.models.Tokenize`, answered between decoding steps) and the first token that
differs is reported, with the first differing whitespace-separated word as context.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llmos.actors import ActorRef, LlmosError
from llmos.models import Tokenize, Tokens

__all__ = ["Divergence", "find_divergence"]

log = logging.getLogger("llmos.agents.runs")

_CONTEXT = 8  # tokens kept from the first differing one on, for the report


class Divergence:
    """Where a live replay first differs from the log.

    Attributes:
        turn: the turn of the call.
        agent: the agent that made it.
        token: the index of the first differing token of the answer, as the model that gave
            it tokenizes both texts (a re-tokenized text; a model may have generated another
            split of the same text). None when that model cannot tokenize (not a model actor,
            or it did not answer): then ``word`` is all there is.
        word: the index of the first differing whitespace-separated word.
        logged: the logged text.
        live: the text the model gives now.
        logged_tokens: the logged text's tokens from ``token`` on (at most 8; empty when
            ``token`` is None).
        live_tokens: the same of the live text.
    """

    def __init__(
        self,
        turn: int,
        agent: str,
        token: int | None,
        word: int,
        logged: str,
        live: str,
        logged_tokens: Sequence[str] = (),
        live_tokens: Sequence[str] = (),
    ) -> None:
        self.turn, self.agent, self.token, self.word = turn, agent, token, word
        self.logged, self.live = logged, live
        self.logged_tokens, self.live_tokens = tuple(logged_tokens), tuple(live_tokens)

    def __repr__(self) -> str:
        return (
            f"Divergence(turn={self.turn}, agent={self.agent!r}, token={self.token}, "
            f"word={self.word})"
        )


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> int:
    """The first index where two sequences differ (the shorter one's length if one is a
    prefix of the other)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def find_divergence(
    turn: int, agent: str, logged: Any, reply: Any, model: ActorRef, timeout: float = 30.0
) -> Divergence | None:
    """Compare a logged answer with a live one (their ``text``, else their str); None when
    they are the same. ``model`` (the actor asked) tokenizes both when they differ."""
    old = str(getattr(logged, "text", logged))
    new = str(getattr(reply, "text", reply))
    if old == new:
        return None
    word = first_difference(old.split(), new.split())
    try:
        tokens = model.ask(Tokenize((old, new)), timeout=timeout).get()
    except LlmosError as exc:  # not a model, or it failed: the word is what we know
        log.info("live replay: %s could not tokenize the answers (%s)", model.name, exc)
        return Divergence(turn, agent, None, word, old, new)
    if not isinstance(tokens, Tokens) or len(tokens.ids) != 2:
        return Divergence(turn, agent, None, word, old, new)
    at = first_difference(tokens.ids[0], tokens.ids[1])
    return Divergence(
        turn,
        agent,
        at,
        word,
        old,
        new,
        tokens.pieces[0][at : at + _CONTEXT],
        tokens.pieces[1][at : at + _CONTEXT],
    )
