"""Text hygiene of replies: sentence endings, echoed labels, similarity, the less repetitive of
two."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llmos.agents import most_similar, similarity, strip_labels, trim_to_sentence
from llmos.agents._replies import least_repetitive
from llmos.models import ends_sentence


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("It works.", True),
        ("Does it work?", True),
        ("It works!  ", True),
        ('He said "go."', True),
        ("Well (it does.)", True),
        ("Wait for it\u2026", True),
        ("It works", False),
        ("It works,", False),
        ("", False),
        ("Ask Dr.", False),
        ("Things like apples, pears, etc.", False),
        ("Step 3.", False),
        ("It costs 30.", True),
    ],
)
def test_ends_sentence(text: str, ends: bool) -> None:
    assert ends_sentence(text) is ends


@pytest.mark.parametrize(
    ("text", "trimmed"),
    [
        ("First point. Second point is", "First point."),
        ("Is it? Yes! And then", "Is it? Yes!"),
        ("All done.", "All done."),
        ("No boundary at all", "No boundary at all"),
        ("Ask Dr. Smith about it", "Ask Dr. Smith about it"),
        ("Ask Dr. Smith. He knows the", "Ask Dr. Smith."),
        ("", ""),
    ],
)
def test_trim_to_sentence(text: str, trimmed: str) -> None:
    assert trim_to_sentence(text) == trimmed


def test_strip_labels_drops_a_leading_label_and_cuts_at_a_later_one() -> None:
    names = ["ada", "rex"]
    assert strip_labels("Ada: I think so.", names) == "I think so."
    assert strip_labels("**Rex:** Fine.", names) == "Fine."
    assert strip_labels("assistant: Ada: Sure.", names) == "Sure."
    assert strip_labels("Rex says: no.", names) == "no."
    assert strip_labels("I agree.\nRex: No you do not.", names) == "I agree."
    assert strip_labels("Rex: nothing else", []) == "Rex: nothing else"
    assert strip_labels("I told Rex: wait.", names) == "I told Rex: wait."


def test_similarity_and_most_similar() -> None:
    assert similarity("I agree (0).", "I agree (1)!") >= 0.8
    assert similarity("", "...") == 1.0
    assert similarity("", "something") == 0.0
    assert similarity("Cars pollute the air.", "Shops need deliveries at dawn.") < 0.5
    assert most_similar("the answer is 42", ["hmm", "The answer is 42!"]) == (1, 1.0)
    assert most_similar("anything", []) == (-1, 0.0)


def test_least_repetitive_tries_again_only_after_a_near_repeat_and_keeps_the_less_alike() -> None:
    recent = ["The sea is calm today."]
    asked: list[int] = []

    def replies(*texts: str) -> Callable[[int], str]:
        def reply(attempt: int) -> str:
            asked.append(attempt)
            return texts[attempt]

        return reply

    assert least_repetitive(replies("Storms come later."), recent, 0.8, 2) == (
        0,
        "Storms come later.",
    )
    assert asked == [0]
    asked.clear()
    again = replies("The sea is calm today!", "Storms come later.")
    assert least_repetitive(again, recent, 0.8, 2) == (1, "Storms come later.")
    assert asked == [0, 1]
    both_repeat = replies("", "The sea is calm today.")  # empty counts as a repeat: 1.0 alike
    assert least_repetitive(both_repeat, recent, 0.8, 2) == (0, "")
    assert least_repetitive(replies("The sea is calm today."), recent, 0.8, 1)[0] == 0
    with pytest.raises(ValueError, match="attempts"):
        least_repetitive(replies("x"), recent, 0.8, 0)
