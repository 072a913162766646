"""Text hygiene for what agents say: sentence endings, echoed labels, near-repeats.

Plain functions over strings, used by :class:`~llmos.agents.ChatAgent` to tidy a model's reply
(and to keep the less repetitive of two), by :class:`~llmos.agents.Repetition` to compare
utterances, and by a chat to note a turn that repeats an earlier one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence

from llmos.models import ends_sentence

__all__ = [
    "display_name",
    "ends_sentence",
    "least_repetitive",
    "most_similar",
    "normalize",
    "similarity",
    "strip_labels",
    "trim_to_sentence",
]

_NON_WORD = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
# A sentence end followed by whitespace: a boundary inside a text.
_BOUNDARY = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s)")
_ROLES = ("user", "assistant", "system")


def display_name(name: str) -> str:
    """How a participant's name is shown to a model: an all-lower-case actor name is
    capitalised ("rex" -> "Rex"), any other is kept as it is ("McKay")."""
    return name[:1].upper() + name[1:] if name.islower() else name


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: how utterances are compared."""
    return _SPACE.sub(" ", _NON_WORD.sub(" ", text.lower())).strip()


def similarity(a: str, b: str) -> float:
    """How alike two utterances are, 0..1: the ``difflib`` ratio of their normalized texts.

    Two empty (or punctuation-only) texts are alike (1.0): an agent that says nothing twice
    repeats itself.
    """
    x, y = normalize(a), normalize(b)
    if x == y:
        return 1.0
    if not x or not y:
        return 0.0
    return difflib.SequenceMatcher(None, x, y, autojunk=False).ratio()


def most_similar(text: str, earlier: Iterable[str]) -> tuple[int, float]:
    """The earlier text most like ``text``: ``(its position, similarity)``, or ``(-1, 0.0)``."""
    best = (-1, 0.0)
    for i, other in enumerate(earlier):
        score = similarity(text, other)
        if score > best[1]:
            best = (i, score)
    return best


def least_repetitive(
    reply: Callable[[int], str], recent: Sequence[str], threshold: float, attempts: int
) -> tuple[int, str]:
    """Take ``reply(attempt)`` again while it is at least ``threshold`` alike to one of
    ``recent`` (an empty reply counts as a repeat), at most ``attempts`` times.

    Returns:
        The attempt and the text of the least alike reply (the first of equals).
    """
    best: tuple[float, int, str] | None = None
    for attempt in range(attempts):
        text = reply(attempt)
        alike = most_similar(text, recent)[1] if normalize(text) else 1.0
        if best is None or alike < best[0]:
            best = (alike, attempt, text)
        if alike < threshold:
            break
    if best is None:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    return best[1], best[2]


def trim_to_sentence(text: str) -> str:
    """Cut ``text`` after its last complete sentence (unchanged when it ends on one).

    When no sentence ends within it, the text is returned whole: a fragment says more than
    nothing.
    """
    text = text.rstrip()
    if not text or ends_sentence(text):
        return text
    cut = -1
    for match in _BOUNDARY.finditer(text):
        if ends_sentence(text[: match.end()]):
            cut = match.end()
    return text[:cut].rstrip() if cut > 0 else text


def strip_labels(text: str, names: Sequence[str]) -> str:
    """Remove speaker labels a model echoed: a leading ``"Name:"`` (or a chat role) is dropped,
    and the text is cut where a later line starts with one (the model speaking for someone else).

    Args:
        text: the model's reply.
        names: the speakers' names (matched in any case).
    """
    labels = [re.escape(n) for n in (*names, *_ROLES) if n]
    if not labels:
        return text.strip()
    label = rf"[*\"'\s]*(?:{'|'.join(labels)})(?:\s+says|\s+said)?[*\s]*:[*]*"
    leading = re.compile(rf"^{label}\s*", re.IGNORECASE)
    later = re.compile(rf"\n{label}", re.IGNORECASE)
    text = text.strip()
    while True:
        stripped = leading.sub("", text, count=1).lstrip()
        if stripped == text:
            break
        text = stripped
    found = later.search(text)
    if found:
        text = text[: found.start()]
    return text.strip()
